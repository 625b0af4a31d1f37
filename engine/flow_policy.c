#include "flow_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "data/h5.h"

int drl_flow_policy_phase(drl_cfg_phase p) { return p == DRL_CFG_PHASE_FLOW_PRETRAIN || p == DRL_CFG_PHASE_FLOW_GRPO; }

void drl_flow_policy_task(const drl_config *cfg, drl_flow2d *task) {
  task->conditions = cfg->flow.conditions;
  task->modes = cfg->flow.modes;
  task->mode_std = (float)cfg->flow.mode_std;
  task->reward_width = (float)cfg->flow.reward_width;
}

void drl_flow_policy_network(const drl_config *cfg, drl_flow_config *fc) {
  const drl_config_flow *f = &cfg->flow;
  fc->dim = 2;
  fc->n_cond = f->conditions;
  fc->cond_dim = f->cond_dim;
  fc->time_features = f->time_features;
  fc->hidden = f->hidden;
  fc->layers = f->layers;
  fc->init_std = (float)f->init_std;
  fc->max_freq = (float)f->max_freq;
}

int drl_flow_policy_window(const drl_config *cfg, int it) {
  const drl_config_tree *t = &cfg->tree;
  int l = t->window_start + (t->window_every > 0 ? (it - 1) / t->window_every : 0);
  return l < t->steps - t->depth ? l : t->steps - t->depth;
}

drl_sde_tree_params drl_flow_policy_tree_params(const drl_config *cfg, int it) {
  const drl_config_tree *t = &cfg->tree;
  int tree = t->sampling == DRL_CFG_TREE_TREE;
  drl_sde_tree_params p = {t->steps,
                           (float)t->shift,
                           (float)t->noise,
                           (float)t->noise_growth,
                           t->depth,
                           tree ? t->branch : 1,
                           drl_flow_policy_window(cfg, it),
                           tree ? 1 : t->group_size,
                           !tree && t->shared_noise,
                           t->logprob == DRL_CFG_LOGPROB_MEAN,
                           cfg->run.seed,
                           0};
  return p;
}

int64_t drl_flow_policy_nfe_through(const drl_config *cfg, int it) {
  int64_t n = 0;
  for (int i = 1; i <= it; ++i) {
    drl_sde_tree_params p = drl_flow_policy_tree_params(cfg, i);
    n += (int64_t)cfg->tree.conditions_per_iter * p.roots *
         (drl_sde_tree_sample_nfe(&p) + cfg->tree.epochs * drl_sde_tree_train_nfe(&p));
  }
  return n;
}

/* The points the network's activations must hold: a flow-matching batch, the largest tree layer, an eval chunk. */
int drl_flow_policy_rows(const drl_config *cfg) {
  drl_sde_tree_params p = drl_flow_policy_tree_params(cfg, 1);
  int64_t rows = drl_sde_tree_rows_needed(&p, cfg->tree.conditions_per_iter);
  if (rows < cfg->flow.batch_size) rows = cfg->flow.batch_size;
  if (rows < 4096) rows = 4096; /* the evaluation's chunk */
  return (int)rows;
}

/* ---- samples for pictures ---- */

