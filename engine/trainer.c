#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "data/metrics.h"
#include "data/tasks.h"
#include "data/vocab.h"
#include "kernels/fault.h"
#include "engine/flow_trainer.h"
#include "engine/log.h"
#include "engine/rl_step.h"
#include "engine/run.h"
#include "engine/sft.h"
#include "engine/spsa.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"
#include "samplers/rollout.h"

float drl_lr_at(const drl_config_optim *o, int step, int total) {
  double lr = o->lr;
  if (o->warmup_steps > 0 && step <= o->warmup_steps) return (float)(lr * step / o->warmup_steps);
  if (o->lr_schedule == DRL_CFG_LR_CONSTANT || total <= o->warmup_steps) return (float)lr;
  double progress = (double)(step - o->warmup_steps) / (double)(total - o->warmup_steps);
  double lo = lr * o->min_lr_ratio;
  return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}

/* One metrics row per optimizer step (sft) or iteration (grpo); a metric a phase does not produce is NaN. */
enum {
  M_PHASE, M_LOSS, M_LR, M_GRAD_NORM, M_TOKENS_PER_S, M_EVAL_ACCURACY, M_REWARD_MEAN, M_REWARD_STD, M_KEPT_SAMPLES,
  M_KEPT_TOKENS, M_LOSS_TOKENS, M_USEFULNESS, M_CLIP_FRAC, M_KL, M_ENTROPY, M_RESPONSE_LEN, M_PROJECTED_GRAD,
  M_PAYLOAD_BYTES, M_STEP_SECONDS, M_HELDOUT_LOSS, M_MOE_MAXVIO_BATCH, M_MOE_MAXVIO_GLOBAL, M_MOE_AUX_LOSS,
  M_BAD_STEPS, M_COUNT
};
static const char *const metric_names[M_COUNT] = {
    "phase",       "loss",        "lr",           "grad_norm",   "tokens_per_s", "eval_accuracy",
    "reward_mean", "reward_std",  "kept_samples", "kept_tokens", "loss_tokens",  "usefulness",
    "clip_frac",   "kl",          "entropy",      "response_len", "projected_grad", "payload_bytes",
    "step_seconds", "heldout_loss", "moe_maxvio_batch", "moe_maxvio_global", "moe_aux_loss",
    "bad_steps"};

/* The trainer's state on top of a run. */
typedef struct trainer {
  drl_run run;
  const drl_config *cfg;
  int64_t phase_offset; /* global step of the current phase's step 0 (metrics rows, rollout streams) */
  drl_metrics metrics;
  drl_progress progress;
  double t0, tokens;    /* this phase's wall clock and trained tokens */
  int last_phase;       /* the current phase is the last of trainer.phases */
  int writes;           /* this rank writes the metrics file (rank 0) */
  /* The metrics row: the columns above, then per MoE block MaxVio_batch, MaxVio_global and each expert's load. */
  double *row;
  char **names;
  int n_cols;
  double *heldout_counts; /* [L E] scratch of the held-out MaxVio */
  char last_ckpt[4200];   /* "path (phase step N)" of the last checkpoint written or resumed from; "" before */
} trainer;

/* Column of block l's per-block series: kind 0 MaxVio_batch, 1 MaxVio_global, 2 + e the load of expert e. */
static int moe_col(const trainer *tr, int l, int kind) {
  return M_COUNT + l * (2 + tr->run.balance.E) + kind;
}

static drl_status metrics_columns(trainer *tr) {
  const drl_balance *b = &tr->run.balance;
  tr->n_cols = M_COUNT + b->L * (2 + b->E);
  tr->row = (double *)malloc((size_t)tr->n_cols * sizeof(double));
  tr->names = (char **)calloc((size_t)tr->n_cols, sizeof(char *));
  tr->heldout_counts = (double *)calloc((size_t)(b->L * b->E > 0 ? b->L * b->E : 1), sizeof(double));
  if (!tr->row || !tr->names || !tr->heldout_counts) return DRL_FAIL(DRL_ERR_OOM, "out of memory for metrics");
  for (int i = 0; i < M_COUNT; ++i) tr->names[i] = (char *)metric_names[i];
  for (int l = 0; l < b->L; ++l)
    for (int k = 0; k < 2 + b->E; ++k) {
      char name[64];
      if (k < 2)
        snprintf(name, sizeof name, "moe_maxvio_%s_l%d", k ? "global" : "batch", l);
      else
        snprintf(name, sizeof name, "moe_load_l%d_e%d", l, k - 2);
      tr->names[moe_col(tr, l, k)] = strdup(name);
      if (!tr->names[moe_col(tr, l, k)]) return DRL_FAIL(DRL_ERR_OOM, "out of memory for metric names");
    }
  return DRL_OK;
}

static void metrics_columns_free(trainer *tr) {
  for (int i = M_COUNT; tr->names && i < tr->n_cols; ++i) free(tr->names[i]);
  free(tr->names);
  free(tr->row);
  free(tr->heldout_counts);
}

