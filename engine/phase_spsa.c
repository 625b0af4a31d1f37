/* The sft and grpo phases trained zeroth-order (optim.name: spsa, engine/spsa.h). Contribution q's loss: sft, the
 * cross-entropy of rows [q B, (q + 1) B) of the step's draw (B = sft.batch_size); grpo, the clipped surrogate on the
 * rollouts of prompts [q P, (q + 1) P) of the step's draw (P = grpo.prompts_per_step: shard q of a GRPO iteration),
 * sampled once at the step's parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grpo_iterate.h"
#include "engine/phase.h"
#include "engine/sft.h"
#include "engine/spsa.h"
#include "kernels/fault.h"

/* The configuration's enums convert to the SPSA engine's by value. */
_Static_assert((int)DRL_CFG_PERTURB_RADEMACHER == (int)DRL_SPSA_RADEMACHER,
               "spsa.perturbation and spsa.codec convert by value");
_Static_assert((int)DRL_CFG_PERTURB_NORMAL == (int)DRL_SPSA_NORMAL,
               "spsa.perturbation and spsa.codec convert by value");
_Static_assert((int)DRL_CFG_CODEC_LOG8 == (int)DRL_SPSA_LOG8, "spsa.perturbation and spsa.codec convert by value");
_Static_assert((int)DRL_CFG_CODEC_FP32 == (int)DRL_SPSA_FP32, "spsa.perturbation and spsa.codec convert by value");

typedef struct spsa_state {
  drl_trainer *tr;
  drl_cfg_phase phase;
  drl_spsa sp;
  int T;
  drl_sft_batch batch;
  float *logprob;
  drl_grpo_iteration grpo;
  int prepared;
  uint32_t prepared_step, prepared_q;
  double reward_sum;
  int64_t reward_rows;
} spsa_state;

static drl_status sft_loss(spsa_state *c, const float *params, uint32_t step, uint32_t q, double *loss) {
  drl_run *r = &c->tr->run;
  drl_transformer *m = &r->model;
  DRL_TRY(drl_sft_batch_fill(&c->batch, &r->data, r->n_train, c->tr->cfg->run.seed,
                             (int)(step - c->tr->phase_offset), (int64_t)q * c->batch.B, 0));
  float *own = m->ps.params;
  m->ps.params = (float *)params;
  drl_status st = drl_transformer_forward(m, c->batch.tokens, c->batch.targets, NULL, c->batch.B, c->batch.T, 1.0f,
                                          c->logprob, NULL);
  m->ps.params = own;
  *loss = drl_sft_loss(&c->batch, c->logprob);
  return st;
}

static drl_status grpo_loss(spsa_state *c, const float *params, uint32_t step, uint32_t q, double *loss) {
  drl_run *r = &c->tr->run;
  if (!c->prepared || c->prepared_step != step || c->prepared_q != q) {
    drl_grpo_iteration *g = &c->grpo;
    g->first_shard = (int)q;
    DRL_TRY(drl_grpo_iterate_sample(g, r, NULL, step, 0));
    DRL_TRY(drl_grpo_update_prepare(&g->rl, &r->model, c->tr->cfg, &g->batch[0]));
    for (int i = 0; i < g->rollouts[0].rows; ++i) c->reward_sum += g->rewards[i];
    c->reward_rows += g->rollouts[0].rows;
    c->prepared = 1;
    c->prepared_step = step;
    c->prepared_q = q;
  }
  return drl_grpo_update_surrogate(&c->grpo.rl, &r->model, c->tr->cfg, params, loss);
}

static drl_status spsa_loss(void *user, const float *params, uint32_t step, uint32_t q, double *loss) {
  spsa_state *c = (spsa_state *)user;
  DRL_TRY(c->phase == DRL_CFG_PHASE_SFT ? sft_loss(c, params, step, q, loss) : grpo_loss(c, params, step, q, loss));
  if (drl_fault_values_at(drl_dp_rank(&c->tr->run.dp), step).nan_loss) *loss = NAN;
  return DRL_OK;
}

