#define _POSIX_C_SOURCE 200809L
#include "flow_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "data/h5.h"
#include "data/metrics.h"
#include "kernels/fault.h"
#include "engine/flow_grpo.h"
#include "engine/log.h"
#include "engine/rl_step.h"
#include "engine/run.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"

/* The uid of the flow-matching draws among DRL_RNG_DATA streams (flow2d points use 18): per point of a step one
 * Philox block, word 0 the training point, word 1 the time, words 2-3 the noise. */
#define FLOW_MATCH_UID 19

int drl_phase_is_flow(drl_cfg_phase p) { return p == DRL_CFG_PHASE_FLOW_PRETRAIN || p == DRL_CFG_PHASE_FLOW_GRPO; }

void drl_flow_task_of(const drl_config *cfg, drl_flow2d *task) {
  task->conditions = cfg->flow.conditions;
  task->modes = cfg->flow.modes;
  task->mode_std = (float)cfg->flow.mode_std;
  task->reward_width = (float)cfg->flow.reward_width;
}

void drl_flow_config_of(const drl_config *cfg, drl_flow_config *fc) {
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

int drl_flow_window_at(const drl_config *cfg, int it) {
  const drl_config_tree *t = &cfg->tree;
  int l = t->window_start + (t->window_every > 0 ? (it - 1) / t->window_every : 0);
  return l < t->steps - t->depth ? l : t->steps - t->depth;
}

drl_tree_params drl_flow_tree_params(const drl_config *cfg, int it) {
  const drl_config_tree *t = &cfg->tree;
  int tree = t->sampling == DRL_CFG_TREE_TREE;
  drl_tree_params p = {t->steps,
                       (float)t->shift,
                       (float)t->noise,
                       (float)t->noise_growth,
                       t->depth,
                       tree ? t->branch : 1,
                       drl_flow_window_at(cfg, it),
                       tree ? 1 : t->group_size,
                       !tree && t->shared_noise,
                       t->logprob == DRL_CFG_LOGPROB_MEAN,
                       cfg->run.seed,
                       0};
  return p;
}

int64_t drl_flow_nfe_through(const drl_config *cfg, int it) {
  int64_t n = 0;
  for (int i = 1; i <= it; ++i) {
    drl_tree_params p = drl_flow_tree_params(cfg, i);
    n += (int64_t)cfg->tree.conditions_per_iter * p.roots *
         (drl_tree_sample_nfe(&p) + cfg->tree.epochs * drl_tree_train_nfe(&p));
  }
  return n;
}

/* ---- the run ---- */

enum {
  M_PHASE, M_LOSS, M_LR, M_GRAD_NORM, M_EVAL_REWARD, M_REWARD_MEAN, M_REWARD_STD, M_NFE, M_NFE_TOTAL, M_WINDOW,
  M_CLIP_FRAC, M_RATIO_MAX_DEV, M_RL_LOSS, M_SFT_LOSS, M_STEP_SECONDS, M_BAD_STEPS, M_COUNT
};
static const char *const metric_names[M_COUNT] = {
    "phase",      "loss",      "lr",     "grad_norm", "eval_reward",    "reward_mean", "reward_std",  "nfe",
    "nfe_total",  "window",    "clip_frac", "ratio_max_dev", "rl_loss", "sft_loss", "step_seconds",
    "bad_steps"};

typedef struct flow_run {
  const drl_config *cfg;
  drl_device dev;
  char *config_yaml;
  char ckpt_path[4096];
  drl_flow2d task;
  drl_flow model;
  int64_t optim_step;
  drl_bad_steps bad;    /* steps skipped for a non-finite loss or gradient */
  char last_ckpt[4200]; /* "path (phase step N)" of the last checkpoint written or resumed from; "" before */
  drl_metrics metrics;
  drl_progress progress;
  int64_t phase_offset; /* global step of the current phase's step 0 */
  int last_phase;
  double row[M_COUNT];
  /* flow-matching batch: host arrays and their device copies */
  int B;
  float *h_x, *h_t, *h_u, *h_v, *h_dv;
  int32_t *h_c;
  float *d_x, *d_t, *d_v, *d_dv;
  int32_t *d_c;
} flow_run;

static drl_status alloc_batch(flow_run *f) {
  size_t B = (size_t)f->B, f4 = sizeof(float);
  f->h_x = (float *)malloc(B * 2 * f4);
  f->h_t = (float *)malloc(B * f4);
  f->h_u = (float *)malloc(B * 2 * f4);
  f->h_v = (float *)malloc(B * 2 * f4);
  f->h_dv = (float *)malloc(B * 2 * f4);
  f->h_c = (int32_t *)malloc(B * sizeof(int32_t));
  if (!f->h_x || !f->h_t || !f->h_u || !f->h_v || !f->h_dv || !f->h_c)
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for a flow-matching batch of %d points", f->B);
  DRL_TRY(drl_alloc(&f->dev, (void **)&f->d_x, B * 2 * f4, "flow-matching points"));
  DRL_TRY(drl_alloc(&f->dev, (void **)&f->d_t, B * f4, "flow-matching times"));
  DRL_TRY(drl_alloc(&f->dev, (void **)&f->d_v, B * 2 * f4, "flow-matching velocities"));
  DRL_TRY(drl_alloc(&f->dev, (void **)&f->d_dv, B * 2 * f4, "flow-matching velocity gradients"));
  return drl_alloc(&f->dev, (void **)&f->d_c, B * sizeof(int32_t), "flow-matching conditions");
}

static void flow_run_close(flow_run *f) {
  void *host[] = {f->h_x, f->h_t, f->h_u, f->h_v, f->h_dv, f->h_c};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; ++i) free(host[i]);
  void *dev[] = {f->d_x, f->d_t, f->d_v, f->d_dv, f->d_c};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i) drl_free(&f->dev, dev[i]);
  drl_metrics_close(&f->metrics);
  drl_flow_free(&f->model);
  free(f->config_yaml);
  drl_device_close(&f->dev);
  memset(f, 0, sizeof *f);
}