/* A fresh row of phase (NaN everywhere else), with the MoE statistics of the last optimizer step. */
static double *row_init(trainer *tr, drl_cfg_phase phase) {
  double *row = tr->row;
  for (int i = 0; i < tr->n_cols; ++i) row[i] = NAN;
  row[M_PHASE] = (double)phase;
  drl_balance *b = &tr->run.balance;
  if (drl_balance_active(b) && b->fresh) { /* iterations without an optimizer step report none */
    b->fresh = 0;
    double per_block[1024];
    row[M_MOE_MAXVIO_BATCH] = b->maxvio_batch;
    row[M_MOE_AUX_LOSS] = b->last_aux_loss;
    drl_balance_maxvio(b, b->load, b->L <= 1024 ? per_block : NULL);
    for (int l = 0; l < b->L && l < 1024; ++l) {
      if (l < tr->cfg->moe.first_layer) continue;
      row[moe_col(tr, l, 0)] = per_block[l];
      for (int e = 0; e < b->E; ++e) row[moe_col(tr, l, 2 + e)] = b->load[(size_t)l * b->E + e];
    }
  }
  return row;
}

/* Held-out loss and, for an MoE policy, MaxVio_global (the routes of every held-out token with the current bias). */
static drl_status heldout_metrics(trainer *tr, double *row) {
  drl_run *r = &tr->run;
  if (r->n_eval == 0) return DRL_OK;
  const drl_balance *b = &r->balance;
  double loss = 0.0;
  if (b->L > 0) memset(tr->heldout_counts, 0, (size_t)b->L * b->E * sizeof(double));
  DRL_TRY(drl_run_heldout(r, &loss, b->L > 0 ? tr->heldout_counts : NULL));
  row[M_HELDOUT_LOSS] = loss;
  if (b->L > 0) {
    double per_block[1024];
    row[M_MOE_MAXVIO_GLOBAL] = drl_balance_maxvio(b, tr->heldout_counts, b->L <= 1024 ? per_block : NULL);
    for (int l = tr->cfg->moe.first_layer; l < b->L && l < 1024; ++l) row[moe_col(tr, l, 1)] = per_block[l];
  }
  return DRL_OK;
}

/* After a step: evaluation, the metrics row, the checkpoint, trainer.stop_after. Sets *stop to end the phase. */
static drl_status after_step(trainer *tr, drl_cfg_phase phase, int step, int steps, double *row,
                             drl_train_summary *sum, int *stop) {
  const drl_config *cfg = tr->cfg;
  drl_status st = DRL_OK;
  int eval_now = cfg->trainer.eval_every > 0 && step % cfg->trainer.eval_every == 0;
  if (eval_now && step < steps) {
    double acc = 0;
    DRL_TRY(drl_run_evaluate(&tr->run, &acc));
    if (acc >= 0) {
      row[M_EVAL_ACCURACY] = acc;
      drl_progress_end(&tr->progress);
      drl_log(DRL_LOG_INFO, "%s step %d: held-out exact match %.3f", drl_cfg_phase_name(phase), step, acc);
    }
  }
  if (eval_now || step == steps) DRL_TRY(heldout_metrics(tr, row));
  if (tr->writes) DRL_TRY(drl_metrics_log(&tr->metrics, tr->phase_offset + step, row));
  drl_fault_point(tr->run.comm ? tr->run.comm->rank : 0, tr->phase_offset + step);
  *stop = cfg->trainer.stop_after > 0 && sum->steps >= cfg->trainer.stop_after && !(step == steps && tr->last_phase);
  if ((cfg->trainer.ckpt_every > 0 && step % cfg->trainer.ckpt_every == 0) || step == steps || *stop) {
    /* The rows up to a checkpoint reach the disk before it does: a crash after it loses none of them. */
    if (tr->writes) DRL_TRY(drl_metrics_flush(&tr->metrics));
    st = drl_run_save(&tr->run, tr->run.ckpt_path, drl_cfg_phase_name(phase), step);
    if (st == DRL_OK)
      snprintf(tr->last_ckpt, sizeof tr->last_ckpt, "%s (%s step %d)", tr->run.ckpt_path, drl_cfg_phase_name(phase),
               step);
  }
  if (*stop) sum->stopped_at = step;
  return st;
}

/* Counts a step as good (bad "") or skipped (bad names what was not finite) into the row's bad_steps. The
 * trainer.max_bad_steps-th skipped step in a row ends the run: its row is logged and no checkpoint is written. */
static drl_status count_bad(trainer *tr, drl_cfg_phase phase, int step, const char *bad, double *row) {
  drl_status st = drl_bad_steps_record(&tr->run.bad, drl_cfg_phase_name(phase), step, bad,
                                       tr->cfg->trainer.max_bad_steps, tr->last_ckpt);
  row[M_BAD_STEPS] = (double)tr->run.bad.total;
  if (st != DRL_OK && tr->writes && drl_metrics_log(&tr->metrics, tr->phase_offset + step, row) != DRL_OK)
    drl_log(DRL_LOG_WARN, "the metrics row of %s step %d was not written", drl_cfg_phase_name(phase), step);
  return st;
}

