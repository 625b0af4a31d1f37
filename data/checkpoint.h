/* Checkpoint files (DESIGN §9): the flat parameter buffer with its layout, the AdamW moments, the trainer's position,
 * the run seed and the configuration text, written atomically; the reader checks everything against the layout the
 * running model expects and names the first tensor that differs.
 *
 *   /model/params           float32 [total]
 *   /model/layout/names     uint8   names joined by '\n'
 *   /model/layout/offsets   int64   [n]
 *   /model/layout/shapes    int64   [n, 2]
 *   /optim/m, /optim/v      float32 [total]      attribute step (int64) on /optim
 *   /trainer                attributes step (int64, iterations done in the current phase), phase (string),
 *                           threads (int64: CPU threads of the writer; OpenBLAS results depend on it),
 *                           bad_steps, bad_streak (int64: steps skipped for a non-finite loss or gradient, in all and
 *                           in a row; 0 when absent)
 *   /moe/bias               float32 [n_layers * experts]: the MoE balancing bias (MoE policies only)
 *   /rng/seed               uint64  [1]
 *   /config                 uint8   the effective YAML
 *   /hf/config              uint8   the config.json of a policy that came from a Hugging Face directory, with
 *                           attributes model_type, source (the directory's name) and config_hash (FNV-1a 64 of
 *                           config.json's bytes, 16 hex digits); absent for a policy dynrl initialised */
#ifndef DRL_CHECKPOINT_H
#define DRL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "data/file_read.h" /* drl_fnv1a64_hex */
#include "kernels/layout.h"
#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_CHECKPOINT_FORMAT_VERSION 1
#define DRL_PHASE_NAME_CAP 32

/* Host-side contents of a checkpoint. The writer reads the pointers; the reader allocates them (params, m, v of
 * layout.total floats; config_yaml NUL-terminated; moe_bias when the file has one) and drl_checkpoint_free releases
 * them. */
typedef struct drl_checkpoint {
  drl_layout layout;
  float *params, *m, *v;
  int64_t optim_step;
  int64_t trainer_step;
  int64_t bad_steps, bad_streak;
  char phase[DRL_PHASE_NAME_CAP];
  int64_t threads;
  uint64_t seed;
  char *config_yaml;
  float *moe_bias;       /* [moe_bias_n], or NULL (dense policy) */
  int64_t moe_bias_n;
  char *hf_config;       /* where the policy came from (NULL: dynrl initialised it): the config.json text, */
  char hf_model_type[16];  /* its model_type, */
  char hf_source[256];     /* the directory's name, */
  char hf_config_hash[17]; /* and drl_fnv1a64_hex of the text */
} drl_checkpoint;


/* Writes ck to path atomically (temp file, fsync, rename). */
drl_status drl_checkpoint_write(const char *path, const drl_checkpoint *ck);

/* Reads path; when expect is not NULL its layout must match the file's (the message names the first difference).
 * On failure ck is left zeroed. */
drl_status drl_checkpoint_read(const char *path, const drl_layout *expect, drl_checkpoint *ck);

/* Reads only where the policy of path came from (ck->hf_*; hf_config NULL when the file has no /hf) and the run's
 * configuration (config_yaml), without the parameters. */
drl_status drl_checkpoint_read_provenance(const char *path, drl_checkpoint *ck);

/* Frees what drl_checkpoint_read allocated and zeroes ck. */
void drl_checkpoint_free(drl_checkpoint *ck);

#ifdef __cplusplus
}
#endif
#endif /* DRL_CHECKPOINT_H */
