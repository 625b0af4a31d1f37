#define _POSIX_C_SOURCE 200809L
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/bpe.h"
#include "data/checkpoint.h"
#include "data/file_read.h"
#include "data/task.h"
#include "data/vocab.h"
#include "engine/config.h"
#include "engine/model_config.h"

drl_status drl_policy_load_weights(drl_params *ps, const drl_device *dev, int tied, const char *path) {
  const drl_layout *lay = &ps->layout;
  int cpu = dev->backend == DRL_BACKEND_CPU; /* read straight into the parameters: no second copy */
  size_t bytes = (size_t)lay->total * sizeof(float);
  if (drl_is_dir(path)) {
    float *host = cpu ? ps->params : NULL;
    if (!cpu) DRL_TRY(drl_host_alloc((void **)&host, bytes, "pretrained weights (host copy)"));
    drl_status st = drl_hf_read_weights(path, lay, tied, host);
    if (st == DRL_OK && !cpu) st = drl_copy_to_device(dev, ps->params, host, bytes);
    if (st == DRL_OK) st = drl_device_sync(dev);
    if (!cpu) free(host);
    return st;
  }
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(path, lay, &ck));
  drl_status st = drl_copy_to_device(dev, ps->params, ck.params, bytes);
  if (st == DRL_OK) st = drl_device_sync(dev);
  drl_checkpoint_free(&ck);
  return st;
}

/* A policy dynrl initialised for a built-in task: the architecture from the checkpoint's configuration and its
 * embedding's rows, the characters of its task (or of the dataset file it trained on). */
static drl_status task_policy_config(const char *path, drl_policy *p, drl_transformer_config *tc) {
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read_provenance(path, &ck));
  drl_config cfg;
  drl_status st = ck.config_yaml ? drl_config_load_string(&cfg, ck.config_yaml, path)
                                 : DRL_FAIL(DRL_ERR_FORMAT, "%s: a checkpoint without its configuration", path);
  drl_checkpoint_free(&ck);
  DRL_TRY(st);
  if (cfg.data.path[0]) {
    drl_dataset ds;
    st = drl_dataset_read(cfg.data.path, &ds);
    if (st == DRL_OK) {
      snprintf(p->task, sizeof p->task, "%s", ds.task);
      snprintf(p->vocab, sizeof p->vocab, "%s", ds.vocab);
      drl_dataset_free(&ds);
    }
  } else {
    snprintf(p->task, sizeof p->task, "%s", drl_cfg_task_name(cfg.data.task));
    snprintf(p->vocab, sizeof p->vocab, "%s", drl_task_vocab(p->task));
  }
  if (st == DRL_OK && !p->vocab[0])
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s: trained on %s, a text set, yet it does not remember a pretrained source", path,
                  cfg.data.path);
  if (st == DRL_OK) {
    int vocab = (int)strlen(p->vocab);
    drl_model_config(&cfg, cfg.model.vocab_size > vocab ? cfg.model.vocab_size : vocab, tc);
  }
  drl_config_free(&cfg);
  return st;
}

/* A pretrained policy's tokenizer: tokenizer_dir's, else its source directory's. */
static drl_status open_bpe(drl_policy *p, const char *path, const char *tokenizer_dir) {
  const char *dir = tokenizer_dir && tokenizer_dir[0] ? tokenizer_dir : (p->hf.dir[0] ? p->hf.dir : p->hf.source);
  snprintf(p->tokenizer_file, sizeof p->tokenizer_file, "%s/tokenizer.json", dir);
  struct stat sb;
  if (stat(p->tokenizer_file, &sb) != 0)
    return DRL_FAIL(DRL_ERR_IO, "%s: no tokenizer at %s (pass the directory that holds the policy's tokenizer.json)",
                    path, p->tokenizer_file);
  DRL_TRY(drl_bpe_load_hashed(p->tokenizer_file, &p->tok, p->tokenizer_hash));
  return drl_policy_eos_ids(&p->hf.cfg, path, &p->eos, p->stop_ids, &p->n_stop);
}