drl_status drl_flow_policy_sample_file(const char *ckpt_path, const char *out_path, int n, int steps, uint64_t seed,
                                double *mean_reward) {
  if (n < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "samples per condition must be >= 1, got %d", n);
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(ckpt_path, NULL, &ck));
  drl_config cfg;
  drl_status st = drl_config_load_string(&cfg, ck.config_yaml, ckpt_path);
  drl_flow_config fc;
  drl_flow2d task;
  drl_flow model;
  memset(&model, 0, sizeof model);
  drl_device dev;
  memset(&dev, 0, sizeof dev);
  float *x = NULL, *reward = NULL, *modes = NULL;
  int32_t *cond = NULL, *conds = NULL, *target = NULL;
  drl_h5_writer w;
  memset(&w, 0, sizeof w);
  DRL_TRY_GOTO(st);
  if (strcmp(ck.phase, drl_cfg_phase_name(DRL_CFG_PHASE_FLOW_PRETRAIN)) != 0 &&
      strcmp(ck.phase, drl_cfg_phase_name(DRL_CFG_PHASE_FLOW_GRPO)) != 0) {
    st = DRL_FAIL(DRL_ERR_CONFIG, "%s holds a token policy (phase %s), not a flow policy", ckpt_path, ck.phase);
    goto done;
  }
  drl_flow_policy_network(&cfg, &fc);
  drl_flow_policy_task(&cfg, &task);
  if (steps <= 0) steps = cfg.tree.steps;
  DRL_TRY_GOTO(drl_device_open(&dev, drl_config_backend(&cfg),
                               cfg.run.device_index));
  DRL_TRY_GOTO(drl_flow_create(&model, &fc, &dev, 4096, cfg.run.seed));
  DRL_TRY_GOTO(drl_layout_compare(&ck.layout, &model.ps.layout, ckpt_path, "its configuration's flow network"));
  DRL_TRY_GOTO(drl_copy_to_device(&dev, model.ps.params, ck.params, (size_t)ck.layout.total * sizeof(float)));
  int C = task.conditions, M = task.modes;
  int64_t N = (int64_t)C * n;
  x = (float *)malloc((size_t)N * 2 * sizeof(float));
  reward = (float *)malloc((size_t)N * sizeof(float));
  cond = (int32_t *)malloc((size_t)N * sizeof(int32_t));
  conds = (int32_t *)malloc((size_t)C * sizeof(int32_t));
  target = (int32_t *)malloc((size_t)C * sizeof(int32_t));
  modes = (float *)malloc((size_t)C * M * 2 * sizeof(float));
  if (!x || !reward || !cond || !conds || !target || !modes) {
    st = DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld samples", (long long)N);
    goto done;
  }
  for (int c = 0; c < C; ++c) {
    conds[c] = c;
    target[c] = c % M;
    for (int m = 0; m < M; ++m) drl_flow2d_mode(&task, c, m, modes + ((size_t)c * M + m) * 2);
  }
  DRL_TRY_GOTO(drl_sde_tree_sample_ode(&model, conds, C, n, steps, (float)cfg.tree.shift, seed, x));
  double s = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    cond[i] = (int32_t)(i / n);
    reward[i] = drl_flow2d_reward(&task, x + 2 * i, cond[i]);
    s += reward[i];
  }
  if (mean_reward) *mean_reward = s / (double)N;
  int64_t xs[2] = {N, 2}, ms[3] = {C, M, 2};
  DRL_TRY_GOTO(drl_h5_writer_open(&w, out_path));
  DRL_TRY_GOTO(drl_h5_write_array(&w.file, "/samples/x", DRL_H5_FLOAT32, 2, xs, x));
  DRL_TRY_GOTO(drl_h5_write_array1d(&w.file, "/samples/cond", DRL_H5_INT32, N, cond));
  DRL_TRY_GOTO(drl_h5_write_array1d(&w.file, "/samples/reward", DRL_H5_FLOAT32, N, reward));
  DRL_TRY_GOTO(drl_h5_write_array(&w.file, "/task/modes", DRL_H5_FLOAT32, 3, ms, modes));
  DRL_TRY_GOTO(drl_h5_write_array1d(&w.file, "/task/target", DRL_H5_INT32, C, target));
  DRL_TRY_GOTO(drl_h5_write_attr_double(&w.file, "/", "reward_width", task.reward_width));
  DRL_TRY_GOTO(drl_h5_write_attr_double(&w.file, "/", "mode_std", task.mode_std));
  DRL_TRY_GOTO(drl_h5_write_attr_double(&w.file, "/", "mean_reward", s / (double)N));
  DRL_TRY_GOTO(drl_h5_write_attr_int64(&w.file, "/", "steps", steps));
  DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "phase", ck.phase));
  DRL_TRY_GOTO(drl_h5_write_attr_string(&w.file, "/", "checkpoint", ckpt_path));
  DRL_TRY_GOTO(drl_h5_writer_commit(&w));
done:
  drl_h5_writer_abort(&w);
  free(x);
  free(reward);
  free(cond);
  free(conds);
  free(target);
  free(modes);
  drl_flow_free(&model);
  drl_device_close(&dev);
  drl_config_free(&cfg);
  drl_checkpoint_free(&ck);
  return st;
}