static drl_status spsa_step(drl_trainer *tr, void *state, int step, double *row, drl_phase_out *out) {
  spsa_state *c = (spsa_state *)state;
  const drl_config *cfg = tr->cfg;
  const drl_config_spsa *sc = &cfg->spsa;
  drl_run *r = &tr->run;
  drl_spsa_stats ss;
  c->reward_sum = 0.0;
  c->reward_rows = 0;
  DRL_TRY(drl_spsa_step(&c->sp, r->ps->params, (uint32_t)(tr->phase_offset + step), spsa_loss, c, &ss));
  out->loss = ss.loss;
  snprintf(out->bad, sizeof out->bad, "%s", ss.skipped ? "loss" : "");
  double per_rank = c->phase == DRL_CFG_PHASE_SFT ? (double)cfg->sft.batch_size * c->T : (double)c->reward_rows * c->T;
  tr->tokens += 2.0 * sc->samples * per_rank * (r->comm ? r->comm->size : 1); /* forward passes of the job */
  double el = drl_log_seconds() - tr->t0, tps = el > 0 ? tr->tokens / el : 0.0;
  double reward = c->reward_rows ? c->reward_sum / (double)c->reward_rows : NAN;
  if (c->phase == DRL_CFG_PHASE_SFT)
    snprintf(out->text, sizeof out->text, "loss %.4f |g| %.3g bytes/step %lld tok/s %.0f", ss.loss, ss.grad_abs,
             (long long)ss.payload_bytes, tps);
  else
    snprintf(out->text, sizeof out->text, "loss %.4f reward %.3f |g| %.3g bytes/step %lld tok/s %.0f", ss.loss,
             reward, ss.grad_abs, (long long)ss.payload_bytes, tps);
  row[DRL_M_LOSS] = ss.loss;
  row[DRL_M_LR] = sc->lr;
  row[DRL_M_TOKENS_PER_S] = tps;
  row[DRL_M_REWARD_MEAN] = reward;
  row[DRL_M_PROJECTED_GRAD] = ss.grad_abs;
  row[DRL_M_PAYLOAD_BYTES] = (double)ss.payload_bytes;
  return DRL_OK;
}

static void spsa_close(drl_trainer *tr, void *state) {
  spsa_state *c = (spsa_state *)state;
  if (!c) return;
  if (c->sp.cfg.samples > 0)
    drl_log(DRL_LOG_INFO, "spsa: this rank sent %llu payload bytes (%d per step) and %llu bytes of hash checks",
            (unsigned long long)c->sp.payload_total,
            (int)(c->sp.cfg.samples * (tr->cfg->spsa.codec == DRL_CFG_CODEC_LOG8 ? 1 : 4)),
            (unsigned long long)c->sp.hash_total);
  drl_spsa_free(&c->sp);
  drl_sft_batch_free(&c->batch);
  free(c->logprob);
  drl_grpo_iterate_free(&c->grpo, &tr->run);
  free(c);
}

drl_status drl_phase_spsa(drl_trainer *tr, drl_cfg_phase phase, int start, drl_phase *ph) {
  (void)start;
  const drl_config *cfg = tr->cfg;
  const drl_config_grpo *g = &cfg->grpo;
  const drl_config_spsa *sc = &cfg->spsa;
  drl_run *r = &tr->run;
  spsa_state *c = (spsa_state *)calloc(1, sizeof *c);
  if (!c) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the spsa phase");
  c->tr = tr;
  c->phase = phase;
  int sft = phase == DRL_CFG_PHASE_SFT;
  drl_phase p = {phase, sft ? "sft (spsa)" : "grpo (spsa)", sft ? cfg->sft.steps : g->steps, cfg->trainer.eval_every,
                 1, c, spsa_step, spsa_close};
  *ph = p;
  drl_spsa_config scfg = {cfg->run.seed, (float)sc->lr, (float)sc->eps, sc->samples, (drl_spsa_dist)sc->perturbation,
                          (drl_spsa_codec)sc->codec, sc->hash_every};
  drl_status st = drl_spsa_create(&c->sp, &scfg, r->comm, &r->dev, r->ps->layout.total);
  if (st == DRL_OK && sft) {
    st = drl_sft_max_len(&r->data, 0, r->n_train, &c->T);
    if (st == DRL_OK) st = drl_sft_batch_alloc(&c->batch, cfg->sft.batch_size, c->T);
    c->logprob = (float *)malloc((size_t)cfg->sft.batch_size * (size_t)(c->T ? c->T : 1) * sizeof(float));
    if (st == DRL_OK && !c->logprob) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for log-probabilities");
  } else if (st == DRL_OK) {
    int n = g->prompts_per_step;
    c->T = r->max_prompt + g->max_new_tokens;
    if (c->T > cfg->model.max_seq)
      st = DRL_FAIL(DRL_ERR_CONFIG, "prompts of %d tokens plus grpo.max_new_tokens = %d exceed model.max_seq = %d",
                    r->max_prompt, g->max_new_tokens, cfg->model.max_seq);
    if (st == DRL_OK) st = drl_grpo_iterate_create(&c->grpo, r, 1, 0, n, (int64_t)n * r->max_prompt, c->T);
  }
  if (st != DRL_OK) spsa_close(tr, c);
  return st;
}
