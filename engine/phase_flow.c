/* The flow policy's phases: flow_pretrain (flow matching on the flow2d task) and flow_grpo (GRPO over SDE trees or
 * independent trajectories, engine/flow_grpo.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/flow_grpo.h"
#include "engine/flow_policy.h"
#include "engine/optim.h"
#include "engine/phase.h"
#include "kernels/fault.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"

/* The configuration's enum converts to the flow GRPO's by value. */
_Static_assert((int)DRL_CFG_TADV_SUBTREE == (int)DRL_TREE_ADV_SUBTREE, "tree.advantage converts by value");
_Static_assert((int)DRL_CFG_TADV_DEPTH == (int)DRL_TREE_ADV_DEPTH, "tree.advantage converts by value");
_Static_assert((int)DRL_CFG_TADV_SIBLING == (int)DRL_TREE_ADV_SIBLING, "tree.advantage converts by value");

/* The optimizer step of the flow policy (engine/optim.h); a good one advances the step counter. */
static drl_status flow_optim_step(drl_run *r, float lr, double loss, float *norm, char *bad) {
  drl_optim_hparams hp = drl_optim_hparams_at(&r->cfg->optim, lr, r->optim_step + 1);
  DRL_TRY(drl_optim_step(&r->dp, r->ps, &hp, loss, norm, bad));
  if (!bad[0]) r->optim_step++;
  return DRL_OK;
}

/* ---- flow_pretrain ---- */

/* A flow-matching batch: host arrays and their device copies. */
typedef struct pretrain_state {
  int B;
  float *h_x, *h_t, *h_u, *h_v, *h_dv;
  int32_t *h_c;
  float *d_x, *d_t, *d_v, *d_dv;
  int32_t *d_c;
} pretrain_state;

static void pretrain_close(drl_trainer *tr, void *state) {
  pretrain_state *f = (pretrain_state *)state;
  if (!f) return;
  void *host[] = {f->h_x, f->h_t, f->h_u, f->h_v, f->h_dv, f->h_c};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; ++i) free(host[i]);
  void *dev[] = {f->d_x, f->d_t, f->d_v, f->d_dv, f->d_c};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i) drl_free(&tr->run.dev, dev[i]);
  free(f);
}

/* B points x_0 of the training set, times t and noises eps of the step's Philox block per point,
 * x_t = (1 - t) x_0 + t eps, target eps - x_0 (host arrays). */
static void matching_batch(const drl_run *r, pretrain_state *f, uint32_t gstep) {
  const drl_config *cfg = r->cfg;
  /* per point one Philox block: word 0 the training point, word 1 the time, words 2-3 the noise */
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, DRL_UID_FLOW_MATCHING, 0);
  for (int i = 0; i < f->B; ++i) {
    drl_philox_block b = drl_rng_block(cfg->run.seed, gstep, tag, (uint64_t)i);
    float x0[2], eps[2];
    drl_flow2d_point(&r->task, cfg->run.seed, b.v[0] % (uint32_t)cfg->flow.n_train, x0, &f->h_c[i]);
    float t = drl_u32_to_uniform_pos(b.v[1]); /* (0, 1]: t = 0 is the data itself */
    drl_box_muller(b.v[2], b.v[3], &eps[0], &eps[1]);
    f->h_t[i] = t;
    for (int d = 0; d < 2; ++d) {
      f->h_x[2 * i + d] = (1.0f - t) * x0[d] + t * eps[d];
      f->h_u[2 * i + d] = eps[d] - x0[d];
    }
  }
}