static void phase_done(trainer *tr, drl_train_summary *sum) {
  drl_progress_end(&tr->progress);
  double el = drl_seconds() - tr->t0;
  sum->seconds += el;
  sum->tokens_per_second = el > 0 ? tr->tokens / el : 0.0;
}

/* One SFT optimizer step: every local shard's rows forward and backward (the loss normalised by the answer tokens
 * of the whole batch), the gradients summed over the job, one AdamW step. *loss_sum gets the batch's summed loss. */
static drl_status sft_step(trainer *tr, drl_sft_batch *batch, float *logprob, int step, int steps, float *norm,
                           double *loss_sum, char *bad) {
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  drl_transformer *m = &r->model;
  int k = drl_dp_local(&r->dp), first = drl_dp_first(&r->dp), Bs = batch->B;
  int64_t normaliser = drl_sft_scored(&r->data, r->n_train, cfg->run.seed, step, 0, cfg->sft.batch_size);
  double *local = (double *)malloc((size_t)k * sizeof(double));
  drl_status st = local ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for shard losses");
  int rank = r->comm ? r->comm->rank : 0;
  int64_t global = tr->phase_offset + step;
  int inject_grad = drl_grad_fault_due(rank, global); /* value faults (kernels/fault.h), before the reduction */
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    st = drl_sft_batch_fill(batch, &r->data, r->n_train, cfg->run.seed, step, (int64_t)(first + j) * Bs,
                            normaliser);
    if (st == DRL_OK)
      st = drl_transformer_forward(m, batch->tokens, batch->targets, NULL, Bs, batch->T, 1.0f, logprob, NULL);
    if (st == DRL_OK) st = drl_balance_forward(&r->balance, m, batch->real);
    if (st == DRL_OK) st = drl_transformer_zero_grads(m);
    drl_dp_arm(&r->dp, j == k - 1 && !inject_grad);
    if (st == DRL_OK) st = drl_transformer_backward(m, batch->dlogprob);
    if (st == DRL_OK && inject_grad && j == 0)
      st = drl_layout_inject_grad_fault(&m->dev, &m->layout, m->grads, rank, global, NULL);
    if (st == DRL_OK) st = drl_dp_grads_push(&r->dp, m->grads);
    if (st == DRL_OK) local[j] = drl_sft_loss_sum(batch, logprob);
    if (st == DRL_OK && j == 0 && drl_fault_value("nan_loss", rank, global, NULL)) local[j] = NAN;
  }
  if (st == DRL_OK) st = drl_dp_grads_reduce(&r->dp, m->grads);
  if (st == DRL_OK) st = drl_dp_sum_shards(&r->dp, local, 1, loss_sum);
  free(local);
  DRL_TRY(st);
  drl_optim_step hp = {drl_lr_at(&cfg->optim, step, steps), (float)cfg->optim.beta1, (float)cfg->optim.beta2,
                       (float)cfg->optim.eps, (float)cfg->optim.weight_decay, (float)cfg->optim.grad_clip,
                       (int)r->optim_step + 1};
  DRL_TRY(drl_policy_step_checked(&r->dp, m, &hp, *loss_sum, norm, bad));
  if (bad[0]) {
    drl_balance_discard(&r->balance);
  } else {
    r->optim_step++;
    DRL_TRY(drl_balance_step(&r->balance, m, r->optim_step, 0));
  }
  *loss_sum /= normaliser > 0 ? (double)normaliser : 1.0;
  return DRL_OK;
}