drl_status drl_policy_eos_ids(const drl_hf_config *hc, const char *where, int *eos, int32_t *stop_ids, int *n_stop) {
  if (hc->n_eos < 1) return DRL_FAIL(DRL_ERR_FORMAT, "%s: the policy's config.json names no eos_token_id", where);
  *eos = hc->eos_token_ids[0];
  *n_stop = hc->n_eos - 1;
  for (int i = 1; i < hc->n_eos; ++i) stop_ids[i - 1] = hc->eos_token_ids[i];
  return DRL_OK;
}

drl_status drl_policy_check_tokenizer(const char *set_path, const char *set_hash, const char *tok_file,
                                      const char *tok_hash) {
  if (strcmp(set_hash, tok_hash) == 0) return DRL_OK;
  return DRL_FAIL(DRL_ERR_CONFIG, "%s was made with the tokenizer %s, the policy's (%s) is %s: encode the set with the "
                  "policy's tokenizer", set_path, set_hash, tok_file, tok_hash);
}

drl_status drl_policy_open(const char *path, const char *tokenizer_dir, drl_policy *p) {
  memset(p, 0, sizeof *p);
  struct stat sb;
  if (stat(path, &sb) != 0) return DRL_FAIL(DRL_ERR_IO, "%s: no such file or directory", path);
  if (snprintf(p->path, sizeof p->path, "%s", path) >= (int)sizeof p->path)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "path too long: %s", path);
  int found = 0;
  DRL_TRY(drl_hf_source_open(path, &p->hf, &found));
  p->has_hf = found != 0;
  drl_status st = DRL_OK;
  if (p->has_hf) {
    p->cfg = p->hf.cfg.model;
    st = open_bpe(p, path, tokenizer_dir);
    /* The ids past the tokenizer's are never sampled (an embedding padded past the vocabulary). */
    int used = st == DRL_OK ? drl_tokenizer_vocab_size(&p->tok) : 0;
    if (st == DRL_OK && used < p->cfg.vocab) p->cfg.vocab_used = used;
  } else {
    st = task_policy_config(path, p, &p->cfg);
    if (st == DRL_OK) st = drl_tokenizer_char(p->vocab, &p->tok);
    if (st == DRL_OK) {
      p->eos = drl_vocab_eos(p->vocab);
      if (p->eos < 0) st = DRL_FAIL(DRL_ERR_FORMAT, "%s: the task's vocabulary has no end-of-sequence character", path);
    }
  }
  if (st != DRL_OK) drl_policy_close(p);
  return st;
}

drl_status drl_policy_load(drl_policy *p, drl_backend backend, int device_index, int B_max, int T_max) {
  if (T_max <= 0 || T_max > p->cfg.max_seq) T_max = p->cfg.max_seq;
  DRL_TRY(drl_device_open(&p->dev, backend, device_index));
  drl_status st = drl_transformer_create(&p->model, &p->cfg, &p->dev, B_max, T_max, DRL_TRANSFORMER_NO_INIT);
  if (st == DRL_OK) st = drl_policy_load_weights(&p->model.ps, &p->dev, p->cfg.tied_embeddings, p->path);
  if (st != DRL_OK) {
    drl_transformer_free(&p->model);
    drl_device_close(&p->dev);
  }
  return st;
}

void drl_policy_close(drl_policy *p) {
  drl_transformer_free(&p->model);
  drl_tokenizer_free(&p->tok);
  drl_hf_source_free(&p->hf);
  drl_device_close(&p->dev);
  memset(p, 0, sizeof *p);
}

drl_status drl_policy_check_dataset(const drl_policy *p, const drl_dataset *ds, const char *path) {
  if (drl_dataset_is_text(ds)) {
    if (!p->tokenizer_file[0])
      return DRL_FAIL(DRL_ERR_CONFIG, "%s is a text prompt set; the policy is one of the built-in task '%s'", path,
                      p->task);
    return drl_policy_check_tokenizer(path, ds->tokenizer_hash, p->tokenizer_file, p->tokenizer_hash);
  }
  if (strcmp(ds->vocab, p->vocab) != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "%s holds task '%s' with the characters \"%s\"; the policy's are \"%s\"%s", path,
                    ds->task, ds->vocab, p->vocab, p->vocab[0] ? "" : " (a pretrained policy: a text set)");
  return DRL_OK;
}