/* The points the network's activations must hold: a flow-matching batch, the largest tree layer, an eval chunk. */
static int rows_needed(const drl_config *cfg) {
  drl_tree_params p = drl_flow_tree_params(cfg, 1);
  int64_t rows = drl_tree_rows_needed(&p, cfg->tree.conditions_per_iter);
  if (rows < cfg->flow.batch_size) rows = cfg->flow.batch_size;
  if (rows < 4096) rows = 4096; /* the evaluation's chunk */
  return (int)rows;
}

static drl_status flow_run_open(flow_run *f, const drl_config *cfg, drl_comm *comm) {
  memset(f, 0, sizeof *f);
  f->cfg = cfg;
  drl_status st = DRL_OK;
  DRL_TRY_GOTO(drl_config_validate(cfg));
  DRL_TRY_GOTO(drl_config_check_job(cfg, comm ? comm->size : 1));
  DRL_TRY_GOTO(drl_run_env_open(cfg, comm, &f->dev, &f->config_yaml, f->ckpt_path, sizeof f->ckpt_path));
  drl_flow_task_of(cfg, &f->task);
  drl_flow_config fc;
  drl_flow_config_of(cfg, &fc);
  DRL_TRY_GOTO(drl_flow_create(&f->model, &fc, &f->dev, rows_needed(cfg), cfg->run.seed));
  f->B = cfg->flow.batch_size;
  DRL_TRY_GOTO(alloc_batch(f));
done:
  if (st != DRL_OK) flow_run_close(f);
  return st;
}

