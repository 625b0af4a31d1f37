#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/checkpoint.h"
#include "data/dataset.h"
#include "data/metrics.h"
#include "data/tasks.h"
#include "engine/evaluate.h"
#include "engine/log.h"
#include "engine/sft.h"
#include "kernels/nvtx.h"
#include "models/transformer.h"

float drl_lr_at(const drl_config_optim *o, int step, int total) {
  double lr = o->lr;
  if (o->warmup_steps > 0 && step <= o->warmup_steps) return (float)(lr * step / o->warmup_steps);
  if (o->lr_schedule == DRL_CFG_LR_CONSTANT || total <= o->warmup_steps) return (float)lr;
  double progress = (double)(step - o->warmup_steps) / (double)(total - o->warmup_steps);
  double lo = lr * o->min_lr_ratio;
  return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}

/* Everything one training run holds. */
typedef struct run_state {
  const drl_config *cfg;
  drl_device dev;
  drl_dataset data;
  int64_t n_train, n_eval;
  int max_answer;
  drl_transformer model;
  char ckpt_path[4096];
  char *config_yaml;
  int64_t optim_step;   /* AdamW steps so far, across phases (bias correction) */
  int64_t phase_offset; /* global step of the current phase's step 0 (metrics rows) */
  drl_metrics metrics;
} run_state;

/* One metrics row per optimizer step or RL iteration; a metric a phase does not produce is NaN. */
enum {
  M_PHASE, M_LOSS, M_LR, M_GRAD_NORM, M_TOKENS_PER_S, M_EVAL_ACCURACY, M_REWARD_MEAN, M_REWARD_STD, M_KEPT_SAMPLES,
  M_KEPT_TOKENS, M_LOSS_TOKENS, M_USEFULNESS, M_CLIP_FRAC, M_KL, M_ENTROPY, M_RESPONSE_LEN, M_COUNT
};
static const char *const metric_names[M_COUNT] = {
    "phase",       "loss",        "lr",          "grad_norm",  "tokens_per_s", "eval_accuracy",
    "reward_mean", "reward_std",  "kept_samples", "kept_tokens", "loss_tokens", "usefulness",
    "clip_frac",   "kl",          "entropy",     "response_len"};

static void metrics_row_init(double *row, drl_cfg_phase phase) {
  for (int i = 0; i < M_COUNT; ++i) row[i] = NAN;
  row[M_PHASE] = (double)phase;
}

static drl_status make_dir(const char *dir) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return DRL_FAIL(DRL_ERR_IO, "path too long: %s", dir);
  for (char *p = buf + 1;; ++p) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return DRL_FAIL(DRL_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
      *p = saved;
      if (!saved) break;
    }
  }
  return DRL_OK;
}

static drl_status load_data(run_state *r) {
  const drl_config_data *d = &r->cfg->data;
  int64_t want = (int64_t)d->n_train + d->n_eval;
  if (d->path[0]) {
    DRL_TRY(drl_dataset_read(d->path, &r->data));
    if (r->data.prompts.n < want)
      return DRL_FAIL(DRL_ERR_CONFIG, "%s holds %lld examples, data.n_train + data.n_eval asks for %lld", d->path,
                      (long long)r->data.prompts.n, (long long)want);
  } else {
    /* one generated set split by index: examples [0, n_train) train, the next n_eval are held out */
    DRL_TRY(drl_task_generate(drl_cfg_task_name(d->task), want, r->cfg->run.seed, d->size, &r->data));
  }
  r->n_train = d->n_train;
  r->n_eval = d->n_eval;
  int64_t longest = 0;
  for (int64_t i = 0; i < r->data.answers.n; ++i) {
    int64_t len = r->data.answers.offsets[i + 1] - r->data.answers.offsets[i];
    longest = len > longest ? len : longest;
  }
  r->max_answer = (int)longest;
  int max_len = 0;
  DRL_TRY(drl_sft_max_len(&r->data, 0, want, &max_len));
  if (max_len > r->cfg->model.max_seq)
    return DRL_FAIL(DRL_ERR_CONFIG, "the longest example (prompt + answer) has %d tokens; model.max_seq is %d",
                    max_len, r->cfg->model.max_seq);
  return DRL_OK;
}

