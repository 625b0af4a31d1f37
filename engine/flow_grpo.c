#include "flow_grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nvtx.h"

/* Nodes per group in layer j. */
static int64_t per_group(const drl_sde_tree *t, int j) {
  return drl_sde_tree_layer_size(&t->p, t->groups, j) / t->groups;
}

void drl_flow_grpo_values(const drl_sde_tree *t, double *value) {
  int d = t->p.depth, b = t->p.branch;
  for (int q = 0; q < t->leaves; ++q) value[t->layer_first[d] + q] = t->reward[q];
  for (int j = d - 1; j >= 0; --j) {
    int64_t n = drl_sde_tree_layer_size(&t->p, t->groups, j);
    for (int64_t q = 0; q < n; ++q) {
      double s = 0.0;
      for (int c = 0; c < b; ++c) s += value[t->layer_first[j + 1] + q * b + c];
      value[t->layer_first[j] + q] = s / b;
    }
  }
}

/* Mean and Bessel standard deviation of v[0, n) (std 0 for n < 2). */
static void mean_std(const double *v, int64_t n, double *mean, double *std) {
  double s = 0.0, q = 0.0;
  for (int64_t i = 0; i < n; ++i) s += v[i];
  *mean = n > 0 ? s / n : 0.0;
  for (int64_t i = 0; i < n; ++i) q += (v[i] - *mean) * (v[i] - *mean);
  *std = n > 1 ? sqrt(q / (double)(n - 1)) : 0.0;
}

void drl_flow_grpo_advantages(const drl_sde_tree *t, const double *value, const drl_flow_grpo_cfg *c, float *adv) {
  int d = t->p.depth;
  memset(adv, 0, (size_t)t->nodes * sizeof(float));
  int64_t leaves_g = per_group(t, d);
  for (int g = 0; g < t->groups; ++g) {
    double m, s;
    mean_std(value + t->layer_first[d] + g * leaves_g, leaves_g, &m, &s);
    for (int j = 1; j <= d; ++j) {
      int64_t n = per_group(t, j);
      const double *vj = value + t->layer_first[j] + g * n;
      double dm = 0.0, ds = 0.0;
      if (c->advantage == DRL_TREE_ADV_DEPTH) mean_std(vj, n, &dm, &ds);
      for (int64_t q = 0; q < n; ++q) {
        int64_t node = t->layer_first[j] + g * n + q, parent = t->parent[node];
        double a;
        if (c->advantage == DRL_TREE_ADV_DEPTH)
          a = ds < 1e-6 ? 0.0 : (vj[q] - dm) / (ds + 1e-8);
        else if (c->advantage == DRL_TREE_ADV_SIBLING)
          a = (value[node] - value[parent]) / (s + c->adv_eps);
        else
          a = (value[node] - m) / (s + c->adv_eps);
        if (a > c->adv_clip) a = c->adv_clip;
        if (a < -c->adv_clip) a = -c->adv_clip;
        adv[node] = (float)a;
      }
    }
  }
}

double drl_flow_grpo_edge_loss(float adv, float logp, float logp_old, float eps, float *dlogp, int *clipped) {
  double rho = exp((double)logp - (double)logp_old), lo = 1.0 - eps, hi = 1.0 + eps;
  double rc = rho < lo ? lo : (rho > hi ? hi : rho);
  double un = -(double)adv * rho, cl = -(double)adv * rc;
  *clipped = cl > un;
  *dlogp = *clipped ? 0.0f : (float)(-(double)adv * rho);
  return *clipped ? cl : un;
}

