/* A token policy opened for generation and evaluation outside a training run (`dynrl generate`, `dynrl eval`):
 * a Hugging Face directory, a policy file of `dynrl import`, or a checkpoint (of a pretrained policy, which remembers
 * its source directory, or of one dynrl initialised for a built-in task), with its tokenizer and its EOS ids. */
#ifndef DRL_POLICY_H
#define DRL_POLICY_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/tokenizer.h"
#include "engine/hf_model.h"
#include "kernels/device.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_policy {
  char path[4096];
  drl_transformer_config cfg; /* the architecture */
  drl_device dev;             /* with the model, once loaded */
  drl_transformer model;
  drl_tokenizer tok;          /* the source's byte-level BPE, or a task policy's characters */
  drl_hf_source hf;           /* a pretrained policy's source (has_hf) */
  int has_hf;
  char task[DRL_TASK_NAME_CAP];  /* a task policy's task ("" for a pretrained one) */
  char vocab[DRL_VOCAB_CAP];     /* and its characters */
  char tokenizer_file[4200];     /* the tokenizer.json loaded ("" for characters) */
  char tokenizer_hash[17];       /* its drl_fnv1a64_hex */
  int eos;                       /* ends a response; the padding id */
  int32_t stop_ids[DRL_HF_MAX_EOS]; /* the other EOS ids of config.json and generation_config.json */
  int n_stop;
} drl_policy;

/* Opens the policy at path: its architecture, its tokenizer (tokenizer_dir's tokenizer.json when not NULL or "",
 * else its source directory's: a checkpoint whose source is gone says to pass one) and its EOS ids; not the weights
 * (drl_policy_load). On failure nothing stays open. */
drl_status drl_policy_open(const char *path, const char *tokenizer_dir, drl_policy *p);

/* Opens the device and loads the weights into a model for B_max rows of up to T_max positions (0 or more than the
 * policy's max_seq: max_seq). */
drl_status drl_policy_load(drl_policy *p, drl_backend backend, int device_index, int B_max, int T_max);

/* Frees everything; safe on a zeroed policy. */
void drl_policy_close(drl_policy *p);

/* Loads the weights at path (a Hugging Face directory, read with tied embeddings or not, or a checkpoint) into the
 * parameters of ps on dev; the layout must match. */
drl_status drl_policy_load_weights(drl_params *ps, const drl_device *dev, int tied, const char *path);

/* Checks that dataset ds (read from `path`) was made for p: a text set by p's tokenizer (naming both when not), a task
 * set with p's characters. */
drl_status drl_policy_check_dataset(const drl_policy *p, const drl_dataset *ds, const char *path);

/* A pretrained policy's EOS ids (where names config.json in errors): the first ends and pads responses (*eos), the
 * rest also end them (stop_ids, DRL_HF_MAX_EOS of room). None is DRL_ERR_FORMAT. */
drl_status drl_policy_eos_ids(const drl_hf_config *hc, const char *where, int *eos, int32_t *stop_ids, int *n_stop);

/* A text set (set_path, made with the tokenizer whose hash is set_hash) against the policy's tokenizer (tok_file,
 * tok_hash): another tokenizer is DRL_ERR_CONFIG naming both. */
drl_status drl_policy_check_tokenizer(const char *set_path, const char *set_hash, const char *tok_file,
                                      const char *tok_hash);

#ifdef __cplusplus
}
#endif
#endif /* DRL_POLICY_H */
