#define _POSIX_C_SOURCE 200809L
#include "phase.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fault.h"
#include "kernels/nvtx.h"

static const char *const metric_names[DRL_M_COUNT] = {
    "phase",         "loss",          "lr",          "grad_norm",    "tokens_per_s",   "eval_accuracy",
    "eval_reward",   "reward_mean",   "reward_std",  "kept_samples", "kept_tokens",    "loss_tokens",
    "usefulness",    "clip_frac",     "kl",          "entropy",      "response_len",   "projected_grad",
    "payload_bytes", "nfe",           "nfe_total",   "window",       "ratio_max_dev",  "rl_loss",
    "sft_loss",      "step_seconds",  "heldout_loss", "moe_maxvio_batch", "moe_maxvio_global", "moe_aux_loss",
    "bad_steps"};
_Static_assert(sizeof metric_names / sizeof metric_names[0] == DRL_M_COUNT, "a name per metric");

/* The columns of each policy's metrics file, in file order. */
static const drl_metric token_columns[] = {
    DRL_M_PHASE,         DRL_M_LOSS,          DRL_M_LR,           DRL_M_GRAD_NORM,      DRL_M_TOKENS_PER_S,
    DRL_M_EVAL_ACCURACY, DRL_M_REWARD_MEAN,   DRL_M_REWARD_STD,   DRL_M_KEPT_SAMPLES,   DRL_M_KEPT_TOKENS,
    DRL_M_LOSS_TOKENS,   DRL_M_USEFULNESS,    DRL_M_CLIP_FRAC,    DRL_M_KL,             DRL_M_ENTROPY,
    DRL_M_RESPONSE_LEN,  DRL_M_PROJECTED_GRAD, DRL_M_PAYLOAD_BYTES, DRL_M_STEP_SECONDS, DRL_M_HELDOUT_LOSS,
    DRL_M_MOE_MAXVIO_BATCH, DRL_M_MOE_MAXVIO_GLOBAL, DRL_M_MOE_AUX_LOSS, DRL_M_BAD_STEPS};
static const drl_metric flow_columns[] = {
    DRL_M_PHASE,     DRL_M_LOSS,        DRL_M_LR,       DRL_M_GRAD_NORM,     DRL_M_EVAL_REWARD, DRL_M_REWARD_MEAN,
    DRL_M_REWARD_STD, DRL_M_NFE,        DRL_M_NFE_TOTAL, DRL_M_WINDOW,       DRL_M_CLIP_FRAC,   DRL_M_RATIO_MAX_DEV,
    DRL_M_RL_LOSS,   DRL_M_SFT_LOSS,    DRL_M_STEP_SECONDS, DRL_M_BAD_STEPS};

/* Row index of block l's per-block series: kind 0 MaxVio_batch, 1 MaxVio_global, 2 + e the load of expert e. */
static int moe_col(const drl_trainer *tr, int l, int kind) {
  return DRL_M_COUNT + l * (2 + tr->run.balance.E) + kind;
}

drl_status drl_phase_columns(drl_trainer *tr) {
  const drl_moe_balance *b = &tr->run.balance;
  const drl_metric *base = tr->run.flow_policy ? flow_columns : token_columns;
  int n_base = tr->run.flow_policy ? (int)(sizeof flow_columns / sizeof flow_columns[0])
                                   : (int)(sizeof token_columns / sizeof token_columns[0]);
  int n_moe = b->L * (2 + b->E);
  tr->n_row = DRL_M_COUNT + n_moe;
  tr->n_cols = n_base + n_moe;
  tr->row = (double *)malloc((size_t)tr->n_row * sizeof(double));
  tr->file_row = (double *)malloc((size_t)tr->n_cols * sizeof(double));
  tr->cols = (int *)malloc((size_t)tr->n_cols * sizeof(int));
  tr->names = (char **)calloc((size_t)tr->n_cols, sizeof(char *));
  tr->heldout_counts = (double *)calloc((size_t)(b->L * b->E > 0 ? b->L * b->E : 1), sizeof(double));
  if (!tr->row || !tr->file_row || !tr->cols || !tr->names || !tr->heldout_counts)
    return DRL_FAIL(DRL_ERR_OOM, "out of memory for metrics");
  for (int i = 0; i < n_base; ++i) {
    tr->cols[i] = base[i];
    tr->names[i] = (char *)metric_names[base[i]];
  }
  for (int l = 0; l < b->L; ++l)
    for (int k = 0; k < 2 + b->E; ++k) {
      char name[64];
      if (k < 2)
        snprintf(name, sizeof name, "moe_maxvio_%s_l%d", k ? "global" : "batch", l);
      else
        snprintf(name, sizeof name, "moe_load_l%d_e%d", l, k - 2);
      int i = n_base + l * (2 + b->E) + k;
      tr->cols[i] = moe_col(tr, l, k);
      tr->names[i] = strdup(name);
      if (!tr->names[i]) return DRL_FAIL(DRL_ERR_OOM, "out of memory for metric names");
    }
  return DRL_OK;
}

