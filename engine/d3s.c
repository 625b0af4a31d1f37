#include "d3s.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grpo.h"
#include "kernels/status.h"

/* ---- sample level ---- */

typedef struct value_index {
  float v;
  int i;
} value_index;

/* Value descending, then index ascending: a total order, so qsort's instability cannot show. */
static int cmp_desc(const void *pa, const void *pb) {
  const value_index *a = (const value_index *)pa, *b = (const value_index *)pb;
  if (a->v > b->v) return -1;
  if (a->v < b->v) return 1;
  return (a->i > b->i) - (a->i < b->i);
}

drl_status drl_d3s_maxvar_subset(const float *v, int n, int k, int *out_idx) {
  if (n < 0 || k < 0 || k > n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "max-variance subset: cannot keep %d of %d values", k, n);
  if (k == 0) return DRL_OK;
  if (!v || !out_idx) return DRL_FAIL(DRL_ERR_INVALID_ARG, "max-variance subset: NULL array");
  for (int j = 0; j < n; ++j)
    if (!isfinite(v[j])) return DRL_FAIL(DRL_ERR_NUMERIC, "max-variance subset: value %d is %g", j, (double)v[j]);

  value_index *ord = (value_index *)malloc((size_t)n * sizeof *ord);
  double *c = (double *)malloc((size_t)n * sizeof *c);
  double *sums = (double *)malloc(5 * ((size_t)k + 1) * sizeof *sums);
  uint8_t *take = (uint8_t *)calloc((size_t)n, 1);
  if (!ord || !c || !sums || !take) {
    free(ord);
    free(c);
    free(sums);
    free(take);
    return DRL_FAIL(DRL_ERR_OOM, "max-variance subset: out of memory for %d values", n);
  }
  for (int j = 0; j < n; ++j) ord[j] = (value_index){v[j], j};
  qsort(ord, (size_t)n, sizeof *ord, cmp_desc);

  /* Centring on the mean keeps s2/k - (s1/k)^2 free of cancellation. */
  double mean = 0.0, scale = 0.0;
  for (int j = 0; j < n; ++j) mean += ord[j].v;
  mean /= n;
  for (int j = 0; j < n; ++j) {
    c[j] = ord[j].v - mean;
    scale += c[j] * c[j];
  }
  scale /= n;

  /* top1/top2[a]: sums over the a largest; bot1/bot2[b]: over the b smallest. */
  double *top1 = sums, *top2 = sums + (k + 1), *bot1 = sums + 2 * (k + 1), *bot2 = sums + 3 * (k + 1);
  double *var = sums + 4 * (k + 1);
  top1[0] = top2[0] = bot1[0] = bot2[0] = 0.0;
  for (int a = 1; a <= k; ++a) {
    double x = c[a - 1], y = c[n - a];
    top1[a] = top1[a - 1] + x;
    top2[a] = top2[a - 1] + x * x;
    bot1[a] = bot1[a - 1] + y;
    bot2[a] = bot2[a - 1] + y * y;
  }
  /* The optimum is the a largest and the k - a smallest for some a (PODS). The smallest a whose variance is within
   * 1e-9 * var(all n values) of the maximum wins, so rounding noise between tied subsets never decides. */
  double best = -1.0;
  for (int a = 0; a <= k; ++a) {
    double m1 = (top1[a] + bot1[k - a]) / k;
    var[a] = (top2[a] + bot2[k - a]) / k - m1 * m1;
    if (var[a] > best) best = var[a];
  }
  int best_a = 0;
  while (var[best_a] < best - 1e-9 * scale) ++best_a;
  for (int j = 0; j < best_a; ++j) take[ord[j].i] = 1;
  for (int j = n - (k - best_a); j < n; ++j) take[ord[j].i] = 1;
  int o = 0;
  for (int j = 0; j < n; ++j)
    if (take[j]) out_idx[o++] = j;
  free(ord);
  free(c);
  free(sums);
  free(take);
  return o == k ? DRL_OK : DRL_FAIL(DRL_ERR_INTERNAL, "max-variance subset: picked %d of %d", o, k);
}