static drl_status run_sft(trainer *tr, int start, drl_train_summary *sum) {
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  int steps = cfg->sft.steps;
  int T = 0; /* at most model.max_seq: drl_run_open checked */
  DRL_TRY(drl_sft_max_len(&r->data, 0, r->n_train, &T));
  drl_sft_batch batch;
  DRL_TRY(drl_sft_batch_alloc(&batch, cfg->sft.batch_size / drl_dp_shards(&r->dp), T));
  float *logprob = (float *)malloc((size_t)batch.B * T * sizeof(float));
  drl_status st = logprob ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for log-probabilities");
  drl_progress_begin(&tr->progress, "sft", steps, start, cfg->run.log_every);
  tr->t0 = drl_seconds();
  tr->tokens = 0;
  for (int step = start + 1; st == DRL_OK && step <= steps; ++step) {
    DRL_RANGE("sft_step");
    double loss = 0.0, t_step = drl_seconds();
    float norm = 0.0f, lr = drl_lr_at(&cfg->optim, step, steps);
    char bad[DRL_TENSOR_NAME_CAP];
    st = sft_step(tr, &batch, logprob, step, steps, &norm, &loss, bad);
    if (st != DRL_OK) break;
    tr->tokens += (double)cfg->sft.batch_size * T;
    sum->steps++;
    sum->final_loss = loss;
    double el = drl_seconds() - tr->t0, tps = el > 0 ? tr->tokens / el : 0.0;
    char text[160];
    snprintf(text, sizeof text, "loss %.4f lr %.2e gnorm %.3f tok/s %.0f", loss, (double)lr, (double)norm, tps);
    drl_progress_update(&tr->progress, step, text);
    double *row = row_init(tr, DRL_CFG_PHASE_SFT);
    row[M_LOSS] = loss;
    row[M_LR] = lr;
    row[M_GRAD_NORM] = norm;
    row[M_TOKENS_PER_S] = tps;
    row[M_LOSS_TOKENS] = (double)drl_sft_scored(&r->data, r->n_train, cfg->run.seed, step, 0, cfg->sft.batch_size);
    row[M_STEP_SECONDS] = drl_seconds() - t_step;
    st = count_bad(tr, DRL_CFG_PHASE_SFT, step, bad, row);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(tr, DRL_CFG_PHASE_SFT, step, steps, row, sum, &stop);
    if (stop) break;
  }
  phase_done(tr, sum);
  free(logprob);
  drl_sft_batch_free(&batch);
  return st;
}

static drl_status run_grpo(trainer *tr, int start, drl_train_summary *sum) {
  const drl_config *cfg = tr->cfg;
  const drl_config_grpo *g = &cfg->grpo;
  drl_run *r = &tr->run;
  int steps = g->steps, G = g->group_size;
  int k = drl_dp_local(&r->dp), first = drl_dp_first(&r->dp);
  int ns = g->prompts_per_step / drl_dp_shards(&r->dp), rows = ns * G; /* one shard's prompts and rollouts */
  int64_t longest = r->max_prompt;
  int T = (int)longest + g->max_new_tokens;
  if (T > cfg->model.max_seq)
    return DRL_FAIL(DRL_ERR_CONFIG, "prompts of %lld tokens plus grpo.max_new_tokens = %d exceed model.max_seq = %d",
                    (long long)longest, g->max_new_tokens, cfg->model.max_seq);
  if (g->kl_beta > 0 && start > 0)
    drl_log(DRL_LOG_WARN, "grpo.kl_beta > 0: the KL reference after a resume is the resumed policy, not the policy "
                          "the phase started from");
  drl_rollout ro;
  drl_rl_state rs;
  memset(&ro, 0, sizeof ro);
  memset(&rs, 0, sizeof rs);
  int32_t *prompts = (int32_t *)malloc((size_t)ns * (size_t)longest * sizeof(int32_t));
  int64_t *offsets = (int64_t *)malloc((size_t)(ns + 1) * sizeof(int64_t));
  float *rewards = (float *)malloc((size_t)k * rows * sizeof(float));
  drl_rollout_batch *batch = (drl_rollout_batch *)calloc((size_t)k, sizeof *batch);
  drl_rl_batch *rb = (drl_rl_batch *)calloc((size_t)k, sizeof *rb);
  drl_status st = prompts && offsets && rewards && batch && rb ? DRL_OK
                                                               : DRL_FAIL(DRL_ERR_OOM, "out of memory for GRPO buffers");
  if (st == DRL_OK) st = drl_rollout_create(&ro, &r->model, rows, T);
  if (st == DRL_OK) st = drl_rl_state_create(&rs, cfg, &r->model, k, rows, T);
  drl_progress_begin(&tr->progress, "grpo", steps, start, cfg->run.log_every);
  tr->t0 = drl_seconds();
  tr->tokens = 0;
  for (int it = start + 1; st == DRL_OK && it <= steps; ++it) {
    int64_t global = tr->phase_offset + it;
    double t_step = drl_seconds();
    /* Each local shard: its prompts of the iteration's draw, their rollouts (streams by global rollout index). */
    for (int j = 0; st == DRL_OK && j < k; ++j) {
      int64_t first_prompt = (int64_t)(first + j) * ns;
      drl_run_draw_prompts(r, (uint32_t)global, first_prompt, ns, prompts, offsets);
      drl_rollout_params rp = {G, g->max_new_tokens, (float)g->temperature, g->top_k, (float)g->top_p,
                               drl_vocab_eos(r->data.vocab), cfg->run.seed, (uint32_t)global, 0,
                               (uint64_t)first_prompt * G};
      {
        DRL_RANGE("rollout");
        st = drl_rollout_generate(&ro, &r->model, prompts, offsets, ns, &rp, &batch[j]);
      }
      if (st == DRL_OK) st = drl_run_score(r, &batch[j], prompts, offsets, rewards + (size_t)j * rows);
      drl_rl_batch b = {ns, G, batch[j].T, batch[j].tokens, batch[j].row_start, batch[j].mask,
                        rewards + (size_t)j * rows};
      rb[j] = b;
    }
    drl_rl_stats rl;
    rs.fault_step = global;
    if (st == DRL_OK)
      st = drl_rl_step(&rs, &r->model, cfg, rb, &r->dp, &r->balance, it, steps, &r->optim_step, &rl);
    double generated = (double)ro.generated_tokens; /* this phase's, over the job */
    if (st == DRL_OK && r->comm) st = drl_comm_sum_f64(r->comm, &generated, &generated, 1);
    if (st != DRL_OK) break;
    tr->tokens += (double)rl.kept_tokens;
    sum->steps++;
    sum->final_loss = rl.loss;
    double el = drl_seconds() - tr->t0;
    char text[200];
    double gen_tps = el > 0 ? generated / el : 0.0;
    snprintf(text, sizeof text, "reward %.3f loss %.4f kept %lld/%d rows %lld tok entropy %.3f gen tok/s %.0f",
             rl.reward_mean, rl.loss, (long long)rl.kept_samples, rows * drl_dp_shards(&r->dp),
             (long long)rl.kept_tokens, rl.entropy, gen_tps);
    drl_progress_update(&tr->progress, it, text);
    double *row = row_init(tr, DRL_CFG_PHASE_GRPO);
    row[M_LOSS] = rl.loss;
    row[M_LR] = rl.lr;
    row[M_GRAD_NORM] = rl.grad_norm;
    row[M_TOKENS_PER_S] = gen_tps;
    row[M_REWARD_MEAN] = rl.reward_mean;
    row[M_REWARD_STD] = rl.reward_std;
    row[M_KEPT_SAMPLES] = (double)rl.kept_samples;
    row[M_KEPT_TOKENS] = (double)rl.kept_tokens;
    row[M_LOSS_TOKENS] = (double)rl.kept_tokens * g->ppo_epochs;
    row[M_USEFULNESS] = rl.usefulness;
    row[M_CLIP_FRAC] = rl.clip_frac;
    row[M_KL] = rl.kl;
    row[M_ENTROPY] = rl.entropy;
    row[M_RESPONSE_LEN] = rl.response_len;
    row[M_STEP_SECONDS] = drl_seconds() - t_step;
    st = count_bad(tr, DRL_CFG_PHASE_GRPO, it, rl.bad, row);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(tr, DRL_CFG_PHASE_GRPO, it, steps, row, sum, &stop);
    if (stop) break;
  }
  phase_done(tr, sum);
  for (int j = 0; batch && j < k; ++j) drl_rollout_batch_free(&batch[j]);
  free(batch);
  free(rb);
  drl_rl_state_free(&rs, &r->model);
  drl_rollout_free(&ro);
  free(prompts);
  free(offsets);
  free(rewards);
  return st;
}

