#include "sde_tree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/moe.h" /* drl_moe_gather / drl_moe_combine: the repeat of a parent's row and its sum back */
#include "kernels/nvtx.h"
#include "kernels/philox.h"
#include "kernels/sde.h"
#include "models/carve.h"

/* uids of the flow sampler's streams among DRL_RNG_SDE streams */

static int64_t ipow(int b, int e) {
  int64_t r = 1;
  for (int i = 0; i < e; ++i) r *= b;
  return r;
}

drl_status drl_sde_tree_params_check(const drl_sde_tree_params *p) {
  if (p->steps < 1 || p->depth < 1 || p->window < 0 || p->window + p->depth > p->steps || p->branch < 1 || p->roots < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "tree: %d steps, window %d + depth %d (must fit the steps), branch %d, roots %d (all >= 1)",
                    p->steps, p->window, p->depth, p->branch, p->roots);
  if (!(p->shift > 0.0f) || !(p->noise >= 0.0f) || !(p->growth >= 0.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "tree: shift must be > 0, noise and growth >= 0");
  if ((double)p->roots * (double)ipow(p->branch, p->depth) > 1e8)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "tree: %d roots x %d^%d leaves per group is too many", p->roots, p->branch,
                    p->depth);
  return DRL_OK;
}

int64_t drl_sde_tree_layer_size(const drl_sde_tree_params *p, int groups, int j) {
  return (int64_t)groups * p->roots * ipow(p->branch, j);
}

int64_t drl_sde_tree_sample_nfe(const drl_sde_tree_params *p) {
  int64_t n = p->window;
  for (int j = 0; j < p->depth; ++j) n += ipow(p->branch, j);
  return n + ipow(p->branch, p->depth) * (p->steps - p->window - p->depth);
}

int64_t drl_sde_tree_train_nfe(const drl_sde_tree_params *p) {
  int64_t n = 0;
  for (int j = 0; j < p->depth; ++j) n += ipow(p->branch, j);
  return n;
}

int64_t drl_sde_tree_rows_needed(const drl_sde_tree_params *p, int groups) {
  return drl_sde_tree_layer_size(p, groups, p->depth);
}

static size_t carve_device(drl_sde_tree *t, void *base) {
  drl_carve c = {(char *)base, 0};
  size_t R = (size_t)t->rows_max, f = sizeof(float), D = (size_t)t->D;
  float **rd[] = {&t->d_x, &t->d_v, &t->d_xr, &t->d_vr, &t->d_next};
  for (size_t i = 0; i < sizeof rd / sizeof rd[0]; ++i) *rd[i] = (float *)drl_carve_take(&c, R * D * f);
  float **r1[] = {&t->d_t, &t->d_dt, &t->d_sigma, &t->d_logp};
  for (size_t i = 0; i < sizeof r1 / sizeof r1[0]; ++i) *r1[i] = (float *)drl_carve_take(&c, R * f);
  t->d_cond = (int32_t *)drl_carve_take(&c, R * sizeof(int32_t));
  t->d_rep = (int32_t *)drl_carve_take(&c, R * sizeof(int32_t));
  t->d_noise = (uint64_t *)drl_carve_take(&c, R * sizeof(uint64_t));
  return c.used;
}