static drl_status save(flow_run *f, const char *path, drl_cfg_phase phase, int step) {
  DRL_RANGE("checkpoint");
  drl_flow *m = &f->model;
  drl_checkpoint ck;
  memset(&ck, 0, sizeof ck);
  ck.layout = m->layout;
  ck.optim_step = f->optim_step;
  ck.trainer_step = step;
  ck.bad_steps = f->bad.total;
  ck.bad_streak = f->bad.streak;
  snprintf(ck.phase, sizeof ck.phase, "%s", drl_cfg_phase_name(phase));
  ck.seed = f->cfg->run.seed;
  ck.threads = drl_cpu_threads();
  ck.config_yaml = f->config_yaml;
  size_t n = (size_t)m->layout.total, bytes = n * sizeof(float);
  ck.params = (float *)malloc(bytes);
  ck.m = (float *)malloc(bytes);
  ck.v = (float *)malloc(bytes);
  drl_status st = ck.params && ck.m && ck.v ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for a checkpoint");
  if (st == DRL_OK) st = drl_copy_to_host(&f->dev, ck.params, m->params, bytes);
  if (st == DRL_OK) st = drl_copy_to_host(&f->dev, ck.m, m->m, bytes);
  if (st == DRL_OK) st = drl_copy_to_host(&f->dev, ck.v, m->v, bytes);
  if (st == DRL_OK) st = drl_checkpoint_write(path, &ck);
  free(ck.params);
  free(ck.m);
  free(ck.v);
  return st;
}

/* Loads a checkpoint of this network's layout: the weights, and with optimizer the moments and the position. */
static drl_status load(flow_run *f, const char *path, int optimizer, char *phase, size_t cap, int *step) {
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(path, &f->model.layout, &ck));
  drl_status st = DRL_OK;
  size_t bytes = (size_t)ck.layout.total * sizeof(float);
  if (optimizer && ck.seed != f->cfg->run.seed)
    st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written with run.seed %llu, this run has %llu", path,
                  (unsigned long long)ck.seed, (unsigned long long)f->cfg->run.seed);
  else if (optimizer && !ck.m)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s has no optimizer state to resume from", path);
  if (st == DRL_OK && optimizer && f->dev.backend == DRL_BACKEND_CPU && ck.threads != drl_cpu_threads())
    drl_log(DRL_LOG_WARN, "%s was written with %lld CPU threads, this run has %d: results will differ from an "
            "uninterrupted run in the last bits (pin run.threads for bit-exact resume)",
            path, (long long)ck.threads, drl_cpu_threads());
  if (st == DRL_OK) st = drl_copy_to_device(&f->dev, f->model.params, ck.params, bytes);
  if (st == DRL_OK && optimizer) st = drl_copy_to_device(&f->dev, f->model.m, ck.m, bytes);
  if (st == DRL_OK && optimizer) st = drl_copy_to_device(&f->dev, f->model.v, ck.v, bytes);
  if (st == DRL_OK) st = drl_device_sync(&f->dev);
  if (st == DRL_OK && optimizer) {
    snprintf(phase, cap, "%s", ck.phase);
    *step = (int)ck.trainer_step;
    f->optim_step = ck.optim_step;
    f->bad.total = ck.bad_steps;
    f->bad.streak = ck.bad_streak;
  }
  drl_checkpoint_free(&ck);
  return st;
}

/* Mean reward of tree.eval_samples deterministic ODE samples per condition (the same noises every time). */
static drl_status evaluate(flow_run *f, double *reward) {
  DRL_RANGE("evaluate");
  const drl_config *cfg = f->cfg;
  int C = f->task.conditions, n = cfg->tree.eval_samples;
  int32_t *cond = (int32_t *)malloc((size_t)C * sizeof(int32_t));
  float *x = (float *)malloc((size_t)C * n * 2 * sizeof(float));
  drl_status st = cond && x ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for %d evaluation samples", C * n);
  for (int c = 0; st == DRL_OK && c < C; ++c) cond[c] = c;
  if (st == DRL_OK)
    st = drl_flow_sample_ode(&f->model, cond, C, n, cfg->tree.steps, (float)cfg->tree.shift, cfg->run.seed, x);
  double s = 0.0;
  for (int64_t i = 0; st == DRL_OK && i < (int64_t)C * n; ++i)
    s += drl_flow2d_reward(&f->task, x + 2 * i, (int)(i / n));
  *reward = s / ((double)C * n);
  free(cond);
  free(x);
  return st;
}