void drl_phase_columns_free(drl_trainer *tr) {
  drl_metrics_close(&tr->metrics);
  for (int i = 0; tr->names && i < tr->n_cols; ++i)
    if (tr->cols[i] >= DRL_M_COUNT) free(tr->names[i]);
  free(tr->names);
  free(tr->cols);
  free(tr->row);
  free(tr->file_row);
  free(tr->heldout_counts);
}

/* Appends the row to the metrics file (rank 0). */
static drl_status log_row(drl_trainer *tr, int step) {
  if (!tr->writes) return DRL_OK;
  for (int i = 0; i < tr->n_cols; ++i) tr->file_row[i] = tr->row[tr->cols[i]];
  return drl_metrics_log(&tr->metrics, tr->phase_offset + step, tr->file_row);
}

/* A fresh row of phase: NaN everywhere else. */
static double *row_init(drl_trainer *tr, drl_cfg_phase phase) {
  double *row = tr->row;
  for (int i = 0; i < tr->n_row; ++i) row[i] = NAN;
  row[DRL_M_PHASE] = (double)phase;
  return row;
}

/* The MoE statistics of the step's last optimizer step into the row. */
static void moe_metrics(drl_trainer *tr, double *row) {
  drl_moe_balance *b = &tr->run.balance;
  if (drl_moe_balance_active(b) && b->fresh) { /* iterations without an optimizer step report none */
    b->fresh = 0;
    double per_block[1024];
    row[DRL_M_MOE_MAXVIO_BATCH] = b->maxvio_batch;
    row[DRL_M_MOE_AUX_LOSS] = b->last_aux_loss;
    drl_moe_balance_maxvio(b, b->load, b->L <= 1024 ? per_block : NULL);
    for (int l = 0; l < b->L && l < 1024; ++l) {
      if (l < tr->cfg->moe.first_layer) continue;
      row[moe_col(tr, l, 0)] = per_block[l];
      for (int e = 0; e < b->E; ++e) row[moe_col(tr, l, 2 + e)] = b->load[(size_t)l * b->E + e];
    }
  }
}

/* Held-out loss and, for an MoE policy, MaxVio_global (the routes of every held-out token with the current bias). */
static drl_status heldout_metrics(drl_trainer *tr, double *row) {
  drl_run *r = &tr->run;
  if (r->n_eval == 0) return DRL_OK;
  const drl_moe_balance *b = &r->balance;
  double loss = 0.0;
  if (b->L > 0) memset(tr->heldout_counts, 0, (size_t)b->L * b->E * sizeof(double));
  DRL_TRY(drl_run_heldout(r, &loss, b->L > 0 ? tr->heldout_counts : NULL));
  row[DRL_M_HELDOUT_LOSS] = loss;
  if (b->L > 0) {
    double per_block[1024];
    row[DRL_M_MOE_MAXVIO_GLOBAL] = drl_moe_balance_maxvio(b, tr->heldout_counts, b->L <= 1024 ? per_block : NULL);
    for (int l = tr->cfg->moe.first_layer; l < b->L && l < 1024; ++l) row[moe_col(tr, l, 1)] = per_block[l];
  }
  return DRL_OK;
}

/* The policy's evaluation into the row (a token policy without held-out examples has none). */
static drl_status evaluate_into(drl_trainer *tr, const drl_phase *ph, int step, double *row) {
  double value = 0.0;
  DRL_TRY(drl_run_evaluate(&tr->run, &value));
  const char *phase = drl_cfg_phase_name(ph->phase);
  if (tr->run.flow_policy) {
    row[DRL_M_EVAL_REWARD] = value;
    if (step < ph->steps) {
      drl_log_progress_end(&tr->progress);
      drl_log(DRL_LOG_INFO, "%s step %d: eval reward %.4f", phase, step, value);
    }
  } else if (value >= 0) {
    row[DRL_M_EVAL_ACCURACY] = value;
    if (step < ph->steps) {
      drl_log_progress_end(&tr->progress);
      drl_log(DRL_LOG_INFO, "%s step %d: held-out %s %.3f", phase, step, drl_run_eval_name(&tr->run), value);
    }
  }
  if (step == ph->steps) tr->phase_eval = value;
  return DRL_OK;
}