drl_status drl_sde_tree_create(drl_sde_tree *t, const drl_sde_tree_params *p, int groups, int D,
                               const drl_device *dev) {
  memset(t, 0, sizeof *t);
  DRL_TRY(drl_sde_tree_params_check(p));
  if (groups < 1 || D < 1) return DRL_FAIL(DRL_ERR_INVALID_ARG, "tree: %d groups of %d dimensions", groups, D);
  t->p = *p;
  t->groups = groups;
  t->D = D;
  t->dev = *dev;
  t->layer_first = (int *)malloc((size_t)(p->depth + 2) * sizeof(int));
  if (!t->layer_first) return DRL_FAIL(DRL_ERR_OOM, "out of memory for a tree");
  int64_t n = 0;
  for (int j = 0; j <= p->depth; ++j) {
    t->layer_first[j] = (int)n;
    n += drl_sde_tree_layer_size(p, groups, j);
  }
  t->layer_first[p->depth + 1] = (int)n;
  t->nodes = (int)n;
  t->leaves = (int)drl_sde_tree_layer_size(p, groups, p->depth);
  t->rows_max = t->leaves;
  t->cond = (int32_t *)calloc((size_t)groups, sizeof(int32_t));
  t->parent = (int32_t *)malloc((size_t)n * sizeof(int32_t));
  t->t = (float *)calloc((size_t)p->depth, sizeof(float));
  t->dt = (float *)calloc((size_t)p->depth, sizeof(float));
  t->sigma = (float *)calloc((size_t)p->depth, sizeof(float));
  t->x = (float *)calloc((size_t)n * D, sizeof(float));
  t->logp_old = (float *)calloc((size_t)n, sizeof(float));
  t->leaf_x = (float *)calloc((size_t)t->leaves * D, sizeof(float));
  t->reward = (float *)calloc((size_t)t->leaves, sizeof(float));
  drl_status st = t->cond && t->parent && t->t && t->dt && t->sigma && t->x && t->logp_old && t->leaf_x && t->reward
                      ? DRL_OK
                      : drl_fail_oom("tree sampler host arrays", (size_t)n * (4 + 4 * (D + 1)) +
                                     (size_t)t->leaves * 4 * (D + 1), "the host");
  for (int j = 0; st == DRL_OK && j <= p->depth; ++j)
    for (int q = t->layer_first[j]; q < t->layer_first[j + 1]; ++q)
      t->parent[q] = j == 0 ? -1 : t->layer_first[j - 1] + (q - t->layer_first[j]) / p->branch;
  if (st == DRL_OK) st = drl_alloc(dev, &t->block, carve_device(t, NULL), "tree sampler");
  if (st == DRL_OK) {
    carve_device(t, t->block);
    int32_t *rep = (int32_t *)malloc((size_t)t->rows_max * sizeof(int32_t));
    st = rep ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for a tree");
    for (int i = 0; st == DRL_OK && i < t->rows_max; ++i) rep[i] = i;
    if (st == DRL_OK) st = drl_copy_to_device(dev, t->d_rep, rep, (size_t)t->rows_max * sizeof(int32_t));
    /* ODE rows read no noise index, but the buffer is defined all the same */
    if (st == DRL_OK) st = drl_memset(dev, t->d_noise, 0, (size_t)t->rows_max * sizeof(uint64_t));
    if (st == DRL_OK) st = drl_device_sync(dev);
    free(rep);
  }
  if (st != DRL_OK) drl_sde_tree_free(t);
  return st;
}

void drl_sde_tree_free(drl_sde_tree *t) {
  if (!t) return;
  free(t->layer_first);
  free(t->cond);
  free(t->parent);
  free(t->t);
  free(t->dt);
  free(t->sigma);
  free(t->x);
  free(t->logp_old);
  free(t->leaf_x);
  free(t->reward);
  if (t->block) drl_free(&t->dev, t->block);
  memset(t, 0, sizeof *t);
}

/* Uploads one value per row for rows [0, n): the step's time, step size and sigma, and each row's condition. */
static drl_status set_rows(drl_sde_tree *t, int64_t n, float tk, float dtk, float sigma, const int32_t *cond_of_row,
                           const uint64_t *noise) {
  float *h = (float *)malloc((size_t)n * 3 * sizeof(float));
  if (!h) return DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld tree rows", (long long)n);
  for (int64_t i = 0; i < n; ++i) h[i] = tk, h[n + i] = dtk, h[2 * n + i] = sigma;
  drl_status st = drl_copy_to_device(&t->dev, t->d_t, h, (size_t)n * sizeof(float));
  if (st == DRL_OK) st = drl_copy_to_device(&t->dev, t->d_dt, h + n, (size_t)n * sizeof(float));
  if (st == DRL_OK) st = drl_copy_to_device(&t->dev, t->d_sigma, h + 2 * n, (size_t)n * sizeof(float));
  if (st == DRL_OK && cond_of_row)
    st = drl_copy_to_device(&t->dev, t->d_cond, cond_of_row, (size_t)n * sizeof(int32_t));
  if (st == DRL_OK && noise) st = drl_copy_to_device(&t->dev, t->d_noise, noise, (size_t)n * sizeof(uint64_t));
  if (st == DRL_OK) st = drl_device_sync(&t->dev);
  free(h);
  return st;
}

/* The condition of each node of layer j. */
static void layer_conds(const drl_sde_tree *t, int j, int32_t *out) {
  int64_t n = drl_sde_tree_layer_size(&t->p, t->groups, j), per_group = n / t->groups;
  for (int64_t q = 0; q < n; ++q) out[q] = t->cond[q / per_group];
}