static double *row_init(flow_run *f, drl_cfg_phase phase) {
  for (int i = 0; i < M_COUNT; ++i) f->row[i] = NAN;
  f->row[M_PHASE] = (double)phase;
  return f->row;
}

/* After a step: evaluation, the metrics row, the checkpoint, trainer.stop_after. */
static drl_status after_step(flow_run *f, drl_cfg_phase phase, int step, int steps, drl_train_summary *sum, int *stop) {
  const drl_config *cfg = f->cfg;
  int every = phase == DRL_CFG_PHASE_FLOW_GRPO ? cfg->tree.eval_every : cfg->trainer.eval_every;
  if ((every > 0 && step % every == 0) || step == steps) {
    DRL_TRY(evaluate(f, &f->row[M_EVAL_REWARD]));
    if (step < steps) {
      drl_progress_end(&f->progress);
      drl_log(DRL_LOG_INFO, "%s step %d: eval reward %.4f", drl_cfg_phase_name(phase), step, f->row[M_EVAL_REWARD]);
    }
  }
  DRL_TRY(drl_metrics_log(&f->metrics, f->phase_offset + step, f->row));
  drl_fault_point(0, f->phase_offset + step);
  *stop = cfg->trainer.stop_after > 0 && sum->steps >= cfg->trainer.stop_after && !(step == steps && f->last_phase);
  if ((cfg->trainer.ckpt_every > 0 && step % cfg->trainer.ckpt_every == 0) || step == steps || *stop) {
    DRL_TRY(drl_metrics_flush(&f->metrics)); /* the rows up to a checkpoint reach the disk before it does */
    DRL_TRY(save(f, f->ckpt_path, phase, step));
    snprintf(f->last_ckpt, sizeof f->last_ckpt, "%s (%s step %d)", f->ckpt_path, drl_cfg_phase_name(phase), step);
  }
  if (*stop) sum->stopped_at = step;
  return DRL_OK;
}

/* One flow-matching step: B points x_0 of the training set, times t and noises eps of the step's Philox block per
 * point, x_t = (1 - t) x_0 + t eps, loss = mean |v(x_t, t, c) - (eps - x_0)|^2 over points and dimensions. */
/* The optimizer step of the flow policy from its gradient, unless the loss or the gradient is not finite: then
 * nothing changes (parameters, moments, the step counter) and bad names what ("loss" or the first tensor of the
 * gradient holding a non-finite value; "" for a good step). */
static drl_status flow_step_checked(flow_run *f, const drl_optim_step *hp, double loss, float *norm, char *bad) {
  bad[0] = '\0';
  if (!isfinite(loss)) {
    *norm = NAN;
    snprintf(bad, DRL_TENSOR_NAME_CAP, "loss");
    return DRL_OK;
  }
  drl_status st = drl_flow_step(&f->model, hp, norm);
  if (st == DRL_OK) {
    f->optim_step++;
    return DRL_OK;
  }
  if (st != DRL_ERR_NUMERIC || isfinite(*norm)) return st;
  drl_clear_error(); /* drl_flow_step refuses a non-finite norm before any change */
  const drl_tensor_info *t = NULL;
  DRL_TRY(drl_layout_first_nonfinite(&f->dev, &f->model.layout, f->model.grads, 0, f->model.layout.total, &t));
  snprintf(bad, DRL_TENSOR_NAME_CAP, "%s", t ? t->name : "gradient norm");
  return DRL_OK;
}

/* Counts a step as good or skipped into the row; the trainer.max_bad_steps-th skipped step in a row ends the run with
 * its row logged and no checkpoint written. */