static drl_status check_groups(const char *what, int n_groups, int G, int n_keep) {
  if (n_groups < 0 || G < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %d groups of %d rollouts (need groups >= 0, G >= 1)", what, n_groups, G);
  if ((int64_t)n_groups * G > INT_MAX)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %d groups of %d rollouts is too many", what, n_groups, G);
  if (n_keep < 1 || n_keep > G)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: N_s = %d rollouts kept per prompt must be in [1, G = %d]", what, n_keep,
                    G);
  return DRL_OK;
}

drl_status drl_d3s_select_samples(const float *adv, int n_groups, int G, int n_keep, drl_d3s_scope scope,
                                  uint8_t *keep) {
  DRL_TRY(check_groups("D3S sample selection", n_groups, G, n_keep));
  if (scope != DRL_D3S_CROSS && scope != DRL_D3S_INTRA)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S sample selection: unknown scope %d", (int)scope);
  int rows = n_groups * G;
  if (rows == 0) return DRL_OK;
  if (!adv || !keep) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S sample selection: NULL array");
  int total = n_groups * n_keep;
  int *idx = (int *)malloc((size_t)total * sizeof *idx);
  if (!idx) return DRL_FAIL(DRL_ERR_OOM, "D3S sample selection: out of memory");
  memset(keep, 0, (size_t)rows);
  drl_status st = DRL_OK;
  if (scope == DRL_D3S_CROSS) {
    st = drl_d3s_maxvar_subset(adv, rows, total, idx);
    for (int j = 0; st == DRL_OK && j < total; ++j) keep[idx[j]] = 1;
  } else {
    for (int g = 0; st == DRL_OK && g < n_groups; ++g) {
      st = drl_d3s_maxvar_subset(adv + (size_t)g * G, G, n_keep, idx);
      for (int j = 0; st == DRL_OK && j < n_keep; ++j) keep[(size_t)g * G + idx[j]] = 1;
    }
  }
  free(idx);
  return st == DRL_OK ? DRL_OK : drl_fail_context(st, "D3S sample selection");
}

drl_status drl_d3s_pods_select(const float *rewards, int n_groups, int G, int n_keep, int dr_grpo, float eps,
                               uint8_t *keep, float *adv) {
  DRL_TRY(check_groups("PODS selection", n_groups, G, n_keep));
  int rows = n_groups * G;
  if (rows == 0) return DRL_OK;
  if (!rewards || !keep || !adv) return DRL_FAIL(DRL_ERR_INVALID_ARG, "PODS selection: NULL array");
  int *idx = (int *)malloc((size_t)n_keep * sizeof *idx);
  float *r = (float *)malloc(2 * (size_t)n_keep * sizeof *r);
  if (!idx || !r) {
    free(idx);
    free(r);
    return DRL_FAIL(DRL_ERR_OOM, "PODS selection: out of memory");
  }
  float *a = r + n_keep;
  memset(keep, 0, (size_t)rows);
  for (int i = 0; i < rows; ++i) adv[i] = 0.0f;
  drl_status st = DRL_OK;
  for (int g = 0; st == DRL_OK && g < n_groups; ++g) {
    size_t base = (size_t)g * G;
    st = drl_d3s_maxvar_subset(rewards + base, G, n_keep, idx);
    if (st != DRL_OK) break;
    for (int j = 0; j < n_keep; ++j) r[j] = rewards[base + idx[j]];
    st = drl_grpo_advantages(r, 1, n_keep, dr_grpo, eps, a); /* PODS re-normalises on the kept subset */
    for (int j = 0; st == DRL_OK && j < n_keep; ++j) {
      keep[base + idx[j]] = 1;
      adv[base + idx[j]] = a[j];
    }
  }
  free(idx);
  free(r);
  return st == DRL_OK ? DRL_OK : drl_fail_context(st, "PODS selection");
}

/* ---- token level ---- */

int64_t drl_d3s_token_budget(int64_t n, double K) {
  if (n <= 0) return 0;
  double x = K * (double)n;
  int64_t k = (int64_t)ceil(x - 1e-9);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return k;
}

/* The score of candidate (row r, flat n), +0 for any zero so that float and key order agree. */
static drl_status candidate_score(const float *adv, const float *entropy, int r, size_t n, int T, float *score) {
  float s = fabsf(adv[r]) * entropy[n];
  if (!isfinite(s))
    return DRL_FAIL(DRL_ERR_NUMERIC, "D3S token score at row %d, token %d: |%g| * entropy %g is not finite", r,
                    (int)(n % (size_t)T), (double)adv[r], (double)entropy[n]);
  *score = s == 0.0f ? 0.0f : s;
  return DRL_OK;
}