/* One flow-matching step: loss = mean |v(x_t, t, c) - (eps - x_0)|^2 over points and dimensions. */
static drl_status pretrain_step(drl_trainer *tr, void *state, int step, double *row, drl_phase_out *out) {
  DRL_RANGE("flow_pretrain_step");
  pretrain_state *f = (pretrain_state *)state;
  drl_run *r = &tr->run;
  int B = f->B;
  uint32_t gstep = (uint32_t)(tr->phase_offset + step);
  matching_batch(r, f, gstep);
  drl_device *dev = &r->dev;
  size_t xb = (size_t)B * 2 * sizeof(float);
  DRL_TRY(drl_copy_to_device(dev, f->d_x, f->h_x, xb));
  DRL_TRY(drl_copy_to_device(dev, f->d_t, f->h_t, (size_t)B * sizeof(float)));
  DRL_TRY(drl_copy_to_device(dev, f->d_c, f->h_c, (size_t)B * sizeof(int32_t)));
  DRL_TRY(drl_flow_forward(&r->flow, f->d_x, f->d_t, f->d_c, B, f->d_v));
  DRL_TRY(drl_copy_to_host(dev, f->h_v, f->d_v, xb));
  double s = 0.0, scale = 1.0 / (2.0 * B);
  for (int i = 0; i < 2 * B; ++i) {
    double d = (double)f->h_v[i] - f->h_u[i];
    s += d * d;
    f->h_dv[i] = (float)(2.0 * d * scale);
  }
  double loss = s * scale;
  if (drl_fault_values_at(0, gstep).nan_loss) loss = NAN;
  float lr = drl_optim_lr_at(&tr->cfg->optim, step, tr->cfg->flow.pretrain_steps), norm = 0.0f;
  if (isfinite(loss)) {
    DRL_TRY(drl_copy_to_device(dev, f->d_dv, f->h_dv, xb));
    DRL_TRY(drl_params_zero_grads(r->ps));
    DRL_TRY(drl_flow_backward(&r->flow, f->d_dv));
    DRL_TRY(drl_layout_inject_grad_fault(dev, &r->ps->layout, r->ps->grads, 0, gstep, NULL));
  }
  DRL_TRY(flow_optim_step(r, lr, loss, &norm, out->bad));
  out->loss = loss;
  snprintf(out->text, sizeof out->text, "loss %.4f lr %.2e gnorm %.3f", loss, (double)lr, (double)norm);
  row[DRL_M_LOSS] = loss;
  row[DRL_M_LR] = lr;
  row[DRL_M_GRAD_NORM] = norm;
  return DRL_OK;
}

drl_status drl_phase_flow_pretrain(drl_trainer *tr, int start, drl_phase *ph) {
  (void)start;
  const drl_config *cfg = tr->cfg;
  pretrain_state *f = (pretrain_state *)calloc(1, sizeof *f);
  if (!f) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the flow_pretrain phase");
  drl_phase p = {DRL_CFG_PHASE_FLOW_PRETRAIN, "flow_pretrain", cfg->flow.pretrain_steps, cfg->trainer.eval_every, 1, f,
                 pretrain_step, pretrain_close};
  *ph = p;
  f->B = cfg->flow.batch_size;
  size_t B = (size_t)f->B, f4 = sizeof(float);
  const drl_device *dev = &tr->run.dev;
  drl_status st = DRL_OK;
  f->h_x = (float *)malloc(B * 2 * f4);
  f->h_t = (float *)malloc(B * f4);
  f->h_u = (float *)malloc(B * 2 * f4);
  f->h_v = (float *)malloc(B * 2 * f4);
  f->h_dv = (float *)malloc(B * 2 * f4);
  f->h_c = (int32_t *)malloc(B * sizeof(int32_t));
  if (!f->h_x || !f->h_t || !f->h_u || !f->h_v || !f->h_dv || !f->h_c)
    st = DRL_FAIL(DRL_ERR_OOM, "out of memory for a flow-matching batch of %d points", f->B);
  DRL_TRY_GOTO(st);
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&f->d_x, B * 2 * f4, "flow-matching points"));
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&f->d_t, B * f4, "flow-matching times"));
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&f->d_v, B * 2 * f4, "flow-matching velocities"));
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&f->d_dv, B * 2 * f4, "flow-matching velocity gradients"));
  DRL_TRY_GOTO(drl_alloc(dev, (void **)&f->d_c, B * sizeof(int32_t), "flow-matching conditions"));
done:
  if (st != DRL_OK) pretrain_close(tr, f);
  return st;
}

/* ---- flow_grpo ---- */

typedef struct tree_state {
  drl_sde_tree tree;
  int32_t *cond; /* [tree.conditions_per_iter] */
  drl_flow_grpo_cfg gc;
  float lr;
  int64_t nfe_total; /* network evaluations of the phase so far */
} tree_state;

static void tree_close(drl_trainer *tr, void *state) {
  (void)tr;
  tree_state *s = (tree_state *)state;
  if (!s) return;
  free(s->cond);
  drl_sde_tree_free(&s->tree);
  free(s);
}

/* Samples a forest for the iteration's conditions, rewards its leaves and takes tree.epochs updates on it (the
 * statistics of the last; a non-finite loss or gradient skips that update and the iteration's rest). */
