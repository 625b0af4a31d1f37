/* The sft phase: cross-entropy on the answer tokens of the training examples, AdamW through the data-parallel
 * shards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/optim.h"
#include "engine/phase.h"
#include "engine/sft.h"
#include "kernels/fault.h"
#include "kernels/nvtx.h"

typedef struct sft_state {
  drl_sft_batch batch; /* one shard's rows */
  float *logprob;
} sft_state;

/* One SFT optimizer step: every local shard's rows forward and backward (the loss normalised by the answer tokens
 * of the whole batch), the gradients summed over the job, one AdamW step. *loss gets the batch's mean loss. */
static drl_status sft_update(drl_trainer *tr, sft_state *s, int step, float lr, float *norm, double *loss, char *bad) {
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  drl_transformer *m = &r->model;
  drl_sft_batch *batch = &s->batch;
  int k = drl_dp_local(&r->dp), first = drl_dp_first(&r->dp), Bs = batch->B;
  int64_t normaliser = drl_sft_scored(&r->data, r->n_train, cfg->run.seed, step, 0, cfg->sft.batch_size);
  double *local = (double *)malloc((size_t)k * sizeof(double));
  drl_status st = local ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for shard losses");
  int rank = drl_dp_rank(&r->dp);
  int64_t global = tr->phase_offset + step;
  drl_fault_values faults = drl_fault_values_at(rank, global);
  for (int j = 0; st == DRL_OK && j < k; ++j) {
    st = drl_sft_batch_fill(batch, &r->data, r->n_train, cfg->run.seed, step, (int64_t)(first + j) * Bs,
                            normaliser);
    if (st == DRL_OK)
      st = drl_transformer_forward(m, batch->tokens, batch->targets, NULL, Bs, batch->T, 1.0f, s->logprob, NULL);
    if (st == DRL_OK) st = drl_moe_balance_forward(&r->balance, m, batch->real);
    if (st == DRL_OK) st = drl_params_zero_grads(&m->ps);
    drl_dp_arm(&r->dp, j == k - 1 && !faults.grad);
    if (st == DRL_OK) st = drl_transformer_backward(m, batch->dlogprob);
    if (st == DRL_OK && faults.grad && j == 0)
      st = drl_layout_inject_grad_fault(&m->dev, &m->ps.layout, m->ps.grads, rank, global, NULL);
    if (st == DRL_OK) st = drl_dp_grads_push(&r->dp, m->ps.grads);
    if (st == DRL_OK) local[j] = drl_sft_loss_sum(batch, s->logprob);
    if (st == DRL_OK && j == 0 && faults.nan_loss) local[j] = NAN;
  }
  if (st == DRL_OK) st = drl_dp_grads_reduce(&r->dp, m->ps.grads);
  if (st == DRL_OK) st = drl_dp_sum_shards(&r->dp, local, 1, loss);
  free(local);
  DRL_TRY(st);
  drl_optim_hparams hp = drl_optim_hparams_at(&cfg->optim, lr, r->optim_step + 1);
  DRL_TRY(drl_optim_step(&r->dp, &m->ps, &hp, *loss, norm, bad));
  if (bad[0]) {
    drl_moe_balance_discard(&r->balance);
  } else {
    r->optim_step++;
    DRL_TRY(drl_moe_balance_step(&r->balance, m, r->optim_step, 0));
  }
  *loss /= normaliser > 0 ? (double)normaliser : 1.0;
  return DRL_OK;
}

static drl_status sft_step(drl_trainer *tr, void *state, int step, double *row, drl_phase_out *out) {
  DRL_RANGE("sft_step");
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  sft_state *s = (sft_state *)state;
  float norm = 0.0f, lr = drl_optim_lr_at(&cfg->optim, step, cfg->sft.steps);
  DRL_TRY(sft_update(tr, s, step, lr, &norm, &out->loss, out->bad));
  tr->tokens += (double)drl_sft_tokens(&r->data, r->n_train, cfg->run.seed, step, cfg->sft.batch_size);
  double el = drl_log_seconds() - tr->t0, tps = el > 0 ? tr->tokens / el : 0.0;
  snprintf(out->text, sizeof out->text, "loss %.4f lr %.2e gnorm %.3f tok/s %.0f", out->loss, (double)lr, (double)norm,
           tps);
  row[DRL_M_LOSS] = out->loss;
  row[DRL_M_LR] = lr;
  row[DRL_M_GRAD_NORM] = norm;
  row[DRL_M_TOKENS_PER_S] = tps;
  row[DRL_M_LOSS_TOKENS] = (double)drl_sft_scored(&r->data, r->n_train, cfg->run.seed, step, 0, cfg->sft.batch_size);
  return DRL_OK;
}

static void sft_close(drl_trainer *tr, void *state) {
  (void)tr;
  sft_state *s = (sft_state *)state;
  if (!s) return;
  free(s->logprob);
  drl_sft_batch_free(&s->batch);
  free(s);
}

drl_status drl_phase_sft(drl_trainer *tr, int start, drl_phase *ph) {
  (void)start;
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  int T = 0; /* at most model.max_seq: drl_run_open checked */
  DRL_TRY(drl_sft_max_len(&r->data, 0, r->n_train, &T));
  sft_state *s = (sft_state *)calloc(1, sizeof *s);
  if (!s) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the sft phase");
  drl_phase p = {DRL_CFG_PHASE_SFT, "sft", cfg->sft.steps, cfg->trainer.eval_every, 1, s, sft_step, sft_close};
  *ph = p;
  drl_status st = drl_sft_batch_alloc(&s->batch, cfg->sft.batch_size / drl_dp_shards(&r->dp), T);
  s->logprob = (float *)malloc((size_t)s->batch.B * (size_t)(T ? T : 1) * sizeof(float));
  if (st == DRL_OK && !s->logprob) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for log-probabilities");
  if (st != DRL_OK) sft_close(tr, s);
  return st;
}