static drl_status count_bad(flow_run *f, drl_cfg_phase phase, int step, const char *bad) {
  drl_status st = drl_bad_steps_record(&f->bad, drl_cfg_phase_name(phase), step, bad, f->cfg->trainer.max_bad_steps,
                                       f->last_ckpt);
  f->row[M_BAD_STEPS] = (double)f->bad.total;
  if (st != DRL_OK && drl_metrics_log(&f->metrics, f->phase_offset + step, f->row) != DRL_OK)
    drl_log(DRL_LOG_WARN, "the metrics row of %s step %d was not written", drl_cfg_phase_name(phase), step);
  return st;
}

static drl_status pretrain_step(flow_run *f, int step, int steps, double *loss, float *norm, float *lr, char *bad) {
  const drl_config *cfg = f->cfg;
  int B = f->B;
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, FLOW_MATCH_UID, 0);
  uint32_t gstep = (uint32_t)(f->phase_offset + step);
  for (int i = 0; i < B; ++i) {
    drl_philox_block b = drl_rng_block(cfg->run.seed, gstep, tag, (uint64_t)i);
    float x0[2], eps[2];
    drl_flow2d_point(&f->task, cfg->run.seed, b.v[0] % (uint32_t)cfg->flow.n_train, x0, &f->h_c[i]);
    float t = drl_u32_to_uniform_pos(b.v[1]); /* (0, 1]: t = 0 is the data itself */
    drl_box_muller(b.v[2], b.v[3], &eps[0], &eps[1]);
    f->h_t[i] = t;
    for (int d = 0; d < 2; ++d) {
      f->h_x[2 * i + d] = (1.0f - t) * x0[d] + t * eps[d];
      f->h_u[2 * i + d] = eps[d] - x0[d];
    }
  }
  drl_device *dev = &f->dev;
  size_t xb = (size_t)B * 2 * sizeof(float);
  DRL_TRY(drl_copy_to_device(dev, f->d_x, f->h_x, xb));
  DRL_TRY(drl_copy_to_device(dev, f->d_t, f->h_t, (size_t)B * sizeof(float)));
  DRL_TRY(drl_copy_to_device(dev, f->d_c, f->h_c, (size_t)B * sizeof(int32_t)));
  DRL_TRY(drl_flow_forward(&f->model, f->d_x, f->d_t, f->d_c, B, f->d_v));
  DRL_TRY(drl_copy_to_host(dev, f->h_v, f->d_v, xb));
  double s = 0.0, scale = 1.0 / (2.0 * B);
  for (int i = 0; i < 2 * B; ++i) {
    double r = (double)f->h_v[i] - f->h_u[i];
    s += r * r;
    f->h_dv[i] = (float)(2.0 * r * scale);
  }
  *loss = s * scale;
  if (drl_fault_value("nan_loss", 0, gstep, NULL)) *loss = NAN; /* value faults: kernels/fault.h */
  *lr = drl_lr_at(&cfg->optim, step, steps);
  if (isfinite(*loss)) {
    DRL_TRY(drl_copy_to_device(dev, f->d_dv, f->h_dv, xb));
    DRL_TRY(drl_flow_zero_grads(&f->model));
    DRL_TRY(drl_flow_backward(&f->model, f->d_dv));
    DRL_TRY(drl_layout_inject_grad_fault(dev, &f->model.layout, f->model.grads, 0, gstep, NULL));
  }
  drl_optim_step hp = {*lr, (float)cfg->optim.beta1, (float)cfg->optim.beta2, (float)cfg->optim.eps,
                       (float)cfg->optim.weight_decay, (float)cfg->optim.grad_clip, (int)f->optim_step + 1};
  return flow_step_checked(f, &hp, *loss, norm, bad);
}