static drl_status tree_step(drl_trainer *tr, void *state, int it, double *row, drl_phase_out *out) {
  DRL_RANGE("flow_grpo_iteration");
  tree_state *s = (tree_state *)state;
  drl_run *r = &tr->run;
  const drl_config *cfg = tr->cfg;
  drl_sde_tree *tree = &s->tree;
  int G = cfg->tree.conditions_per_iter;
  uint32_t gstep = (uint32_t)(tr->phase_offset + it);
  for (int g = 0; g < G; ++g) s->cond[g] = (int32_t)(((int64_t)(it - 1) * G + g) % r->task.conditions);
  tree->p.window = drl_flow_policy_window(cfg, it);
  DRL_TRY(drl_sde_tree_sample(tree, &r->flow, s->cond, gstep));
  int64_t per = tree->leaves / G;
  for (int q = 0; q < tree->leaves; ++q)
    tree->reward[q] = drl_flow2d_reward(&r->task, tree->leaf_x + 2 * q, s->cond[q / per]);
  drl_flow_grpo_stats gs;
  int64_t nfe = tree->nfe;
  for (int e = 0; e < cfg->tree.epochs && !out->bad[0]; ++e) {
    DRL_TRY(drl_flow_grpo_grad(tree, &r->flow, &s->gc, &gs));
    if (e == 0 && drl_fault_values_at(0, gstep).nan_loss) gs.loss = NAN;
    if (e == 0) DRL_TRY(drl_layout_inject_grad_fault(&r->dev, &r->ps->layout, r->ps->grads, 0, gstep, NULL));
    DRL_TRY(flow_optim_step(r, s->lr, gs.loss, &gs.grad_norm, out->bad));
    nfe += gs.nfe_train;
  }
  s->nfe_total += nfe;
  out->loss = gs.loss;
  snprintf(out->text, sizeof out->text, "reward %.3f (std %.3f) loss %.4f window %d nfe %lld clip %.2f",
           gs.reward_mean, gs.reward_std, gs.loss, tree->p.window, (long long)s->nfe_total, gs.clip_frac);
  row[DRL_M_LOSS] = gs.loss;
  row[DRL_M_LR] = s->lr;
  row[DRL_M_GRAD_NORM] = gs.grad_norm;
  row[DRL_M_REWARD_MEAN] = gs.reward_mean;
  row[DRL_M_REWARD_STD] = gs.reward_std;
  row[DRL_M_NFE] = (double)nfe;
  row[DRL_M_NFE_TOTAL] = (double)s->nfe_total;
  row[DRL_M_WINDOW] = tree->p.window;
  row[DRL_M_CLIP_FRAC] = gs.clip_frac;
  row[DRL_M_RATIO_MAX_DEV] = gs.ratio_max_dev;
  row[DRL_M_RL_LOSS] = gs.rl_loss;
  row[DRL_M_SFT_LOSS] = gs.sft_loss;
  return DRL_OK;
}

drl_status drl_phase_flow_grpo(drl_trainer *tr, int start, drl_phase *ph) {
  const drl_config *cfg = tr->cfg;
  const drl_config_tree *tc = &cfg->tree;
  tree_state *s = (tree_state *)calloc(1, sizeof *s);
  if (!s) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the flow_grpo phase");
  drl_phase p = {DRL_CFG_PHASE_FLOW_GRPO, "flow_grpo", tc->iterations, tc->eval_every, 1, s, tree_step, tree_close};
  *ph = p;
  drl_flow_grpo_cfg gc = {(drl_tree_adv)tc->advantage, 1e-6f,
                          (float)tc->adv_clip,         (float)tc->clip_low,
                          (float)tc->clip_high,        (float)tc->clip_sensitivity,
                          (float)tc->sft_weight,       (float)tc->sft_wmax};
  s->gc = gc;
  s->lr = (float)(tc->lr > 0 ? tc->lr : cfg->optim.lr);
  s->nfe_total = drl_flow_policy_nfe_through(cfg, start);
  drl_sde_tree_params p0 = drl_flow_policy_tree_params(cfg, 1);
  drl_status st = drl_sde_tree_create(&s->tree, &p0, tc->conditions_per_iter, 2, &tr->run.dev);
  s->cond = (int32_t *)malloc((size_t)tc->conditions_per_iter * sizeof(int32_t));
  if (st == DRL_OK && !s->cond) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for conditions");
  if (st != DRL_OK) tree_close(tr, s);
  return st;
}