drl_status drl_phase_eval_before(drl_trainer *tr, double *value) {
  DRL_TRY(drl_run_evaluate(&tr->run, value));
  double *row = row_init(tr, tr->cfg->trainer.phases.items[0]);
  row[tr->run.flow_policy ? DRL_M_EVAL_REWARD : DRL_M_EVAL_ACCURACY] = *value;
  tr->phase_offset = 0;
  return *value >= 0 ? log_row(tr, 0) : DRL_OK;
}

/* After a step: evaluation, the metrics row, the checkpoint, trainer.stop_after. Sets *stop to end the phase. */
static drl_status after_step(drl_trainer *tr, const drl_phase *ph, int step, double *row, drl_train_summary *sum,
                             int *stop) {
  const drl_config *cfg = tr->cfg;
  int eval_now = ph->eval_every > 0 && step % ph->eval_every == 0;
  if ((eval_now && step < ph->steps) || (ph->eval_last && (eval_now || step == ph->steps)))
    DRL_TRY(evaluate_into(tr, ph, step, row));
  if (eval_now || step == ph->steps) DRL_TRY(heldout_metrics(tr, row));
  DRL_TRY(log_row(tr, step));
  drl_fault_point(drl_dp_rank(&tr->run.dp), tr->phase_offset + step);
  *stop = cfg->trainer.stop_after > 0 && sum->steps >= cfg->trainer.stop_after &&
          !(step == ph->steps && tr->last_phase);
  drl_status st = DRL_OK;
  if ((cfg->trainer.ckpt_every > 0 && step % cfg->trainer.ckpt_every == 0) || step == ph->steps || *stop) {
    /* The rows up to a checkpoint reach the disk before it does: a crash after it loses none of them. */
    if (tr->writes) DRL_TRY(drl_metrics_flush(&tr->metrics));
    const char *phase = drl_cfg_phase_name(ph->phase);
    st = drl_run_save(&tr->run, tr->run.ckpt_path, phase, step);
    if (st == DRL_OK)
      snprintf(tr->last_ckpt, sizeof tr->last_ckpt, "%s (%s step %d)", tr->run.ckpt_path, phase, step);
  }
  if (*stop) sum->stopped_at = step;
  return st;
}

/* Counts a step as good (bad "") or skipped (bad names what was not finite) into the row's bad_steps. The
 * trainer.max_bad_steps-th skipped step in a row ends the run: its row is logged and no checkpoint is written. */
static drl_status count_bad(drl_trainer *tr, const drl_phase *ph, int step, const char *bad, double *row) {
  const char *phase = drl_cfg_phase_name(ph->phase);
  drl_status st = drl_run_count_step(&tr->run.bad, phase, step, bad, tr->cfg->trainer.max_bad_steps, tr->last_ckpt);
  row[DRL_M_BAD_STEPS] = (double)tr->run.bad.total;
  if (st != DRL_OK && log_row(tr, step) != DRL_OK)
    drl_log(DRL_LOG_WARN, "the metrics row of %s step %d was not written", phase, step);
  return st;
}

drl_status drl_phase_run(drl_trainer *tr, drl_phase *ph, int start, drl_train_summary *sum) {
  drl_log_progress_begin(&tr->progress, ph->label, ph->steps, start, tr->cfg->run.log_every);
  tr->t0 = drl_log_seconds();
  tr->tokens = 0;
  tr->phase_eval = -1.0;
  int64_t steps_before = sum->steps;
  drl_status st = DRL_OK;
  for (int step = start + 1; st == DRL_OK && step <= ph->steps; ++step) {
    double t_step = drl_log_seconds();
    double *row = row_init(tr, ph->phase);
    drl_phase_out out;
    memset(&out, 0, sizeof out);
    st = ph->step(tr, ph->state, step, row, &out);
    if (st != DRL_OK) break;
    sum->steps++;
    sum->final_loss = out.loss;
    drl_log_progress_update(&tr->progress, step, out.text);
    moe_metrics(tr, row);
    row[DRL_M_STEP_SECONDS] = drl_log_seconds() - t_step;
    st = count_bad(tr, ph, step, out.bad, row);
    if (st != DRL_OK) break;
    int stop = 0;
    st = after_step(tr, ph, step, row, sum, &stop);
    if (stop) break;
  }
  drl_log_progress_end(&tr->progress);
  double el = drl_log_seconds() - tr->t0;
  sum->seconds += el;
  if (sum->n_phases < DRL_CFG_COUNT_phase) {
    drl_phase_summary ps = {ph->phase, sum->steps - steps_before, el, tr->tokens, tr->phase_eval};
    sum->phases[sum->n_phases++] = ps;
  }
  if (ph->close) ph->close(tr, ph->state);
  return st;
}