static drl_status ode_steps(drl_sde_tree *t, drl_flow *model, const float *grid, int k0, int k1, int64_t rows,
                            const int32_t *conds) {
  drl_rng_stream s = {t->p.seed, t->p.iteration, drl_rng_tag(DRL_RNG_SDE, DRL_UID_SDE_EDGE_NOISE, 0)};
  for (int k = k0; k < k1; ++k) {
    DRL_TRY(set_rows(t, rows, grid[k], grid[k + 1] - grid[k], 0.0f, conds, NULL));
    DRL_TRY(drl_flow_forward(model, t->d_x, t->d_t, t->d_cond, (int)rows, t->d_v));
    DRL_TRY(drl_sde_step(&t->dev, t->d_next, NULL, t->d_x, t->d_v, t->d_t, t->d_dt, t->d_sigma, t->d_noise, s, rows,
                         t->D, t->p.mean_over_dims));
    float *tmp = t->d_x;
    t->d_x = t->d_next;
    t->d_next = tmp;
    t->nfe += rows;
  }
  return DRL_OK;
}

drl_status drl_sde_tree_sample(drl_sde_tree *t, drl_flow *model, const int32_t *cond, uint32_t iteration) {
  DRL_RANGE("tree_sample");
  const drl_sde_tree_params *p = &t->p;
  if (drl_sde_tree_rows_needed(p, t->groups) > model->rows_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "tree: the sampler needs model calls of %lld points, the model holds %d",
                    (long long)drl_sde_tree_rows_needed(p, t->groups), model->rows_max);
  t->p.iteration = iteration;
  t->nfe = 0;
  memcpy(t->cond, cond, (size_t)t->groups * sizeof(int32_t));
  int D = t->D, T = p->steps, l = p->window;
  float *grid = (float *)malloc((size_t)(T + 1) * sizeof(float));
  int32_t *conds = (int32_t *)malloc((size_t)t->leaves * sizeof(int32_t));
  uint64_t *noise = (uint64_t *)malloc((size_t)t->leaves * sizeof(uint64_t));
  float *x0 = (float *)malloc((size_t)drl_sde_tree_layer_size(p, t->groups, 0) * D * sizeof(float));
  drl_status st = grid && conds && noise && x0 ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for tree sampling");
  if (st == DRL_OK) drl_time_grid(grid, T, p->shift);
  /* Roots: one addressed normal stream for the iteration's starting noises. */
  int64_t R0 = drl_sde_tree_layer_size(p, t->groups, 0);
  uint32_t root_tag = drl_rng_tag(DRL_RNG_SDE, DRL_UID_SDE_ROOT_NOISE, 0);
  for (int64_t q = 0; st == DRL_OK && q < R0; ++q) {
    int64_t src = p->shared_noise ? q / p->roots : q; /* the noise of the group, or of the root */
    for (int d = 0; d < D; ++d) x0[q * D + d] = drl_rng_normal(p->seed, iteration, root_tag, (uint64_t)(src * D + d));
  }
  if (st == DRL_OK) st = drl_copy_to_device(&t->dev, t->d_x, x0, (size_t)R0 * D * sizeof(float));
  if (st == DRL_OK) layer_conds(t, 0, conds);
  if (st == DRL_OK) st = ode_steps(t, model, grid, 0, l, R0, conds);
  if (st == DRL_OK) st = drl_copy_to_host(&t->dev, t->x, t->d_x, (size_t)R0 * D * sizeof(float));
  drl_rng_stream s = {p->seed, iteration, drl_rng_tag(DRL_RNG_SDE, DRL_UID_SDE_EDGE_NOISE, 0)};
  for (int j = 0; st == DRL_OK && j < p->depth; ++j) {
    int k = l + j;
    int64_t rows = drl_sde_tree_layer_size(p, t->groups, j), children = rows * p->branch;
    float g = 1.0f + (p->depth > 1 ? p->growth * (float)j / (float)(p->depth - 1) : 0.0f);
    t->t[j] = grid[k];
    t->dt[j] = grid[k + 1] - grid[k];
    t->sigma[j] = drl_sde_sigma(p->noise, g, grid[k], grid[1]);
    layer_conds(t, j, conds);
    st = set_rows(t, rows, t->t[j], t->dt[j], t->sigma[j], conds, NULL);
    if (st == DRL_OK) st = drl_flow_forward(model, t->d_x, t->d_t, t->d_cond, (int)rows, t->d_v);
    t->nfe += rows;
    /* Each child: its parent's row repeated, its own noise (addressed by the child's node id). */
    for (int64_t c = 0; c < children; ++c) noise[c] = (uint64_t)t->layer_first[j + 1] + (uint64_t)c;
    if (st == DRL_OK) st = set_rows(t, children, t->t[j], t->dt[j], t->sigma[j], NULL, noise);
    if (st == DRL_OK) st = drl_moe_gather(&t->dev, t->d_xr, t->d_x, t->d_rep, rows, p->branch, D);
    if (st == DRL_OK) st = drl_moe_gather(&t->dev, t->d_vr, t->d_v, t->d_rep, rows, p->branch, D);
    if (st == DRL_OK)
      st = drl_sde_step(&t->dev, t->d_next, t->d_logp, t->d_xr, t->d_vr, t->d_t, t->d_dt, t->d_sigma, t->d_noise, s,
                        children, D, p->mean_over_dims);
    size_t first = (size_t)t->layer_first[j + 1];
    if (st == DRL_OK) st = drl_copy_to_host(&t->dev, t->x + first * D, t->d_next, (size_t)children * D * sizeof(float));
    if (st == DRL_OK) st = drl_copy_to_host(&t->dev, t->logp_old + first, t->d_logp, (size_t)children * sizeof(float));
    float *tmp = t->d_x;
    t->d_x = t->d_next;
    t->d_next = tmp;
  }
  if (st == DRL_OK) layer_conds(t, p->depth, conds);
  if (st == DRL_OK) st = ode_steps(t, model, grid, l + p->depth, T, t->leaves, conds);
  if (st == DRL_OK) st = drl_copy_to_host(&t->dev, t->leaf_x, t->d_x, (size_t)t->leaves * D * sizeof(float));
  free(grid);
  free(conds);
  free(noise);
  free(x0);
  return st;
}

