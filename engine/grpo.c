#include "grpo.h"

#include <math.h>
#include <stddef.h>

#include "kernels/status.h"

/* verl's clamps: the log-ratio and the KL log-ratio to +-20, the k3 value to [-10, 10]. */
#define LOG_RATIO_CLAMP 20.0
#define KL_CLAMP 10.0
/* verl's gspo: the sequence's log-ratio is clamped above only. */
#define GSPO_LOG_RATIO_MAX 10.0

drl_status drl_grpo_advantages(const float *rewards, int n_groups, int G, int dr_grpo, float eps, float *adv) {
  if (n_groups < 0 || G < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO advantages: %d groups of %d rollouts (need groups >= 0, G >= 1)",
                    n_groups, G);
  if (!(eps >= 0.0f) || !isfinite(eps))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO advantages: eps %g must be finite and >= 0", (double)eps);
  if (n_groups > 0 && (!rewards || !adv)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO advantages: NULL array");
  for (int g = 0; g < n_groups; ++g) {
    const float *r = rewards + (size_t)g * G;
    float *a = adv + (size_t)g * G;
    for (int i = 0; i < G; ++i)
      if (!isfinite(r[i]))
        return DRL_FAIL(DRL_ERR_NUMERIC, "GRPO advantages: reward %d of group %d is %g", i, g, (double)r[i]);
    double mean = 0.0, std = 1.0; /* verl: a group of one has mean 0 and std 1 */
    if (G > 1) {
      double s = 0.0;
      for (int i = 0; i < G; ++i) s += r[i];
      mean = s / G;
      double ss = 0.0;
      for (int i = 0; i < G; ++i) ss += (r[i] - mean) * (r[i] - mean);
      std = sqrt(ss / (G - 1)); /* Bessel, as torch.std */
    }
    double den = std + (double)eps;
    for (int i = 0; i < G; ++i) {
      double d = r[i] - mean;
      /* d is exactly 0 when all rewards are equal (G floats sum exactly in double), so 0/0 cannot arise from eps = 0 */
      a[i] = (float)(dr_grpo ? d : (den > 0.0 ? d / den : 0.0));
    }
  }
  return DRL_OK;
}

/* Rows with at least one loss token. */
static int64_t count_seqs(int rows, int T, const uint8_t *mask) {
  int64_t n = 0;
  for (int r = 0; r < rows; ++r) {
    const uint8_t *m = mask + (size_t)r * T;
    for (int t = 0; t < T; ++t)
      if (m[t]) {
        ++n;
        break;
      }
  }
  return n;
}

static int64_t count_tokens(int rows, int T, const uint8_t *mask) {
  int64_t n = 0;
  for (size_t i = 0; i < (size_t)rows * (size_t)T; ++i) n += mask[i] != 0;
  return n;
}

double drl_grpo_loss_denom(const drl_grpo_loss_cfg *cfg, int rows, int T, const uint8_t *mask) {
  if (rows <= 0 || T <= 0 || !mask || cfg->agg == DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM) return 0.0;
  if (cfg->agg == DRL_AGG_TOKEN_MEAN) return (double)count_tokens(rows, T, mask);
  return (double)(cfg->count_empty_rows ? rows : count_seqs(rows, T, mask));
}

/* One token's surrogate and k3 KL with their derivatives with respect to the new log-prob. Where the loss is flat
 * (a clamp or clip is the active branch) the derivative is 0; at an exact tie between branches the unclipped branch's
 * derivative is taken, and a clamp passes the gradient on its boundary (torch.clamp's convention). */
typedef struct token_terms {
  double pg, dpg, kl, dkl, ratio;
  int clipped, dual;
} token_terms;

static token_terms token_loss(const drl_grpo_loss_cfg *cfg, double lp, double old, double a) {
  token_terms o = {0};
  double raw = lp - old;
  double lr = raw < -LOG_RATIO_CLAMP ? -LOG_RATIO_CLAMP : (raw > LOG_RATIO_CLAMP ? LOG_RATIO_CLAMP : raw);
  double dlr = (raw >= -LOG_RATIO_CLAMP && raw <= LOG_RATIO_CLAMP) ? 1.0 : 0.0;
  double rho = exp(lr);
  double lo = 1.0 - (double)cfg->clip_low, hi = 1.0 + (double)cfg->clip_high;
  double rho_c = rho < lo ? lo : (rho > hi ? hi : rho);
  double l1 = -a * rho, l2 = -a * rho_c;
  double l = l1, dl = -a * rho * dlr;
  if (l2 > l1) { /* clipped branch active: rho is outside [lo, hi], so the clamp is flat */
    l = l2;
    dl = 0.0;
    o.clipped = 1;
  }
  if (a < 0.0) {
    double l3 = -a * (double)cfg->dual_clip;
    if (l > l3) {
      l = l3;
      dl = 0.0;
      o.dual = 1;
    }
  }
  o.pg = l;
  o.dpg = dl;
  o.ratio = rho;
  return o;
}

/* GSPO's terms for a token of a row whose mean log-ratio over its loss tokens is seq_lr (verl's
 * compute_policy_loss_gspo: the sequence ratio times pi / sg(pi), so each token's derivative is -A s; the log clamped
 * above at 10, passing the gradient on its boundary; a tie between the branches takes the unclipped derivative). */
static token_terms gspo_token_loss(const drl_grpo_loss_cfg *cfg, double seq_lr, double a) {
  token_terms o = {0};
  double lr = seq_lr > GSPO_LOG_RATIO_MAX ? GSPO_LOG_RATIO_MAX : seq_lr;
  double s = exp(lr);
  double lo = 1.0 - (double)cfg->clip_low, hi = 1.0 + (double)cfg->clip_high;
  double s_c = s < lo ? lo : (s > hi ? hi : s);
  double l1 = -a * s, l2 = -a * s_c;
  o.ratio = s;
  if (l2 > l1) {
    o.pg = l2;
    o.clipped = 1;
  } else {
    o.pg = l1;
    o.dpg = seq_lr <= GSPO_LOG_RATIO_MAX ? -a * s : 0.0;
  }
  return o;
}

/* The k3 KL to the reference of one token and its derivative (verl's kl_penalty "low_var_kl"). */
static void kl_terms(double lp, double ref, token_terms *o) {
  double draw = ref - lp;
  double d = draw < -LOG_RATIO_CLAMP ? -LOG_RATIO_CLAMP : (draw > LOG_RATIO_CLAMP ? LOG_RATIO_CLAMP : draw);
  double dd = (draw >= -LOG_RATIO_CLAMP && draw <= LOG_RATIO_CLAMP) ? -1.0 : 0.0; /* d(d)/d(lp) */
  double ed = exp(d);
  double kl = ed - d - 1.0; /* >= 0, so only the upper clamp can bind */
  double dkl = (ed - 1.0) * dd;
  if (kl > KL_CLAMP) {
    kl = KL_CLAMP;
    dkl = 0.0;
  }
  o->kl = kl;
  o->dkl = dkl;
}

static drl_status check_cfg(const drl_grpo_loss_cfg *cfg) {
  if (!cfg) return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: NULL config");
  if (!(cfg->clip_low >= 0.0f && cfg->clip_low < 1.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: clip_low %g must be in [0, 1)", (double)cfg->clip_low);
  if (!(cfg->clip_high >= 0.0f) || !isfinite(cfg->clip_high))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: clip_high %g must be finite and >= 0", (double)cfg->clip_high);
  if (!(cfg->dual_clip > 1.0f) || !isfinite(cfg->dual_clip))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: dual_clip %g must be finite and > 1", (double)cfg->dual_clip);
  if (!(cfg->kl_beta >= 0.0f) || !isfinite(cfg->kl_beta))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: kl_beta %g must be finite and >= 0", (double)cfg->kl_beta);
  if ((int)cfg->agg < (int)DRL_AGG_TOKEN_MEAN || (int)cfg->agg > (int)DRL_AGG_DR_GRPO_NORM)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: unknown aggregation %d", (int)cfg->agg);
  if (cfg->loss != DRL_LOSS_GRPO && cfg->loss != DRL_LOSS_GSPO)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: unknown policy loss %d", (int)cfg->loss);
  if ((cfg->agg == DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM || cfg->agg == DRL_AGG_DR_GRPO_NORM) && cfg->norm_len < 1)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: seq_mean_token_sum_norm and dr_grpo_norm need norm_len >= 1 (got "
                    "%d)", cfg->norm_len);
  return DRL_OK;
}

drl_status drl_grpo_loss(const drl_grpo_loss_cfg *cfg, int rows, int T, const float *logprob, const float *old_logprob,
                         const float *ref_logprob, const float *adv, const uint8_t *mask, double denom,
                         float *dlogprob, drl_grpo_stats *stats) {
  DRL_TRY(check_cfg(cfg));
  if (rows < 0 || T < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: batch of %d x %d", rows, T);
  size_t n_all = (size_t)rows * (size_t)T;
  if (n_all > 0 && (!logprob || !old_logprob || !adv || !mask || !dlogprob))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: NULL array");
  if (cfg->kl_beta > 0.0f && !ref_logprob)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: kl_beta %g needs reference log-probs", (double)cfg->kl_beta);
  if (!(denom >= 0.0) || !isfinite(denom))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "GRPO loss: denominator %g must be finite and >= 0", denom);
  double local = drl_grpo_loss_denom(cfg, rows, T, mask);
  if (cfg->agg == DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM) denom = local = 1.0; /* verl: a constant, whatever the batch */
  if (denom == 0.0) denom = local;
  if (denom < local)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "GRPO loss: denominator %g is below this call's own count %g (it must cover the whole batch)",
                    denom, local);

  drl_grpo_stats s = {0};
  double ratio_sum = 0.0;
  for (int r = 0; r < rows; ++r) {
    size_t base = (size_t)r * T;
    const uint8_t *m = mask + base;
    int64_t n_row = 0;
    for (int t = 0; t < T; ++t) n_row += m[t] != 0;
    if (n_row == 0) {
      for (int t = 0; t < T; ++t) dlogprob[base + t] = 0.0f;
      continue;
    }
    if (!isfinite(adv[r])) return DRL_FAIL(DRL_ERR_NUMERIC, "GRPO loss: advantage of row %d is %g", r, (double)adv[r]);
    double c = cfg->agg == DRL_AGG_SEQ_MEAN_TOKEN_MEAN                                      ? (double)n_row
               : cfg->agg == DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM || cfg->agg == DRL_AGG_DR_GRPO_NORM ? (double)cfg->norm_len
                                                                                            : 1.0;
    double w = 1.0 / (denom * c); /* denom >= local >= 1 here */
    double seq_lr = 0.0;          /* GSPO: the row's mean log-ratio */
    for (int t = 0; t < T; ++t) {
      size_t n = base + t;
      if (!m[t]) continue;
      const float *ref = ref_logprob ? ref_logprob + n : NULL;
      if (!isfinite(logprob[n]) || !isfinite(old_logprob[n]) || (ref && !isfinite(*ref)))
        return DRL_FAIL(DRL_ERR_NUMERIC, "GRPO loss: non-finite log-prob at row %d, token %d (new %g, old %g, ref %g)",
                        r, t, (double)logprob[n], (double)old_logprob[n], ref ? (double)*ref : 0.0);
      seq_lr += (double)logprob[n] - (double)old_logprob[n];
    }
    seq_lr /= (double)n_row;
    for (int t = 0; t < T; ++t) {
      size_t n = base + t;
      if (!m[t]) {
        dlogprob[n] = 0.0f;
        continue;
      }
      token_terms o = cfg->loss == DRL_LOSS_GSPO ? gspo_token_loss(cfg, seq_lr, adv[r])
                                                 : token_loss(cfg, logprob[n], old_logprob[n], adv[r]);
      if (ref_logprob) kl_terms(logprob[n], ref_logprob[n], &o);
      s.pg_loss += w * o.pg;
      s.kl += w * o.kl;
      dlogprob[n] = (float)(w * (o.dpg + (double)cfg->kl_beta * o.dkl));
      ratio_sum += o.ratio;
      s.clipped += o.clipped;
      s.dual_clipped += o.dual;
      s.tokens++;
    }
  }
  s.loss = s.pg_loss + (double)cfg->kl_beta * s.kl;
  if (s.tokens > 0) {
    s.clip_frac = (double)s.clipped / (double)s.tokens;
    s.dual_clip_frac = (double)s.dual_clipped / (double)s.tokens;
    s.ratio_mean = ratio_sum / (double)s.tokens;
  }
  if (stats) *stats = s;
  return DRL_OK;
}

void drl_grpo_stats_merge(drl_grpo_stats *acc, const drl_grpo_stats *s) {
  int64_t n = acc->tokens + s->tokens;
  double ratio_sum = acc->ratio_mean * (double)acc->tokens + s->ratio_mean * (double)s->tokens;
  acc->loss += s->loss;
  acc->pg_loss += s->pg_loss;
  acc->kl += s->kl;
  acc->tokens = n;
  acc->clipped += s->clipped;
  acc->dual_clipped += s->dual_clipped;
  acc->clip_frac = n > 0 ? (double)acc->clipped / (double)n : 0.0;
  acc->dual_clip_frac = n > 0 ? (double)acc->dual_clipped / (double)n : 0.0;
  acc->ratio_mean = n > 0 ? ratio_sum / (double)n : 0.0;
}