/* Zeroth-order training of a phase (optim.name: spsa). Contribution q's loss: sft, the cross-entropy of rows
 * [q B, (q + 1) B) of the step's draw (B = sft.batch_size); grpo, the clipped surrogate on the rollouts of prompts
 * [q P, (q + 1) P) of the step's draw (P = grpo.prompts_per_step), sampled once at the step's parameters. */
typedef struct spsa_ctx {
  trainer *tr;
  drl_cfg_phase phase;
  int64_t offset; /* global step of the phase's step 0 */
  drl_sft_batch batch;
  float *logprob;
  drl_rollout ro;
  drl_rollout_batch rb;
  drl_rl_state rs;
  int32_t *prompts;
  int64_t *offsets;
  float *rewards;
  int prepared;
  uint32_t prepared_step, prepared_q;
  double reward_sum;
  int64_t reward_rows;
} spsa_ctx;

static drl_status spsa_loss(void *user, const float *params, uint32_t step, uint32_t q, double *loss) {
  spsa_ctx *c = (spsa_ctx *)user;
  drl_run *r = &c->tr->run;
  const drl_config *cfg = c->tr->cfg;
  drl_transformer *m = &r->model;
  if (c->phase == DRL_CFG_PHASE_SFT) {
    DRL_TRY(drl_sft_batch_fill(&c->batch, &r->data, r->n_train, cfg->run.seed, (int)(step - c->offset),
                               (int64_t)q * c->batch.B, 0));
    float *own = m->params;
    m->params = (float *)params;
    drl_status st = drl_transformer_forward(m, c->batch.tokens, c->batch.targets, NULL, c->batch.B, c->batch.T, 1.0f,
                                            c->logprob, NULL);
    m->params = own;
    *loss = drl_sft_loss(&c->batch, c->logprob);
    if (drl_fault_value("nan_loss", r->comm ? r->comm->rank : 0, step, NULL)) *loss = NAN; /* kernels/fault.h */
    return st;
  }
  const drl_config_grpo *g = &cfg->grpo;
  if (!c->prepared || c->prepared_step != step || c->prepared_q != q) {
    int n = g->prompts_per_step;
    int64_t first = (int64_t)q * n;
    drl_run_draw_prompts(r, step, first, n, c->prompts, c->offsets);
    drl_rollout_params rp = {g->group_size, g->max_new_tokens, (float)g->temperature, g->top_k, (float)g->top_p,
                             drl_vocab_eos(r->data.vocab), cfg->run.seed, step, 0, (uint64_t)first * g->group_size};
    {
      DRL_RANGE("rollout");
      DRL_TRY(drl_rollout_generate(&c->ro, m, c->prompts, c->offsets, n, &rp, &c->rb));
    }
    DRL_TRY(drl_run_score(r, &c->rb, c->prompts, c->offsets, c->rewards));
    drl_rl_batch b = {n, g->group_size, c->rb.T, c->rb.tokens, c->rb.row_start, c->rb.mask, c->rewards};
    DRL_TRY(drl_rl_prepare(&c->rs, m, cfg, &b));
    for (int i = 0; i < c->rb.rows; ++i) c->reward_sum += c->rewards[i];
    c->reward_rows += c->rb.rows;
    c->prepared = 1;
    c->prepared_step = step;
    c->prepared_q = q;
  }
  DRL_TRY(drl_rl_surrogate(&c->rs, m, cfg, params, loss));
  if (drl_fault_value("nan_loss", r->comm ? r->comm->rank : 0, step, NULL)) *loss = NAN; /* kernels/fault.h */
  return DRL_OK;
}