static drl_status run_pretrain(flow_run *f, int start, drl_train_summary *sum) {
  const drl_config *cfg = f->cfg;
  int steps = cfg->flow.pretrain_steps;
  drl_status st = DRL_OK;
  drl_progress_begin(&f->progress, "flow_pretrain", steps, start, cfg->run.log_every);
  double t0 = drl_seconds();
  for (int step = start + 1; st == DRL_OK && step <= steps; ++step) {
    DRL_RANGE("flow_pretrain_step");
    double loss = 0.0, t_step = drl_seconds();
    float norm = 0.0f, lr = 0.0f;
    char bad[DRL_TENSOR_NAME_CAP];
    st = pretrain_step(f, step, steps, &loss, &norm, &lr, bad);
    if (st != DRL_OK) break;
    sum->steps++;
    sum->final_loss = loss;
    char text[128];
    snprintf(text, sizeof text, "loss %.4f lr %.2e gnorm %.3f", loss, (double)lr, (double)norm);
    drl_progress_update(&f->progress, step, text);
    double *row = row_init(f, DRL_CFG_PHASE_FLOW_PRETRAIN);
    row[M_LOSS] = loss;
    row[M_LR] = lr;
    row[M_GRAD_NORM] = norm;
    row[M_STEP_SECONDS] = drl_seconds() - t_step;
    st = count_bad(f, DRL_CFG_PHASE_FLOW_PRETRAIN, step, bad);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(f, DRL_CFG_PHASE_FLOW_PRETRAIN, step, steps, sum, &stop);
    if (stop) break;
  }
  drl_progress_end(&f->progress);
  sum->seconds += drl_seconds() - t0;
  return st;
}

static drl_status run_grpo(flow_run *f, int start, drl_train_summary *sum) {
  const drl_config *cfg = f->cfg;
  const drl_config_tree *tc = &cfg->tree;
  int iters = tc->iterations, G = tc->conditions_per_iter;
  drl_tree tree;
  drl_tree_params p0 = drl_flow_tree_params(cfg, 1);
  drl_status st = drl_tree_create(&tree, &p0, G, 2, &f->dev);
  if (st != DRL_OK) return st;
  int32_t *cond = (int32_t *)malloc((size_t)G * sizeof(int32_t));
  if (!cond) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for conditions");
  drl_flow_grpo_cfg gc = {(drl_tree_adv)tc->advantage, 1e-6f,
                          (float)tc->adv_clip,         (float)tc->clip_low,
                          (float)tc->clip_high,        (float)tc->clip_sensitivity,
                          (float)tc->sft_weight,       (float)tc->sft_wmax};
  float lr = (float)(tc->lr > 0 ? tc->lr : cfg->optim.lr);
  int64_t nfe_total = drl_flow_nfe_through(cfg, start);
  drl_progress_begin(&f->progress, "flow_grpo", iters, start, cfg->run.log_every);
  double t0 = drl_seconds();
  for (int it = start + 1; st == DRL_OK && it <= iters; ++it) {
    DRL_RANGE("flow_grpo_iteration");
    double t_it = drl_seconds();
    uint32_t gstep = (uint32_t)(f->phase_offset + it);
    for (int g = 0; g < G; ++g) cond[g] = (int32_t)(((int64_t)(it - 1) * G + g) % f->task.conditions);
    tree.p.window = drl_flow_window_at(cfg, it);
    st = drl_tree_sample(&tree, &f->model, cond, gstep);
    if (st != DRL_OK) break;
    int64_t per = tree.leaves / G;
    for (int q = 0; q < tree.leaves; ++q)
      tree.reward[q] = drl_flow2d_reward(&f->task, tree.leaf_x + 2 * q, cond[q / per]);
    drl_flow_grpo_stats gs;
    int64_t nfe = tree.nfe;
    char bad[DRL_TENSOR_NAME_CAP] = "";
    /* The statistics of the last update; a non-finite loss or gradient skips that update and the iteration's rest. */
    for (int e = 0; st == DRL_OK && e < tc->epochs && !bad[0]; ++e) {
      drl_optim_step hp = {lr, (float)cfg->optim.beta1, (float)cfg->optim.beta2, (float)cfg->optim.eps,
                           (float)cfg->optim.weight_decay, (float)cfg->optim.grad_clip, (int)f->optim_step + 1};
      st = drl_flow_grpo_step(&tree, &f->model, &gc, NULL, &gs);
      if (st == DRL_OK && e == 0 && drl_fault_value("nan_loss", 0, gstep, NULL)) gs.loss = NAN; /* kernels/fault.h */
      if (st == DRL_OK && e == 0)
        st = drl_layout_inject_grad_fault(&f->dev, &f->model.layout, f->model.grads, 0, gstep, NULL);
      if (st == DRL_OK) st = flow_step_checked(f, &hp, gs.loss, &gs.grad_norm, bad);
      nfe += gs.nfe_train;
    }
    if (st != DRL_OK) break;
    nfe_total += nfe;
    sum->steps++;
    sum->final_loss = gs.loss;
    char text[200];
    snprintf(text, sizeof text, "reward %.3f (std %.3f) loss %.4f window %d nfe %lld clip %.2f", gs.reward_mean,
             gs.reward_std, gs.loss, tree.p.window, (long long)nfe_total, gs.clip_frac);
    drl_progress_update(&f->progress, it, text);
    double *row = row_init(f, DRL_CFG_PHASE_FLOW_GRPO);
    row[M_LOSS] = gs.loss;
    row[M_LR] = lr;
    row[M_GRAD_NORM] = gs.grad_norm;
    row[M_REWARD_MEAN] = gs.reward_mean;
    row[M_REWARD_STD] = gs.reward_std;
    row[M_NFE] = (double)nfe;
    row[M_NFE_TOTAL] = (double)nfe_total;
    row[M_WINDOW] = tree.p.window;
    row[M_CLIP_FRAC] = gs.clip_frac;
    row[M_RATIO_MAX_DEV] = gs.ratio_max_dev;
    row[M_RL_LOSS] = gs.rl_loss;
    row[M_SFT_LOSS] = gs.sft_loss;
    row[M_STEP_SECONDS] = drl_seconds() - t_it;
    st = count_bad(f, DRL_CFG_PHASE_FLOW_GRPO, it, bad);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(f, DRL_CFG_PHASE_FLOW_GRPO, it, iters, sum, &stop);
    if (stop) break;
  }
  drl_progress_end(&f->progress);
  sum->seconds += drl_seconds() - t0;
  free(cond);
  drl_tree_free(&tree);
  return st;
}