drl_status drl_sde_tree_edge_logprob(drl_sde_tree *t, drl_flow *model, int j, float *logp, float *v_host) {
  const drl_sde_tree_params *p = &t->p;
  if (j < 0 || j >= p->depth) return DRL_FAIL(DRL_ERR_INVALID_ARG, "tree: layer %d outside 0..%d", j, p->depth - 1);
  int D = t->D;
  int64_t rows = drl_sde_tree_layer_size(p, t->groups, j), children = rows * p->branch;
  int32_t *conds = (int32_t *)malloc((size_t)rows * sizeof(int32_t));
  if (!conds) return DRL_FAIL(DRL_ERR_OOM, "out of memory for a tree layer");
  layer_conds(t, j, conds);
  size_t first = (size_t)t->layer_first[j], cfirst = (size_t)t->layer_first[j + 1];
  drl_status st = drl_copy_to_device(&t->dev, t->d_x, t->x + first * D, (size_t)rows * D * sizeof(float));
  if (st == DRL_OK) st = set_rows(t, rows, t->t[j], t->dt[j], t->sigma[j], conds, NULL);
  free(conds);
  /* The same call as sampling made (the same rows, in the same order), so an unchanged policy gives the same bits. */
  if (st == DRL_OK) st = drl_flow_forward(model, t->d_x, t->d_t, t->d_cond, (int)rows, t->d_v);
  if (st == DRL_OK && v_host) st = drl_copy_to_host(&t->dev, v_host, t->d_v, (size_t)rows * D * sizeof(float));
  if (st == DRL_OK) st = set_rows(t, children, t->t[j], t->dt[j], t->sigma[j], NULL, NULL);
  if (st == DRL_OK)
    st = drl_copy_to_device(&t->dev, t->d_next, t->x + cfirst * D, (size_t)children * D * sizeof(float));
  if (st == DRL_OK) st = drl_moe_gather(&t->dev, t->d_xr, t->d_x, t->d_rep, rows, p->branch, D);
  if (st == DRL_OK) st = drl_moe_gather(&t->dev, t->d_vr, t->d_v, t->d_rep, rows, p->branch, D);
  if (st == DRL_OK)
    st = drl_sde_logprob(&t->dev, t->d_logp, t->d_next, t->d_xr, t->d_vr, t->d_t, t->d_dt, t->d_sigma, children, D,
                         p->mean_over_dims);
  if (st == DRL_OK) st = drl_copy_to_host(&t->dev, logp, t->d_logp, (size_t)children * sizeof(float));
  return st;
}