static drl_status run_spsa(trainer *tr, drl_cfg_phase phase, int start, drl_train_summary *sum) {
  const drl_config *cfg = tr->cfg;
  const drl_config_grpo *g = &cfg->grpo;
  drl_run *r = &tr->run;
  int steps = phase == DRL_CFG_PHASE_SFT ? cfg->sft.steps : g->steps;
  const drl_config_spsa *sc = &cfg->spsa;
  drl_spsa_config scfg = {cfg->run.seed, (float)sc->lr, (float)sc->eps, sc->samples, (drl_spsa_dist)sc->perturbation,
                          (drl_spsa_codec)sc->codec, sc->hash_every};
  spsa_ctx c;
  memset(&c, 0, sizeof c);
  c.tr = tr;
  c.phase = phase;
  c.offset = tr->phase_offset;
  drl_spsa sp;
  drl_status st = drl_spsa_create(&sp, &scfg, r->comm, &r->dev, r->model.layout.total);
  int T = 0;
  if (st == DRL_OK && phase == DRL_CFG_PHASE_SFT) {
    st = drl_sft_max_len(&r->data, 0, r->n_train, &T);
    if (st == DRL_OK) st = drl_sft_batch_alloc(&c.batch, cfg->sft.batch_size, T);
    c.logprob = (float *)malloc((size_t)cfg->sft.batch_size * (size_t)(T ? T : 1) * sizeof(float));
    if (st == DRL_OK && !c.logprob) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for log-probabilities");
  } else if (st == DRL_OK) {
    int n = g->prompts_per_step, rows = n * g->group_size;
    T = r->max_prompt + g->max_new_tokens;
    if (T > cfg->model.max_seq)
      st = DRL_FAIL(DRL_ERR_CONFIG, "prompts of %d tokens plus grpo.max_new_tokens = %d exceed model.max_seq = %d",
                    r->max_prompt, g->max_new_tokens, cfg->model.max_seq);
    c.prompts = (int32_t *)malloc((size_t)n * (size_t)r->max_prompt * sizeof(int32_t));
    c.offsets = (int64_t *)malloc((size_t)(n + 1) * sizeof(int64_t));
    c.rewards = (float *)malloc((size_t)rows * sizeof(float));
    if (st == DRL_OK && (!c.prompts || !c.offsets || !c.rewards)) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for GRPO");
    if (st == DRL_OK) st = drl_rollout_create(&c.ro, &r->model, rows, T);
    if (st == DRL_OK) st = drl_rl_state_create(&c.rs, cfg, &r->model, 1, rows, T);
  }
  drl_progress_begin(&tr->progress, phase == DRL_CFG_PHASE_SFT ? "sft (spsa)" : "grpo (spsa)", steps, start,
                     cfg->run.log_every);
  tr->t0 = drl_seconds();
  tr->tokens = 0;
  for (int it = start + 1; st == DRL_OK && it <= steps; ++it) {
    drl_spsa_stats ss;
    double t_step = drl_seconds();
    c.reward_sum = 0.0;
    c.reward_rows = 0;
    st = drl_spsa_step(&sp, r->model.params, (uint32_t)(tr->phase_offset + it), spsa_loss, &c, &ss);
    if (st != DRL_OK) break;
    sum->steps++;
    sum->final_loss = ss.loss;
    double per_rank = phase == DRL_CFG_PHASE_SFT ? (double)cfg->sft.batch_size * T : (double)c.reward_rows * T;
    tr->tokens += 2.0 * sc->samples * per_rank * (r->comm ? r->comm->size : 1); /* forward passes of the job */
    double el = drl_seconds() - tr->t0, tps = el > 0 ? tr->tokens / el : 0.0;
    double reward = c.reward_rows ? c.reward_sum / (double)c.reward_rows : NAN;
    char text[200];
    if (phase == DRL_CFG_PHASE_SFT)
      snprintf(text, sizeof text, "loss %.4f |g| %.3g bytes/step %lld tok/s %.0f", ss.loss, ss.grad_abs,
               (long long)ss.payload_bytes, tps);
    else
      snprintf(text, sizeof text, "loss %.4f reward %.3f |g| %.3g bytes/step %lld tok/s %.0f", ss.loss, reward,
               ss.grad_abs, (long long)ss.payload_bytes, tps);
    drl_progress_update(&tr->progress, it, text);
    double *row = row_init(tr, phase);
    row[M_LOSS] = ss.loss;
    row[M_LR] = sc->lr;
    row[M_TOKENS_PER_S] = tps;
    row[M_REWARD_MEAN] = reward;
    row[M_PROJECTED_GRAD] = ss.grad_abs;
    row[M_PAYLOAD_BYTES] = (double)ss.payload_bytes;
    row[M_STEP_SECONDS] = drl_seconds() - t_step;
    st = count_bad(tr, phase, it, ss.skipped ? "loss" : "", row);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(tr, phase, it, steps, row, sum, &stop);
    if (stop) break;
  }
  phase_done(tr, sum);
  if (st == DRL_OK)
    drl_log(DRL_LOG_INFO, "spsa: this rank sent %llu payload bytes (%d per step) and %llu bytes of hash checks",
            (unsigned long long)sp.payload_total, (int)(sp.cfg.samples * (sc->codec == DRL_CFG_CODEC_LOG8 ? 1 : 4)),
            (unsigned long long)sp.hash_total);
  drl_spsa_free(&sp);
  drl_sft_batch_free(&c.batch);
  free(c.logprob);
  drl_rollout_batch_free(&c.rb);
  drl_rl_state_free(&c.rs, &r->model);
  drl_rollout_free(&c.ro);
  free(c.prompts);
  free(c.offsets);
  free(c.rewards);
  return st;
}