static int64_t phase_steps(const drl_config *cfg, drl_cfg_phase phase) {
  return phase == DRL_CFG_PHASE_FLOW_PRETRAIN ? cfg->flow.pretrain_steps : cfg->tree.iterations;
}

drl_status drl_train_flow(const drl_config *cfg, drl_comm *comm, drl_train_summary *sum) {
  memset(sum, 0, sizeof *sum);
  sum->eval_before = sum->eval_after = sum->eval_after_sft = -1.0;
  sum->flow = 1;
  flow_run f;
  drl_status st = DRL_OK;
  DRL_TRY(flow_run_open(&f, cfg, comm));
  char devname[256];
  drl_device_describe(&f.dev, devname, sizeof devname);
  drl_log(DRL_LOG_INFO, "dynrl: flow2d task (%d conditions x %d modes), velocity MLP of %lld parameters on %s",
          f.task.conditions, f.task.modes, (long long)f.model.layout.total, devname);

  int resume_phase = -1, resume_step = 0;
  FILE *ck_file = cfg->trainer.resume ? fopen(f.ckpt_path, "rb") : NULL;
  if (ck_file) {
    fclose(ck_file);
    char phase[DRL_PHASE_NAME_CAP];
    DRL_TRY_GOTO(load(&f, f.ckpt_path, 1, phase, sizeof phase, &resume_step));
    for (int p = 0; p < cfg->trainer.phases.count; ++p)
      if (strcmp(drl_cfg_phase_name(cfg->trainer.phases.items[p]), phase) == 0) resume_phase = p;
    if (resume_phase < 0) {
      st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written in phase '%s', which trainer.phases does not run", f.ckpt_path,
                    phase);
      goto done;
    }
    sum->resumed_from = resume_step;
    snprintf(f.last_ckpt, sizeof f.last_ckpt, "%s (%s step %d)", f.ckpt_path, phase, resume_step);
    drl_log(DRL_LOG_INFO, "resumed %s at step %d from %s", phase, resume_step, f.ckpt_path);
  }
  int64_t offsets[DRL_CFG_COUNT_phase + 1] = {0};
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    offsets[p + 1] = offsets[p] + phase_steps(cfg, cfg->trainer.phases.items[p]);
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.h5", cfg->run.out_dir);
  DRL_TRY_GOTO(drl_metrics_open(&f.metrics, path, metric_names, M_COUNT,
                                resume_phase >= 0 ? offsets[resume_phase] + resume_step : -1, 10));
  if (resume_phase < 0 && cfg->trainer.init_from[0]) {
    DRL_TRY_GOTO(load(&f, cfg->trainer.init_from, 0, NULL, 0, NULL));
    drl_log(DRL_LOG_INFO, "initialised the flow policy from %s", cfg->trainer.init_from);
  }
  if (resume_phase < 0) {
    DRL_TRY_GOTO(evaluate(&f, &sum->eval_before));
    drl_log(DRL_LOG_INFO, "eval reward before training: %.4f", sum->eval_before);
  }
  for (int p = resume_phase < 0 ? 0 : resume_phase; p < cfg->trainer.phases.count; ++p) {
    drl_cfg_phase phase = cfg->trainer.phases.items[p];
    int start = p == resume_phase ? resume_step : 0;
    f.phase_offset = offsets[p];
    f.last_phase = p + 1 == cfg->trainer.phases.count;
    if (phase == DRL_CFG_PHASE_FLOW_PRETRAIN)
      DRL_TRY_GOTO(run_pretrain(&f, start, sum));
    else
      DRL_TRY_GOTO(run_grpo(&f, start, sum));
    if (sum->stopped_at) {
      drl_log(DRL_LOG_INFO, "stopped after step %d (trainer.stop_after); resume with --resume", sum->stopped_at);
      goto done;
    }
    /* Every phase's end state stays as run.out_dir/<phase>.h5 (ckpt.h5 moves on): the "before" of the next. */
    snprintf(path, sizeof path, "%s/%s.h5", cfg->run.out_dir, drl_cfg_phase_name(phase));
    DRL_TRY_GOTO(save(&f, path, phase, (int)phase_steps(cfg, phase)));
    double reward = f.row[M_EVAL_REWARD];
    if (isnan(reward) || phase_steps(cfg, phase) == 0 || start == phase_steps(cfg, phase))
      DRL_TRY_GOTO(evaluate(&f, &reward));
    drl_log(DRL_LOG_INFO, "eval reward after %s: %.4f (%s)", drl_cfg_phase_name(phase), reward, path);
    if (phase == DRL_CFG_PHASE_FLOW_PRETRAIN && !f.last_phase) sum->eval_after_sft = reward;
    sum->eval_after = reward;
  }
done:
  flow_run_close(&f);
  return st;
}

/* ---- samples for pictures ---- */

drl_status drl_flow_sample_file(const char *ckpt_path, const char *out_path, int n, int steps, uint64_t seed,
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
  drl_flow_config_of(&cfg, &fc);
  drl_flow_task_of(&cfg, &task);
  if (steps <= 0) steps = cfg.tree.steps;
  DRL_TRY_GOTO(drl_device_open(&dev, cfg.run.device == DRL_CFG_DEVICE_CUDA ? DRL_BACKEND_CUDA : DRL_BACKEND_CPU,
                               cfg.run.device_index));
  DRL_TRY_GOTO(drl_flow_create(&model, &fc, &dev, 4096, cfg.run.seed));
  DRL_TRY_GOTO(drl_layout_compare(&ck.layout, &model.layout, ckpt_path, "its configuration's flow network"));
  DRL_TRY_GOTO(drl_copy_to_device(&dev, model.params, ck.params, (size_t)ck.layout.total * sizeof(float)));
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
  DRL_TRY_GOTO(drl_flow_sample_ode(&model, conds, C, n, steps, (float)cfg.tree.shift, seed, x));
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