static drl_status make_model(run_state *r, int B_max) {
  const drl_config_model *mc = &r->cfg->model;
  int vocab = (int)strlen(r->data.vocab);
  if (mc->vocab_size != 0 && mc->vocab_size < vocab)
    return DRL_FAIL(DRL_ERR_CONFIG, "model.vocab_size = %d is smaller than the dataset's vocabulary (%d)",
                    mc->vocab_size, vocab);
  drl_transformer_config tc = {mc->vocab_size ? mc->vocab_size : vocab,
                               mc->d_model,
                               mc->n_layers,
                               mc->n_heads,
                               mc->n_kv_heads,
                               mc->d_ff,
                               mc->max_seq,
                               mc->tied_embeddings,
                               (float)mc->rope_theta,
                               (float)mc->init_std,
                               (float)mc->norm_eps};
  if (mc->ffn != DRL_CFG_FFN_DENSE) return DRL_FAIL(DRL_ERR_UNSUPPORTED, "model.ffn = moe is not available yet");
  return drl_transformer_create(&r->model, &tc, &r->dev, B_max, mc->max_seq, r->cfg->run.seed);
}

/* Copies a device buffer of n floats to a fresh host array. */
static drl_status to_host(const drl_device *dev, const float *src, int64_t n, float **out) {
  *out = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!*out) return DRL_FAIL(DRL_ERR_OOM, "out of host memory copying %lld floats", (long long)n);
  return drl_copy_to_host(dev, *out, src, (size_t)n * sizeof(float));
}

static drl_status save_checkpoint(run_state *r, const char *phase, int step) {
  DRL_RANGE("checkpoint");
  drl_transformer *m = &r->model;
  drl_checkpoint ck;
  memset(&ck, 0, sizeof ck);
  ck.layout = m->layout;
  ck.optim_step = r->optim_step;
  ck.trainer_step = step;
  snprintf(ck.phase, sizeof ck.phase, "%s", phase);
  ck.seed = r->cfg->run.seed;
  ck.threads = drl_cpu_threads();
  ck.config_yaml = r->config_yaml;
  drl_status st = to_host(&m->dev, m->params, m->layout.total, &ck.params);
  if (st == DRL_OK) st = to_host(&m->dev, m->m, m->layout.total, &ck.m);
  if (st == DRL_OK) st = to_host(&m->dev, m->v, m->layout.total, &ck.v);
  if (st == DRL_OK) st = drl_checkpoint_write(r->ckpt_path, &ck);
  free(ck.params);
  free(ck.m);
  free(ck.v);
  return st;
}

/* Loads run.out_dir/ckpt.h5 into the model and the optimizer; *phase and *step say where it was written. */
static drl_status resume(run_state *r, char *phase, size_t phase_cap, int *step) {
  drl_checkpoint ck;
  DRL_TRY(drl_checkpoint_read(r->ckpt_path, &r->model.layout, &ck));
  drl_status st = DRL_OK;
  if (ck.seed != r->cfg->run.seed)
    st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written with run.seed %llu, this run has %llu", r->ckpt_path,
                  (unsigned long long)ck.seed, (unsigned long long)r->cfg->run.seed);
  else if (!ck.m)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s has no optimizer state to resume from", r->ckpt_path);
  if (st == DRL_OK && r->dev.backend == DRL_BACKEND_CPU && ck.threads != drl_cpu_threads())
    drl_log(DRL_LOG_WARN,
            "%s was written with %lld CPU threads, this run has %d: results will differ from an uninterrupted run "
            "in the last bits (pin run.threads for bit-exact resume)",
            r->ckpt_path, (long long)ck.threads, drl_cpu_threads());
  if (st == DRL_OK && strcmp(ck.config_yaml, r->config_yaml) != 0)
    drl_log(DRL_LOG_WARN, "resuming from %s, whose configuration differs from this run's", r->ckpt_path);
  size_t bytes = (size_t)ck.layout.total * sizeof(float);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, r->model.params, ck.params, bytes);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, r->model.m, ck.m, bytes);
  if (st == DRL_OK) st = drl_copy_to_device(&r->dev, r->model.v, ck.v, bytes);
  if (st == DRL_OK) st = drl_device_sync(&r->dev);
  snprintf(phase, phase_cap, "%s", ck.phase);
  *step = (int)ck.trainer_step;
  r->optim_step = ck.optim_step;
  drl_checkpoint_free(&ck);
  return st;
}

static drl_status evaluate(run_state *r, double *acc) {
  if (r->n_eval == 0) {
    *acc = -1.0;
    return DRL_OK;
  }
  return drl_eval_greedy(&r->model, &r->data, r->n_train, r->n_eval, r->max_answer, acc);
}

