/* The grpo phase: one GRPO iteration (engine/grpo_iterate.h) per step over this rank's shards of the job's prompts. */
#include <stdio.h>
#include <stdlib.h>

#include "engine/grpo_iterate.h"
#include "engine/phase.h"

static drl_status grpo_step(drl_trainer *tr, void *state, int step, double *row, drl_phase_out *out) {
  const drl_config_grpo *g = &tr->cfg->grpo;
  drl_run *r = &tr->run;
  drl_grpo_iteration *it = (drl_grpo_iteration *)state;
  drl_grpo_iterate_at at = {tr->phase_offset + step, step, g->steps};
  drl_grpo_update_stats rl;
  DRL_TRY(drl_grpo_iterate(it, r, NULL, &at, &rl));
  double generated = (double)it->sampler.generated_tokens; /* this phase's, over the job */
  if (r->comm) DRL_TRY(drl_comm_sum_f64(r->comm, &generated, &generated, 1));
  tr->tokens = generated;
  out->loss = rl.loss;
  snprintf(out->bad, sizeof out->bad, "%s", rl.bad);
  double el = drl_log_seconds() - tr->t0, gen_tps = el > 0 ? generated / el : 0.0;
  snprintf(out->text, sizeof out->text, "reward %.3f loss %.4f kept %lld/%d rows %lld tok entropy %.3f gen tok/s %.0f",
           rl.reward_mean, rl.loss, (long long)rl.kept_samples, it->n * it->G * drl_dp_shards(&r->dp),
           (long long)rl.kept_tokens, rl.entropy, gen_tps);
  row[DRL_M_LOSS] = rl.loss;
  row[DRL_M_LR] = rl.lr;
  row[DRL_M_GRAD_NORM] = rl.grad_norm;
  row[DRL_M_TOKENS_PER_S] = gen_tps;
  row[DRL_M_REWARD_MEAN] = rl.reward_mean;
  row[DRL_M_REWARD_STD] = rl.reward_std;
  row[DRL_M_KEPT_SAMPLES] = (double)rl.kept_samples;
  row[DRL_M_KEPT_TOKENS] = (double)rl.kept_tokens;
  row[DRL_M_LOSS_TOKENS] = (double)rl.kept_tokens * g->ppo_epochs;
  row[DRL_M_USEFULNESS] = rl.usefulness;
  row[DRL_M_CLIP_FRAC] = rl.clip_frac;
  row[DRL_M_KL] = rl.kl;
  row[DRL_M_ENTROPY] = rl.entropy;
  row[DRL_M_RESPONSE_LEN] = rl.response_len;
  return DRL_OK;
}

static void grpo_close(drl_trainer *tr, void *state) {
  drl_grpo_iterate_free((drl_grpo_iteration *)state, &tr->run);
  free(state);
}

drl_status drl_phase_grpo(drl_trainer *tr, int start, drl_phase *ph) {
  const drl_config *cfg = tr->cfg;
  const drl_config_grpo *g = &cfg->grpo;
  drl_run *r = &tr->run;
  int ns = g->prompts_per_step / drl_dp_shards(&r->dp); /* one shard's prompts */
  int T = r->max_prompt + g->max_new_tokens;
  if (T > cfg->model.max_seq)
    return DRL_FAIL(DRL_ERR_CONFIG, "prompts of %d tokens plus grpo.max_new_tokens = %d exceed model.max_seq = %d",
                    r->max_prompt, g->max_new_tokens, cfg->model.max_seq);
  if (g->kl_beta > 0 && start > 0)
    drl_log(DRL_LOG_WARN, "grpo.kl_beta > 0: the KL reference after a resume is the resumed policy, not the policy "
                          "the phase started from");
  drl_grpo_iteration *it = (drl_grpo_iteration *)calloc(1, sizeof *it);
  if (!it) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the grpo phase");
  drl_status st = drl_grpo_iterate_create(it, r, 0, 0, ns, (int64_t)ns * r->max_prompt, T);
  if (st != DRL_OK) {
    free(it);
    return st;
  }
  drl_phase p = {DRL_CFG_PHASE_GRPO, "grpo", g->steps, cfg->trainer.eval_every, 1, it, grpo_step, grpo_close};
  *ph = p;
  return DRL_OK;
}