drl_status drl_sde_tree_edge_backward(drl_sde_tree *t, drl_flow *model, int j, const float *dlogp,
                                      const float *dv_extra) {
  const drl_sde_tree_params *p = &t->p;
  int D = t->D;
  int64_t rows = drl_sde_tree_layer_size(p, t->groups, j), children = rows * p->branch;
  /* d_xr, d_vr and d_next still hold the repeated parents, their velocities and the children from
   * drl_sde_tree_edge_logprob; the parents themselves (d_x) are no longer needed, so d_x takes the children's dv. */
  float *dv_rep = t->d_x, *dv = t->d_v;
  DRL_TRY(drl_copy_to_device(&t->dev, t->d_logp, dlogp, (size_t)children * sizeof(float)));
  DRL_TRY(drl_memset(&t->dev, dv_rep, 0, (size_t)children * D * sizeof(float)));
  DRL_TRY(drl_sde_logprob_backward(&t->dev, dv_rep, t->d_logp, t->d_next, t->d_xr, t->d_vr, t->d_t, t->d_dt,
                                   t->d_sigma, children, D, p->mean_over_dims));
  /* A parent's velocity gradient: the sum over its children (k in order) plus the caller's own term. */
  if (dv_extra)
    DRL_TRY(drl_copy_to_device(&t->dev, dv, dv_extra, (size_t)rows * D * sizeof(float)));
  else
    DRL_TRY(drl_memset(&t->dev, dv, 0, (size_t)rows * D * sizeof(float)));
  DRL_TRY(drl_moe_combine(&t->dev, dv, dv_rep, t->d_rep, NULL, rows, p->branch, D));
  DRL_TRY(drl_device_sync(&t->dev));
  return drl_flow_backward(model, dv);
}

drl_status drl_sde_tree_sample_ode(drl_flow *model, const int32_t *cond, int n_cond, int n, int steps, float shift,
                               uint64_t seed, float *out) {
  DRL_RANGE("flow_sample_ode");
  const drl_device *dev = &model->dev;
  int D = model->cfg.dim, chunk = model->rows_max;
  int64_t total = (int64_t)n_cond * n;
  float *grid = (float *)malloc((size_t)(steps + 1) * sizeof(float));
  float *h = (float *)malloc((size_t)chunk * 3 * sizeof(float));
  int32_t *hc = (int32_t *)malloc((size_t)chunk * sizeof(int32_t));
  float *dx = NULL, *dv = NULL, *dn = NULL, *dts = NULL;
  int32_t *dc = NULL;
  uint64_t *dz = NULL;
  drl_status st = grid && h && hc ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for ODE sampling");
  size_t rb = (size_t)chunk * D * sizeof(float);
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dx, rb, "ODE samples");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dv, rb, "ODE velocities");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dn, rb, "ODE next samples");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dts, (size_t)chunk * 3 * sizeof(float), "ODE times");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dc, (size_t)chunk * sizeof(int32_t), "ODE conditions");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&dz, (size_t)chunk * sizeof(uint64_t), "ODE noise indices");
  if (st == DRL_OK) st = drl_memset(dev, dz, 0, (size_t)chunk * sizeof(uint64_t)); /* read, never used: sigma 0 */
  if (st == DRL_OK) drl_time_grid(grid, steps, shift);
  uint32_t tag = drl_rng_tag(DRL_RNG_SDE, DRL_UID_SDE_ODE_NOISE, 0);
  drl_rng_stream s = {seed, 0, tag};
  for (int64_t a = 0; st == DRL_OK && a < total; a += chunk) {
    int rows = (int)(total - a < chunk ? total - a : chunk);
    for (int r = 0; r < rows; ++r) {
      hc[r] = cond[(a + r) / n];
      for (int d = 0; d < D; ++d) out[(a + r) * D + d] = drl_rng_normal(seed, 0, tag, (uint64_t)((a + r) * D + d));
    }
    st = drl_copy_to_device(dev, dx, out + a * D, (size_t)rows * D * sizeof(float));
    if (st == DRL_OK) st = drl_copy_to_device(dev, dc, hc, (size_t)rows * sizeof(int32_t));
    for (int k = 0; st == DRL_OK && k < steps; ++k) {
      for (int r = 0; r < rows; ++r) h[r] = grid[k], h[rows + r] = grid[k + 1] - grid[k], h[2 * rows + r] = 0.0f;
      st = drl_copy_to_device(dev, dts, h, (size_t)rows * 3 * sizeof(float));
      if (st == DRL_OK) st = drl_flow_forward(model, dx, dts, dc, rows, dv);
      if (st == DRL_OK)
        st = drl_sde_step(dev, dn, NULL, dx, dv, dts, dts + rows, dts + 2 * rows, dz, s, rows, D, 1);
      if (st == DRL_OK) st = drl_device_sync(dev); /* h is refilled next */
      float *tmp = dx;
      dx = dn;
      dn = tmp;
    }
    if (st == DRL_OK) st = drl_copy_to_host(dev, out + a * D, dx, (size_t)rows * D * sizeof(float));
  }
  drl_free(dev, dx);
  drl_free(dev, dv);
  drl_free(dev, dn);
  drl_free(dev, dts);
  drl_free(dev, dc);
  drl_free(dev, dz);
  free(grid);
  free(h);
  free(hc);
  return st;
}