/* Steps (or iterations) a phase runs when uninterrupted. */
static int64_t phase_steps(const drl_config *cfg, drl_cfg_phase phase) {
  return phase == DRL_CFG_PHASE_SFT ? cfg->sft.steps : cfg->grpo.steps;
}

/* Shards of every global batch: dist.shards, or one per rank. */
static int batch_shards(const drl_config *cfg, const drl_comm *comm) {
  return cfg->dist.shards > 0 ? cfg->dist.shards : (comm ? comm->size : 1);
}

/* SPSA gives every contribution a whole batch of its own; AdamW splits each batch into the shards. */
static int split_shards(const drl_config *cfg, const drl_comm *comm) {
  return cfg->optim.name == DRL_CFG_OPTIM_SPSA ? 1 : batch_shards(cfg, comm);
}

/* Rows the policy's activations must hold: a shard of an SFT batch, or a chunk of a shard's GRPO rollouts (larger
 * minibatches are accumulated chunk by chunk). */
static int batch_rows(const drl_config *cfg, int shards) {
  int rows = cfg->sft.batch_size / shards;
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (cfg->trainer.phases.items[p] == DRL_CFG_PHASE_GRPO) {
      int grpo = cfg->grpo.prompts_per_step / shards * cfg->grpo.group_size;
      grpo = grpo < 64 ? grpo : 64;
      rows = rows > grpo ? rows : grpo;
    }
  return rows > 0 ? rows : 1;
}