static drl_status check_tokens(const char *what, const float *adv, const float *entropy, int rows, int T) {
  if (rows < 0 || T < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: batch of %d x %d", what, rows, T);
  if ((size_t)rows * (size_t)T > 0 && (!adv || !entropy)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: NULL array", what);
  return DRL_OK;
}

drl_status drl_d3s_token_scores(const float *adv, const float *entropy, const uint8_t *valid, const uint8_t *keep_row,
                                int rows, int T, float *scores, int64_t *m) {
  DRL_TRY(check_tokens("D3S token scores", adv, entropy, rows, T));
  if (!m || ((size_t)rows * (size_t)T > 0 && !scores))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token scores: NULL output");
  int64_t o = 0;
  for (int r = 0; r < rows; ++r) {
    if (keep_row && !keep_row[r]) continue;
    for (int t = 0; t < T; ++t) {
      size_t n = (size_t)r * T + t;
      if (valid && !valid[n]) continue;
      DRL_TRY(candidate_score(adv, entropy, r, n, T, &scores[o]));
      ++o;
    }
  }
  *m = o;
  return DRL_OK;
}

/* Order-preserving map of finite floats to unsigned keys (larger float, larger key). */
static uint32_t score_key(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static float key_score(uint32_t k) {
  uint32_t u = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

drl_status drl_d3s_token_cut(const float *scores, int64_t m, int64_t k, drl_d3s_cut *cut) {
  if (!cut) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token cut: NULL output");
  if (m < 0 || k < 0 || k > m)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token cut: cannot keep %lld of %lld tokens", (long long)k, (long long)m);
  cut->score = INFINITY;
  cut->index = -1;
  if (k == 0) return DRL_OK;
  if (!scores) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token cut: NULL scores");
  for (int64_t j = 0; j < m; ++j)
    if (!isfinite(scores[j]))
      return DRL_FAIL(DRL_ERR_NUMERIC, "D3S token cut: score %lld is %g", (long long)j, (double)scores[j]);
  /* Most significant byte first: find the key of the k-th largest; `above` counts keys beyond the current prefix. */
  uint32_t prefix = 0, pmask = 0;
  int64_t above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    int64_t hist[256] = {0};
    for (int64_t j = 0; j < m; ++j) {
      uint32_t key = score_key(scores[j] == 0.0f ? 0.0f : scores[j]);
      if ((key & pmask) == prefix) hist[(key >> shift) & 0xFFu]++;
    }
    int b = 255;
    for (; b > 0 && above + hist[b] < k; --b) above += hist[b];
    prefix |= (uint32_t)b << shift;
    pmask |= 0xFFu << shift;
  }
  /* Among the keys equal to the k-th largest, the (k - above)-th by ordinal is the last one kept. */
  int64_t need = k - above;
  for (int64_t j = 0; j < m; ++j)
    if (score_key(scores[j] == 0.0f ? 0.0f : scores[j]) == prefix && --need == 0) {
      cut->score = key_score(prefix);
      cut->index = j;
      return DRL_OK;
    }
  return DRL_FAIL(DRL_ERR_INTERNAL, "D3S token cut: radix select lost the %lld-th score", (long long)k);
}

drl_status drl_d3s_apply_cut(const float *adv, const float *entropy, const uint8_t *valid, const uint8_t *keep_row,
                             int rows, int T, int64_t first, const drl_d3s_cut *cut, uint8_t *mask, int64_t *kept) {
  DRL_TRY(check_tokens("D3S token mask", adv, entropy, rows, T));
  if (!cut || ((size_t)rows * (size_t)T > 0 && !mask)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token mask: NULL");
  int64_t j = first, nk = 0;
  for (int r = 0; r < rows; ++r) {
    int row_on = !keep_row || keep_row[r];
    for (int t = 0; t < T; ++t) {
      size_t n = (size_t)r * T + t;
      mask[n] = 0;
      if (!row_on || (valid && !valid[n])) continue;
      float s = 0.0f;
      DRL_TRY(candidate_score(adv, entropy, r, n, T, &s));
      if (s > cut->score || (s == cut->score && j <= cut->index)) {
        mask[n] = 1;
        ++nk;
      }
      ++j;
    }
  }
  if (kept) *kept = nk;
  return DRL_OK;
}

drl_status drl_d3s_select_tokens(const float *adv, const float *entropy, const uint8_t *valid,
                                 const uint8_t *keep_row, int rows, int T, double K, drl_d3s_token_scope scope,
                                 uint8_t *mask, int64_t *kept) {
  DRL_TRY(check_tokens("D3S token selection", adv, entropy, rows, T));
  if (!(K > 0.0 && K <= 1.0)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token selection: K = %g must be in (0, 1]", K);
  if (scope != DRL_D3S_TOKENS_BATCH && scope != DRL_D3S_TOKENS_SEQUENCE)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token selection: unknown scope %d", (int)scope);
  size_t n_all = (size_t)rows * (size_t)T;
  if (kept) *kept = 0;
  if (n_all == 0) return DRL_OK;
  if (!mask) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S token selection: NULL mask");
  float *scores = (float *)malloc(n_all * sizeof *scores);
  if (!scores) return DRL_FAIL(DRL_ERR_OOM, "D3S token selection: out of memory for %zu scores", n_all);
  drl_status st = DRL_OK;
  int64_t total = 0;
  int failed_row = 0;
  /* Sequence scope is the batch procedure on one row at a time. */
  int n_parts = scope == DRL_D3S_TOKENS_BATCH ? 1 : rows, part_rows = scope == DRL_D3S_TOKENS_BATCH ? rows : 1;
  for (int p = 0; st == DRL_OK && p < n_parts; ++p) {
    size_t off = (size_t)p * T;
    const float *a = adv + p;
    const float *h = entropy + off;
    const uint8_t *v = valid ? valid + off : NULL, *kr = keep_row ? keep_row + p : NULL;
    int64_t m = 0, nk = 0;
    drl_d3s_cut cut;
    st = drl_d3s_token_scores(a, h, v, kr, part_rows, T, scores, &m);
    if (st == DRL_OK) st = drl_d3s_token_cut(scores, m, drl_d3s_token_budget(m, K), &cut);
    if (st == DRL_OK) st = drl_d3s_apply_cut(a, h, v, kr, part_rows, T, 0, &cut, mask + off, &nk);
    total += nk;
    failed_row = p;
  }
  free(scores);
  if (st != DRL_OK && scope == DRL_D3S_TOKENS_SEQUENCE)
    return drl_fail_context(st, "D3S token selection (sequence scope, row %d)", failed_row);
  if (st != DRL_OK) return drl_fail_context(st, "D3S token selection");
  if (kept) *kept = total;
  return DRL_OK;
}

/* ---- schedule and metrics ---- */

drl_status drl_d3s_schedule_at(const drl_d3s_schedule *s, int64_t step, int64_t total, int *n_keep, double *K) {
  if (!s || !n_keep || !K) return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S schedule: NULL argument");
  if (s->n_init < 1 || s->n_final < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S schedule: N_s from %d to %d must be >= 1", s->n_init, s->n_final);
  if (!(s->k_init > 0.0 && s->k_init <= 1.0) || !(s->k_final > 0.0 && s->k_final <= 1.0))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "D3S schedule: K from %g to %g must be in (0, 1]", s->k_init, s->k_final);
  double p = 0.0;
  if (s->enabled && total > 0) {
    p = (double)step / (double)total;
    p = p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
  }
  *n_keep = (int)lround((1.0 - p) * s->n_init + p * s->n_final);
  *K = (1.0 - p) * s->k_init + p * s->k_final;
  return DRL_OK;
}

void drl_d3s_measure(const float *adv, const uint8_t *keep, const uint8_t *valid, const uint8_t *mask, int rows, int T,
                     drl_d3s_stats *stats) {
  drl_d3s_stats s = {0};
  for (int r = 0; r < rows; ++r) {
    s.samples++;
    if (keep && !keep[r]) continue;
    s.kept_samples++;
    s.useful_samples += adv && adv[r] != 0.0f;
    for (int t = 0; t < T; ++t) {
      size_t n = (size_t)r * T + t;
      int is_valid = !valid || valid[n];
      s.candidate_tokens += is_valid;
      s.kept_tokens += mask ? mask[n] != 0 : is_valid;
    }
  }
  s.usefulness = s.kept_samples > 0 ? (double)s.useful_samples / (double)s.kept_samples : 0.0;
  if (stats) *stats = s;
}