/* Appends the row to the metrics file (global step = phase offset + step). */
static drl_status log_metrics(run_state *r, int step, const double *row) {
  return drl_metrics_log(&r->metrics, r->phase_offset + step, row);
}

static drl_status run_sft(run_state *r, int start, drl_train_summary *sum) {
  const drl_config *cfg = r->cfg;
  int steps = cfg->sft.steps;
  drl_transformer *m = &r->model;
  int T = 0; /* at most model.max_seq: load_data checked */
  DRL_TRY(drl_sft_max_len(&r->data, 0, r->n_train, &T));
  drl_sft_batch batch;
  DRL_TRY(drl_sft_batch_alloc(&batch, cfg->sft.batch_size, T));
  float *logprob = (float *)malloc((size_t)batch.B * T * sizeof(float));
  drl_status st = logprob ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for log-probabilities");
  drl_progress prog;
  drl_progress_begin(&prog, "sft", steps, start, cfg->run.log_every);
  double t0 = drl_seconds(), tokens = 0;
  for (int step = start + 1; st == DRL_OK && step <= steps; ++step) {
    DRL_RANGE("sft_step");
    st = drl_sft_batch_fill(&batch, &r->data, r->n_train, cfg->run.seed, step);
    if (st == DRL_OK) st = drl_transformer_forward(m, batch.tokens, batch.targets, NULL, batch.B, T, 1.0f, logprob, NULL);
    if (st == DRL_OK) st = drl_transformer_zero_grads(m);
    if (st == DRL_OK) st = drl_transformer_backward(m, batch.dlogprob);
    double loss = st == DRL_OK ? drl_sft_loss(&batch, logprob) : 0.0;
    if (st == DRL_OK && !isfinite(loss)) st = DRL_FAIL(DRL_ERR_NUMERIC, "sft loss is %g at step %d", loss, step);
    float lr = drl_lr_at(&cfg->optim, step, steps), norm = 0.0f;
    drl_optim_step hp = {lr, (float)cfg->optim.beta1, (float)cfg->optim.beta2, (float)cfg->optim.eps,
                         (float)cfg->optim.weight_decay, (float)cfg->optim.grad_clip, (int)r->optim_step + 1};
    if (st == DRL_OK) st = drl_transformer_step(m, &hp, &norm);
    if (st != DRL_OK) break;
    r->optim_step++;
    tokens += (double)batch.B * T;
    sum->steps++;
    sum->final_loss = loss;
    char text[160];
    double el = drl_seconds() - t0;
    snprintf(text, sizeof text, "loss %.4f lr %.2e gnorm %.3f tok/s %.0f", loss, (double)lr, (double)norm,
             el > 0 ? tokens / el : 0.0);
    drl_progress_update(&prog, step, text);
    double row[M_COUNT];
    metrics_row_init(row, DRL_CFG_PHASE_SFT);
    row[M_LOSS] = loss;
    row[M_LR] = lr;
    row[M_GRAD_NORM] = norm;
    row[M_TOKENS_PER_S] = el > 0 ? tokens / el : 0.0;
    row[M_LOSS_TOKENS] = (double)batch.scored;
    if (cfg->trainer.eval_every > 0 && step % cfg->trainer.eval_every == 0 && step < steps) {
      double acc = 0;
      st = evaluate(r, &acc);
      if (st == DRL_OK && acc >= 0) {
        row[M_EVAL_ACCURACY] = acc;
        drl_progress_end(&prog);
        drl_log(DRL_LOG_INFO, "sft step %d: held-out exact match %.3f", step, acc);
      }
    }
    if (st == DRL_OK) st = log_metrics(r, step, row);
    int stop = cfg->trainer.stop_after > 0 && step - start >= cfg->trainer.stop_after && step < steps;
    if (st == DRL_OK &&
        ((cfg->trainer.ckpt_every > 0 && step % cfg->trainer.ckpt_every == 0) || step == steps || stop))
      st = save_checkpoint(r, "sft", step);
    if (stop) {
      sum->stopped_at = step;
      break;
    }
  }
  drl_progress_end(&prog);
  sum->seconds += drl_seconds() - t0;
  sum->tokens_per_second = sum->seconds > 0 ? tokens / sum->seconds : 0.0;
  free(logprob);
  drl_sft_batch_free(&batch);
  return st;
}

/* Steps (or iterations) a phase runs when uninterrupted. */
static int64_t phase_steps(const drl_config *cfg, drl_cfg_phase phase) {
  return phase == DRL_CFG_PHASE_SFT ? cfg->sft.steps : cfg->grpo.steps;
}