drl_status drl_train(const drl_config *cfg, drl_comm *comm, drl_train_summary *sum) {
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (drl_phase_is_flow(cfg->trainer.phases.items[p])) return drl_train_flow(cfg, comm, sum);
  memset(sum, 0, sizeof *sum);
  sum->eval_before = sum->eval_after = sum->eval_after_sft = -1.0;
  trainer tr;
  memset(&tr, 0, sizeof tr);
  tr.cfg = cfg;
  tr.writes = !comm || comm->rank == 0;
  drl_run *r = &tr.run;
  drl_status st = DRL_OK;
  int shards = split_shards(cfg, comm);
  DRL_TRY_GOTO(drl_config_check_job(cfg, comm ? comm->size : 1));
  DRL_TRY_GOTO(drl_run_open(r, cfg, comm, batch_rows(cfg, shards)));
  DRL_TRY_GOTO(metrics_columns(&tr));
  char devname[256];
  drl_device_describe(&r->dev, devname, sizeof devname);
  drl_log(DRL_LOG_INFO, "dynrl: %s task, %lld train / %lld held-out examples, %lld parameters on %s",
          r->data.task, (long long)r->n_train, (long long)r->n_eval, (long long)r->model.layout.total, devname);
  if (comm && comm->size > 1)
    drl_log(DRL_LOG_INFO, "data parallel: %d ranks, %d shards per batch%s, optimizer state %lld bytes per rank",
            comm->size, batch_shards(cfg, comm), cfg->dist.zero ? ", ZeRO-1" : "",
            (long long)(2 * (r->model.optim_hi - r->model.optim_lo) * (int64_t)sizeof(float)));

  /* Where to start: a checkpoint names its phase and the step within it. */
  int resume_phase = -1, resume_step = 0;
  FILE *ck_file = cfg->trainer.resume && tr.writes ? fopen(r->ckpt_path, "rb") : NULL;
  int32_t has_ckpt = ck_file != NULL;
  if (ck_file) fclose(ck_file);
  if (comm && comm->size > 1) DRL_TRY_GOTO(drl_comm_bcast(comm, &has_ckpt, sizeof has_ckpt, 0)); /* rank 0 decides */
  if (has_ckpt) {
    char phase[DRL_PHASE_NAME_CAP];
    DRL_TRY_GOTO(drl_run_resume(r, r->ckpt_path, phase, sizeof phase, &resume_step));
    for (int p = 0; p < cfg->trainer.phases.count; ++p)
      if (strcmp(drl_cfg_phase_name(cfg->trainer.phases.items[p]), phase) == 0) resume_phase = p;
    if (resume_phase < 0) {
      st = DRL_FAIL(DRL_ERR_CONFIG, "%s was written in phase '%s', which trainer.phases does not run", r->ckpt_path,
                    phase);
      goto done;
    }
    sum->resumed_from = resume_step;
    snprintf(tr.last_ckpt, sizeof tr.last_ckpt, "%s (%s step %d)", r->ckpt_path, phase, resume_step);
    drl_log(DRL_LOG_INFO, "resumed %s at step %d from %s", phase, resume_step, r->ckpt_path);
  }
  int64_t offsets[DRL_CFG_COUNT_phase + 1] = {0};
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    offsets[p + 1] = offsets[p] + phase_steps(cfg, cfg->trainer.phases.items[p]);
  char metrics_path[4200];
  snprintf(metrics_path, sizeof metrics_path, "%s/metrics.h5", cfg->run.out_dir);
  if (tr.writes)
    DRL_TRY_GOTO(drl_metrics_open(&tr.metrics, metrics_path, (const char *const *)tr.names, tr.n_cols,
                                  resume_phase >= 0 ? offsets[resume_phase] + resume_step : -1, 10));

  if (resume_phase < 0 && cfg->trainer.init_from[0]) {
    DRL_TRY_GOTO(drl_run_load_weights(r, cfg->trainer.init_from));
    drl_log(DRL_LOG_INFO, "initialised the policy from %s", cfg->trainer.init_from);
  }
  if (resume_phase < 0) {
    DRL_TRY_GOTO(drl_run_evaluate(r, &sum->eval_before));
    if (sum->eval_before >= 0) drl_log(DRL_LOG_INFO, "held-out exact match before training: %.3f", sum->eval_before);
  }
  for (int p = resume_phase < 0 ? 0 : resume_phase; p < cfg->trainer.phases.count; ++p) {
    drl_cfg_phase phase = cfg->trainer.phases.items[p];
    int start = p == resume_phase ? resume_step : 0;
    tr.phase_offset = offsets[p];
    tr.last_phase = p + 1 == cfg->trainer.phases.count;
    if (cfg->optim.name == DRL_CFG_OPTIM_SPSA)
      DRL_TRY_GOTO(run_spsa(&tr, phase, start, sum));
    else if (phase == DRL_CFG_PHASE_SFT)
      DRL_TRY_GOTO(run_sft(&tr, start, sum));
    else
      DRL_TRY_GOTO(run_grpo(&tr, start, sum));
    if (sum->stopped_at) {
      drl_log(DRL_LOG_INFO, "stopped after step %d (trainer.stop_after); resume with --resume", sum->stopped_at);
      goto done;
    }
    double acc = -1.0;
    if (p + 1 < cfg->trainer.phases.count) {
      DRL_TRY_GOTO(drl_run_evaluate(r, &acc));
      if (acc >= 0) drl_log(DRL_LOG_INFO, "held-out exact match after %s: %.3f", drl_cfg_phase_name(phase), acc);
      if (phase == DRL_CFG_PHASE_SFT) sum->eval_after_sft = acc;
    }
  }
  DRL_TRY_GOTO(drl_run_evaluate(r, &sum->eval_after));
  if (sum->eval_after >= 0) drl_log(DRL_LOG_INFO, "held-out exact match after training: %.3f", sum->eval_after);
done:
  drl_metrics_close(&tr.metrics);
  metrics_columns_free(&tr);
  drl_run_close(r);
  return st;
}