drl_status drl_flow_grpo_grad(drl_sde_tree *t, drl_flow *model, const drl_flow_grpo_cfg *c,
                              drl_flow_grpo_stats *out) {
  DRL_RANGE("flow_grpo_update");
  memset(out, 0, sizeof *out);
  int d = t->p.depth, b = t->p.branch, D = t->D;
  double *value = (double *)malloc((size_t)t->nodes * sizeof(double));
  float *adv = (float *)malloc((size_t)t->nodes * sizeof(float));
  float *logp = (float *)malloc((size_t)t->leaves * sizeof(float));
  float *dlogp = (float *)malloc((size_t)t->leaves * sizeof(float));
  float *v = (float *)malloc((size_t)t->leaves * D * sizeof(float));
  float *dv = (float *)malloc((size_t)t->leaves * D * sizeof(float));
  double *gstat = (double *)malloc((size_t)t->groups * 3 * sizeof(double)); /* mean, std, best leaf */
  drl_status st =
      value && adv && logp && dlogp && v && dv && gstat ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for flow GRPO");
  if (st != DRL_OK) goto done;
  drl_flow_grpo_values(t, value);
  drl_flow_grpo_advantages(t, value, c, adv);
  int64_t leaves_g = per_group(t, d);
  double rsum = 0.0, ssum = 0.0;
  for (int g = 0; g < t->groups; ++g) {
    double m, s;
    mean_std(value + t->layer_first[d] + g * leaves_g, leaves_g, &m, &s);
    int64_t best = 0;
    for (int64_t q = 1; q < leaves_g; ++q)
      if (t->reward[g * leaves_g + q] > t->reward[g * leaves_g + best]) best = q;
    gstat[3 * g] = m;
    gstat[3 * g + 1] = s;
    gstat[3 * g + 2] = (double)(g * leaves_g + best);
    rsum += m;
    ssum += s;
  }
  out->reward_mean = rsum / t->groups;
  out->reward_std = ssum / t->groups;
  out->edges = t->nodes - t->layer_first[1];
  st = drl_params_zero_grads(&model->ps);
  int64_t clipped = 0;
  for (int j = 0; st == DRL_OK && j < d; ++j) {
    int64_t rows = drl_sde_tree_layer_size(&t->p, t->groups, j), children = rows * b, first = t->layer_first[j + 1];
    st = drl_sde_tree_edge_logprob(t, model, j, logp, v);
    if (st != DRL_OK) break;
    for (int64_t e = 0; e < children; ++e) {
      float a = adv[first + e], eps = drl_flow_grpo_clip_eps(c->clip_low, c->clip_high, c->sensitivity, a), g = 0.0f;
      int cl = 0;
      double l = drl_flow_grpo_edge_loss(a, logp[e], t->logp_old[first + e], eps, &g, &cl);
      out->rl_loss += l / (double)out->edges;
      dlogp[e] = (float)((double)g / (double)out->edges);
      clipped += cl;
      double dev = fabs(exp((double)logp[e] - (double)t->logp_old[first + e]) - 1.0);
      if (dev > out->ratio_max_dev) out->ratio_max_dev = dev;
    }
    /* LayerTuning-RL on the layer's nodes: toward the straight line to the group's best leaf. */
    int64_t n_g = per_group(t, j);
    for (int64_t q = 0; q < rows; ++q) {
      int g = (int)(q / n_g);
      double m = gstat[3 * g], s = gstat[3 * g + 1], rmax = t->reward[(int64_t)gstat[3 * g + 2]];
      double w = s > 0 ? (rmax - m) / (s + c->adv_eps) : 0.0;
      w = w < 0 ? 0 : (w > c->sft_wmax ? c->sft_wmax : w);
      const float *xn = t->x + (t->layer_first[j] + q) * D, *x0 = t->leaf_x + (int64_t)gstat[3 * g + 2] * D;
      double term = 0.0;
      for (int k = 0; k < D; ++k) {
        double target = ((double)xn[k] - x0[k]) / t->t[j], diff = (double)v[q * D + k] - target;
        term += diff * diff / D;
        dv[q * D + k] = (float)(c->sft_weight * w * 2.0 * diff / ((double)D * rows));
      }
      out->sft_loss += w * term / rows;
    }
    st = drl_sde_tree_edge_backward(t, model, j, dlogp, c->sft_weight > 0 ? dv : NULL);
    out->nfe_train += rows;
  }
  out->loss = out->rl_loss + c->sft_weight * out->sft_loss;
  out->clip_frac = out->edges ? (double)clipped / (double)out->edges : 0.0;
done:
  free(value);
  free(adv);
  free(logp);
  free(dlogp);
  free(v);
  free(dv);
  free(gstat);
  return st;
}