drl_status drl_train(const drl_config *cfg, drl_train_summary *sum) {
  memset(sum, 0, sizeof *sum);
  sum->eval_before = sum->eval_after = -1.0;
  run_state r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  drl_status st = DRL_OK;
  DRL_TRY_GOTO(drl_config_validate(cfg));
  drl_cpu_set_threads(cfg->run.threads);
  DRL_TRY_GOTO(drl_device_open(&r.dev, cfg->run.device == DRL_CFG_DEVICE_CUDA ? DRL_BACKEND_CUDA : DRL_BACKEND_CPU,
                               cfg->run.device_index));
  r.dev.allow_tf32 = cfg->optim.tf32;
  DRL_TRY_GOTO(drl_config_to_yaml(cfg, &r.config_yaml));
  DRL_TRY_GOTO(make_dir(cfg->run.out_dir));
  snprintf(r.ckpt_path, sizeof r.ckpt_path, "%s/ckpt.h5", cfg->run.out_dir);
  DRL_TRY_GOTO(load_data(&r));
  DRL_TRY_GOTO(make_model(&r, cfg->sft.batch_size));
  char devname[256];
  drl_device_describe(&r.dev, devname, sizeof devname);
  drl_log(DRL_LOG_INFO, "dynrl: %s task, %lld train / %lld held-out examples, %lld parameters on %s",
          r.data.task, (long long)r.n_train, (long long)r.n_eval, (long long)r.model.layout.total, devname);

  /* Where to start: a checkpoint names its phase and the step within it. */
  int resume_phase = -1, resume_step = 0;
  FILE *ck_file = cfg->trainer.resume ? fopen(r.ckpt_path, "rb") : NULL;
  if (ck_file) {
    fclose(ck_file);
    char phase[DRL_PHASE_NAME_CAP];
    DRL_TRY_GOTO(resume(&r, phase, sizeof phase, &resume_step));
    for (int p = 0; p < cfg->trainer.phases.count; ++p)
      if (strcmp(drl_cfg_phase_name(cfg->trainer.phases.items[p]), phase) == 0) resume_phase = p;
    if (resume_phase < 0) {
      st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written in phase '%s', which trainer.phases does not run", r.ckpt_path,
                    phase);
      goto done;
    }
    sum->resumed_from = resume_step;
    drl_log(DRL_LOG_INFO, "resumed %s at step %d from %s", phase, resume_step, r.ckpt_path);
  }
  int64_t offsets[DRL_CFG_COUNT_phase + 1] = {0};
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    offsets[p + 1] = offsets[p] + phase_steps(cfg, cfg->trainer.phases.items[p]);
  char metrics_path[4200];
  snprintf(metrics_path, sizeof metrics_path, "%s/metrics.h5", cfg->run.out_dir);
  DRL_TRY_GOTO(drl_metrics_open(&r.metrics, metrics_path, metric_names, M_COUNT,
                                resume_phase >= 0 ? offsets[resume_phase] + resume_step : -1, 10));

  if (resume_phase < 0) {
    DRL_TRY_GOTO(evaluate(&r, &sum->eval_before));
    if (sum->eval_before >= 0) drl_log(DRL_LOG_INFO, "held-out exact match before training: %.3f", sum->eval_before);
  }
  for (int p = resume_phase < 0 ? 0 : resume_phase; p < cfg->trainer.phases.count; ++p) {
    drl_cfg_phase phase = cfg->trainer.phases.items[p];
    int start = p == resume_phase ? resume_step : 0;
    r.phase_offset = offsets[p];
    if (phase == DRL_CFG_PHASE_SFT) {
      DRL_TRY_GOTO(run_sft(&r, start, sum));
    } else {
      st = DRL_FAIL(DRL_ERR_UNSUPPORTED, "phase '%s' is not available yet", drl_cfg_phase_name(phase));
      goto done;
    }
    if (sum->stopped_at) {
      drl_log(DRL_LOG_INFO, "stopped after step %d (trainer.stop_after); resume with --resume", sum->stopped_at);
      goto done;
    }
  }
  DRL_TRY_GOTO(evaluate(&r, &sum->eval_after));
  if (sum->eval_after >= 0) drl_log(DRL_LOG_INFO, "held-out exact match after training: %.3f", sum->eval_after);
done:
  drl_metrics_close(&r.metrics);
  drl_transformer_free(&r.model);
  drl_dataset_free(&r.data);
  free(r.config_yaml);
  drl_device_close(&r.dev);
  return st;
}
