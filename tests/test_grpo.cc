// GRPO core: group advantages, the clipped surrogate with dual clip, k3 KL, the four aggregations, against values
// worked out by hand from the formulas of the research note (Part A) and against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include <jansson.h>

#include "engine/config.h"
#include "engine/grpo.h"
}

namespace {

const double kEps = 1e-6;

drl_grpo_loss_cfg base_cfg(drl_loss_agg agg = DRL_AGG_TOKEN_MEAN) {
  drl_grpo_loss_cfg c;
  c.clip_low = 0.2f;
  c.clip_high = 0.28f;
  c.dual_clip = 3.0f;
  c.kl_beta = 0.0f;
  c.agg = agg;
  c.norm_len = 0;
  c.loss = DRL_LOSS_GRPO;
  c.count_empty_rows = 0;
  return c;
}

// One token: returns the loss, writes the gradient and the stats.
double one_token(const drl_grpo_loss_cfg &cfg, double ratio, float adv, float *grad, drl_grpo_stats *st,
                 const float *ref = nullptr, float lp = 0.0f) {
  float old = (float)(lp - std::log(ratio));
  uint8_t m = 1;
  drl_grpo_stats s;
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, ref, &adv, &m, 0.0, grad, &s), DRL_OK) << last_error();
  if (st) *st = s;
  return s.loss;
}

TEST(GrpoAdvantages, HandValues) {
  // {1, 0, 0, 1}: mean 0.5, Bessel std sqrt(1/3); {0, 1, 2}-style groups are checked below.
  const float r[4] = {1, 0, 0, 1};
  float a[4];
  ASSERT_EQ(drl_grpo_advantages(r, 1, 4, 0, 1e-6f, a), DRL_OK);
  const double plus = 0.8660239037870368;  // 0.5 / (sqrt(1/3) + 1e-6)
  EXPECT_NEAR(a[0], plus, 1e-6);
  EXPECT_NEAR(a[1], -plus, 1e-6);
  EXPECT_NEAR(a[2], -plus, 1e-6);
  EXPECT_NEAR(a[3], plus, 1e-6);

  // Two groups of three: {0, 1, 2} (mean 1, std 1) and {3, 3, 6} (mean 4, std sqrt(3)).
  const float r2[6] = {0, 1, 2, 3, 3, 6};
  float a2[6];
  ASSERT_EQ(drl_grpo_advantages(r2, 2, 3, 0, 1e-6f, a2), DRL_OK);
  EXPECT_NEAR(a2[0], -1.0 / (1.0 + kEps), 1e-7);
  EXPECT_EQ(a2[1], 0.0f);
  EXPECT_NEAR(a2[2], 1.0 / (1.0 + kEps), 1e-7);
  EXPECT_NEAR(a2[3], -1.0 / (std::sqrt(3.0) + kEps), 1e-7);
  EXPECT_NEAR(a2[5], 2.0 / (std::sqrt(3.0) + kEps), 1e-7);
}

TEST(GrpoAdvantages, GroupOfOneHasMeanZeroStdOne) {
  const float r[2] = {0.7f, -2.0f};
  float a[2];
  ASSERT_EQ(drl_grpo_advantages(r, 2, 1, 0, 1e-6f, a), DRL_OK);
  EXPECT_NEAR(a[0], 0.7 / (1.0 + kEps), 1e-7);
  EXPECT_NEAR(a[1], -2.0 / (1.0 + kEps), 1e-7);
  ASSERT_EQ(drl_grpo_advantages(r, 2, 1, 1, 1e-6f, a), DRL_OK);  // Dr.GRPO: r - 0
  EXPECT_EQ(a[0], 0.7f);
  EXPECT_EQ(a[1], -2.0f);
}

TEST(GrpoAdvantages, EqualRewardsGiveExactZerosEvenWithoutEps) {
  const float r[5] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
  float a[5];
  for (float eps : {1e-6f, 0.0f})
    for (int dr : {0, 1}) {
      ASSERT_EQ(drl_grpo_advantages(r, 1, 5, dr, eps, a), DRL_OK);
      for (float x : a) EXPECT_EQ(x, 0.0f) << "eps " << eps << " dr " << dr;
    }
}

TEST(GrpoAdvantages, DrGrpoIsRewardMinusMean) {
  const float r[4] = {1, 0, 0, 1};
  float a[4];
  ASSERT_EQ(drl_grpo_advantages(r, 1, 4, 1, 1e-6f, a), DRL_OK);
  EXPECT_EQ(a[0], 0.5f);
  EXPECT_EQ(a[1], -0.5f);
  const float r2[3] = {2, 4, 9};
  float a2[3];
  ASSERT_EQ(drl_grpo_advantages(r2, 1, 3, 1, 1e-6f, a2), DRL_OK);
  EXPECT_EQ(a2[0], -3.0f);
  EXPECT_EQ(a2[1], -1.0f);
  EXPECT_EQ(a2[2], 4.0f);
}

TEST(GrpoAdvantages, RejectsBadInput) {
  const float r[2] = {1, NAN};
  float a[2];
  EXPECT_EQ(drl_grpo_advantages(r, 1, 0, 0, 1e-6f, a), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_grpo_advantages(r, 1, 2, 0, -1.0f, a), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_grpo_advantages(r, 1, 2, 0, 1e-6f, a), DRL_ERR_NUMERIC);
  EXPECT_ERROR_HAS("reward 1 of group 0");
  EXPECT_EQ(drl_grpo_advantages(r, 0, 2, 0, 1e-6f, a), DRL_OK);  // no groups: nothing to do
}

// Each branch of A.2 on one token (clip_low 0.2, clip_high 0.28, c 3): loss value, gradient, clip counters.
TEST(GrpoLoss, SurrogateBranches) {
  drl_grpo_loss_cfg cfg = base_cfg();
  float g;
  drl_grpo_stats s;
  struct Case {
    double ratio;
    float adv;
    double loss, grad;
    int clipped, dual;
    const char *what;
  } cases[] = {
      {1.1, 1.5f, -1.65, -1.65, 0, 0, "unclipped, A > 0"},
      {1.5, 2.0f, -2.56, 0.0, 1, 0, "clipped high, A > 0: -A (1 + 0.28), flat"},
      {0.5, 2.0f, -1.0, -1.0, 0, 0, "ratio below 1 - eps with A > 0: the clip is not the active branch"},
      {0.5, -1.0f, 0.8, 0.0, 1, 0, "clipped low, A < 0: -A (1 - 0.2), flat"},
      {1.2, -2.0f, 2.4, 2.4, 0, 0, "unclipped, A < 0"},
      {1.5, -1.0f, 1.5, 1.5, 0, 0, "ratio above 1 + eps with A < 0: unclipped (pessimistic max)"},
      {4.0, -1.0f, 3.0, 0.0, 0, 1, "dual clip: min(4, c = 3) with A < 0, flat"},
      {4.0, 1.0f, -1.28, 0.0, 1, 0, "no dual clip for A > 0"},
      {0.9, 0.0f, 0.0, 0.0, 0, 0, "A = 0"},
  };
  for (const Case &c : cases) {
    double loss = one_token(cfg, c.ratio, c.adv, &g, &s);
    EXPECT_NEAR(loss, c.loss, 2e-6) << c.what;
    EXPECT_NEAR(g, c.grad, 2e-6) << c.what;
    EXPECT_EQ(s.clipped, c.clipped) << c.what;
    EXPECT_EQ(s.dual_clipped, c.dual) << c.what;
    EXPECT_NEAR(s.ratio_mean, c.ratio, 1e-6) << c.what;
    EXPECT_EQ(s.tokens, 1);
  }
}

TEST(GrpoLoss, LogRatioIsClampedAt20) {
  drl_grpo_loss_cfg cfg = base_cfg();
  float lp = 0.0f, old = 30.0f, adv = 1.0f, g = 1.0f;
  uint8_t m = 1;
  drl_grpo_stats s;
  ASSERT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &adv, &m, 0.0, &g, &s), DRL_OK);
  EXPECT_NEAR(s.loss, -std::exp(-20.0), 1e-15);  // ratio exp(-20), not exp(-30)
  EXPECT_EQ(g, 0.0f);                             // the clamp is flat
  EXPECT_NEAR(s.ratio_mean, std::exp(-20.0), 1e-15);
}

// k3 KL (A.3) with beta = 0.1 and A = 0, so the loss is beta * kl and the gradient beta * dkl/dlogp.
TEST(GrpoLoss, K3KlValuesAndGradient) {
  drl_grpo_loss_cfg cfg = base_cfg();
  cfg.kl_beta = 0.1f;
  struct Case {
    float d;  // ref - logp
    double kl, dkl;
  } cases[] = {
      {0.5f, 0.1487212707001282, -0.6487212707001282},  // e^d - d - 1, derivative 1 - e^d
      {-1.0f, 0.36787944117144233, 0.6321205588285577},
      {0.0f, 0.0, 0.0},
      {3.0f, 10.0, 0.0},    // e^3 - 4 = 16.1 clamped to 10, flat
      {-25.0f, 10.0, 0.0},  // d clamped to -20: e^-20 + 19 > 10, clamped, flat
  };
  for (const Case &c : cases) {
    float lp = -1.0f, ref = lp + c.d, g;
    drl_grpo_stats s;
    one_token(cfg, 1.0, 0.0f, &g, &s, &ref, lp);
    EXPECT_NEAR(s.kl, c.kl, 1e-6) << "d = " << c.d;
    EXPECT_NEAR(s.loss, 0.1 * c.kl, 1e-7) << "d = " << c.d;
    EXPECT_NEAR(g, 0.1 * c.dkl, 1e-7) << "d = " << c.d;
    EXPECT_EQ(s.pg_loss, 0.0);
  }
  // The KL adds to the surrogate: unclipped A = 1.5, ratio 1.1 with d = 0.5.
  float lp = -1.0f, ref = -0.5f, g;
  drl_grpo_stats s;
  one_token(cfg, 1.1, 1.5f, &g, &s, &ref, lp);
  EXPECT_NEAR(s.loss, -1.65 + 0.1 * 0.1487212707001282, 2e-6);
  EXPECT_NEAR(g, -1.65 + 0.1 * -0.6487212707001282, 2e-6);
  // A reference is required when beta > 0, optional (a metric) when beta = 0.
  float old = lp, adv = 1.0f;
  uint8_t m = 1;
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &adv, &m, 0.0, &g, &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("reference");
  cfg.kl_beta = 0.0f;
  ASSERT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, &ref, &adv, &m, 0.0, &g, &s), DRL_OK);
  EXPECT_NEAR(s.kl, 0.1487212707001282, 1e-6);
  EXPECT_NEAR(s.loss, -1.0, 1e-7);
}

// A ragged batch of 3 rows x 4: row 0 has 3 loss tokens (ratios 1, 1.1, 0.9; A = 1), row 1 one (ratio 1.2;
// A = -2), row 2 none. Masked slots hold NaN, which must be ignored. Per-token losses: -1, -1.1, -0.9 | 2.4.
struct Ragged {
  std::vector<float> lp, old, adv{1.0f, -2.0f, 5.0f};
  std::vector<uint8_t> mask{1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  Ragged() : lp(12, NAN), old(12, NAN) {
    const double ratio[4] = {1.0, 1.1, 0.9, 1.2};
    const int at[4] = {0, 1, 2, 4};
    for (int i = 0; i < 4; ++i) {
      lp[at[i]] = -0.5f;
      old[at[i]] = (float)(-0.5 - std::log(ratio[i]));
    }
  }
};

TEST(GrpoLoss, AggregationModesOnRaggedBatch) {
  Ragged b;
  const double tok[4] = {-1.0, -1.1, -0.9, 2.4};
  const int at[4] = {0, 1, 2, 4};
  struct Case {
    drl_loss_agg agg;
    double loss;
    double w[4];  // weight of each loss token
  } cases[] = {
      {DRL_AGG_TOKEN_MEAN, -0.6 / 4, {0.25, 0.25, 0.25, 0.25}},                          // / 4 tokens
      {DRL_AGG_SEQ_MEAN_TOKEN_MEAN, (-1.0 + 2.4) / 2, {1.0 / 6, 1.0 / 6, 1.0 / 6, 0.5}},  // / (2 seqs * len)
      {DRL_AGG_SEQ_MEAN_TOKEN_SUM, (-3.0 + 2.4) / 2, {0.5, 0.5, 0.5, 0.5}},              // / 2 seqs
      {DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM, (-3.0 + 2.4) / 4, {0.25, 0.25, 0.25, 0.25}},      // / L_max 4 (verl)
      {DRL_AGG_DR_GRPO_NORM, (-3.0 + 2.4) / 8, {0.125, 0.125, 0.125, 0.125}},             // / (2 seqs * L_max 4)
  };
  for (const Case &c : cases) {
    drl_grpo_loss_cfg cfg = base_cfg(c.agg);
    cfg.norm_len = 4;
    if (c.agg == DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM) {  // a constant denominator: nothing below depends on counts
      std::vector<float> g(12);
      drl_grpo_stats s;
      ASSERT_EQ(drl_grpo_loss(&cfg, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), 0.0,
                              g.data(), &s),
                DRL_OK);
      EXPECT_NEAR(s.loss, c.loss, 1e-6);
      for (int i = 0; i < 4; ++i) EXPECT_NEAR(g[at[i]], c.w[i] * tok[i], 1e-6);
      EXPECT_EQ(drl_grpo_loss_denom(&cfg, 3, 4, b.mask.data()), 0.0);
      continue;
    }
    std::vector<float> g(12, 7.0f);
    drl_grpo_stats s;
    ASSERT_EQ(drl_grpo_loss(&cfg, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), 0.0,
                            g.data(), &s),
              DRL_OK)
        << last_error();
    EXPECT_NEAR(s.loss, c.loss, 1e-6) << "agg " << c.agg;
    EXPECT_NEAR(s.pg_loss, c.loss, 1e-6);
    EXPECT_EQ(s.tokens, 4);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(g[at[i]], c.w[i] * tok[i], 1e-6) << "agg " << c.agg << " token " << at[i];
    for (int n = 0; n < 12; ++n)
      if (!b.mask[n]) {
        EXPECT_EQ(g[n], 0.0f) << "masked slot " << n;
      }
    // An explicit batch-wide denominator twice the local count halves everything.
    double local = drl_grpo_loss_denom(&cfg, 3, 4, b.mask.data());
    EXPECT_EQ(local, c.agg == DRL_AGG_TOKEN_MEAN ? 4.0 : 2.0);
    if (c.agg != DRL_AGG_TOKEN_MEAN) {  // counting the row without a loss token too (verl's and TRL's convention)
      drl_grpo_loss_cfg all = cfg;
      all.count_empty_rows = 1;
      EXPECT_EQ(drl_grpo_loss_denom(&all, 3, 4, b.mask.data()), 3.0);
      drl_grpo_stats s3;
      ASSERT_EQ(drl_grpo_loss(&all, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), 0.0,
                              g.data(), &s3),
                DRL_OK);
      EXPECT_NEAR(s3.loss, c.loss * 2 / 3, 1e-6);
    }
    drl_grpo_stats s2;
    ASSERT_EQ(drl_grpo_loss(&cfg, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), 2 * local,
                            g.data(), &s2),
              DRL_OK);
    EXPECT_NEAR(s2.loss, c.loss / 2, 1e-6);
    EXPECT_NEAR(g[4], c.w[3] * tok[3] / 2, 1e-6);
    // A denominator below the call's own count is a caller bug.
    EXPECT_EQ(drl_grpo_loss(&cfg, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), local - 1,
                            g.data(), &s2),
              DRL_ERR_INVALID_ARG);
    EXPECT_ERROR_HAS("whole batch");
  }
}

// Minibatches with the batch-wide denominator add up to the whole batch: loss, gradients and merged stats.
TEST(GrpoLoss, MinibatchesWithGlobalDenominatorSumToTheBatch) {
  Ragged b;
  for (int agg = 0; agg < 5; ++agg) {
    drl_grpo_loss_cfg cfg = base_cfg((drl_loss_agg)agg);
    cfg.norm_len = 4;
    std::vector<float> g_all(12), g_mb(12);
    drl_grpo_stats all, s0, s1;
    ASSERT_EQ(drl_grpo_loss(&cfg, 3, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), 0.0,
                            g_all.data(), &all),
              DRL_OK);
    // minibatch 0 = row 0, minibatch 1 = rows 1 and 2
    double D = drl_grpo_loss_denom(&cfg, 1, 4, b.mask.data()) + drl_grpo_loss_denom(&cfg, 2, 4, &b.mask[4]);
    ASSERT_EQ(drl_grpo_loss(&cfg, 1, 4, b.lp.data(), b.old.data(), nullptr, b.adv.data(), b.mask.data(), D,
                            g_mb.data(), &s0),
              DRL_OK);
    ASSERT_EQ(drl_grpo_loss(&cfg, 2, 4, &b.lp[4], &b.old[4], nullptr, &b.adv[1], &b.mask[4], D, &g_mb[4], &s1),
              DRL_OK);
    drl_grpo_stats merged = s0;
    drl_grpo_stats_merge(&merged, &s1);
    EXPECT_NEAR(merged.loss, all.loss, 1e-12) << "agg " << agg;
    EXPECT_EQ(merged.tokens, all.tokens);
    EXPECT_NEAR(merged.ratio_mean, all.ratio_mean, 1e-12);
    for (int n = 0; n < 12; ++n) EXPECT_EQ(g_mb[n], g_all[n]) << "agg " << agg << " slot " << n;
  }
}

// Clip fraction over a batch of the hand cases: only the tokens whose clipped branch is active count.
TEST(GrpoLoss, ClipFractionCountsOnlyActiveClips) {
  const double ratio[8] = {1.1, 1.5, 0.5, 0.5, 1.2, 1.5, 4.0, 0.3};
  const float adv[8] = {1.5f, 2.0f, 2.0f, -1.0f, -2.0f, -1.0f, -1.0f, 0.0f};
  // clipped: (1.5, A>0) and (0.5, A<0); dual: (4, A<0); not: (0.5, A>0), (1.5, A<0), A = 0 at any ratio.
  std::vector<float> lp(8, 0.0f), old(8);
  for (int i = 0; i < 8; ++i) old[i] = (float)-std::log(ratio[i]);
  std::vector<uint8_t> mask(8, 1);
  std::vector<float> g(8);
  drl_grpo_loss_cfg cfg = base_cfg(DRL_AGG_SEQ_MEAN_TOKEN_SUM);
  drl_grpo_stats s;
  ASSERT_EQ(drl_grpo_loss(&cfg, 8, 1, lp.data(), old.data(), nullptr, adv, mask.data(), 0.0, g.data(), &s), DRL_OK);
  EXPECT_EQ(s.clipped, 2);
  EXPECT_EQ(s.dual_clipped, 1);
  EXPECT_DOUBLE_EQ(s.clip_frac, 2.0 / 8);
  EXPECT_DOUBLE_EQ(s.dual_clip_frac, 1.0 / 8);
  // Masking out the clipped-high token removes it from the count and the denominator.
  mask[1] = 0;
  ASSERT_EQ(drl_grpo_loss(&cfg, 8, 1, lp.data(), old.data(), nullptr, adv, mask.data(), 0.0, g.data(), &s), DRL_OK);
  EXPECT_EQ(s.clipped, 1);
  EXPECT_DOUBLE_EQ(s.clip_frac, 1.0 / 7);
}

// Distance from log-prob lp to the nearest kink of the per-token loss, in log space (for finite differences).
double kink_distance(double lp, double old, double ref, const drl_grpo_loss_cfg &c) {
  double lr = lp - old, d = ref - lp;
  double k = 1e9;
  for (double x : {std::log(1.0 - c.clip_low), std::log(1.0 + c.clip_high), std::log((double)c.dual_clip), -20.0, 20.0})
    k = std::min(k, std::fabs(lr - x));
  for (double x : {-20.0, 20.0}) k = std::min(k, std::fabs(d - x));
  // k3 = 10 at two values of d
  for (double x : {2.5279, -11.0}) {
    double lo = x - 0.01, hi = x + 0.01;  // refine the root of e^d - d - 11 near x by bisection
    for (int i = 0; i < 60; ++i) {
      double mid = 0.5 * (lo + hi), f = std::exp(mid) - mid - 11.0, flo = std::exp(lo) - lo - 11.0;
      ((f < 0) == (flo < 0) ? lo : hi) = mid;
    }
    k = std::min(k, std::fabs(d - 0.5 * (lo + hi)));
  }
  return k;
}

TEST(GrpoLoss, GradientMatchesCentralFiniteDifferences) {
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  const int rows = 6, T = 9, N = rows * T;
  const double h = 1e-3;
  int checked = 0, flat = 0;
  for (int agg = 0; agg < 5; ++agg) {
    drl_grpo_loss_cfg cfg = base_cfg((drl_loss_agg)agg);
    cfg.kl_beta = 0.3f;
    cfg.norm_len = 12;
    std::vector<float> lp(N), old(N), ref(N), adv(rows), g(N);
    std::vector<uint8_t> mask(N);
    for (int r = 0; r < rows; ++r) adv[r] = (float)(1.5 * normal(rng));
    for (int n = 0; n < N; ++n) {
      mask[n] = unif(rng) < 0.75;
      lp[n] = (float)(-3.0 * unif(rng));
      // log-ratios over [-1.6, 1.6] cross both clips and the dual clip; a few far out hit the +-20 clamp
      double lr = unif(rng) < 0.1 ? (unif(rng) < 0.5 ? -25.0 : 25.0) : 3.2 * unif(rng) - 1.6;
      old[n] = (float)(lp[n] - lr);
      double d = unif(rng) < 0.1 ? -30.0 : 6.0 * unif(rng) - 3.0;  // k3 clamp at d ~ 2.53 and d clamp at -20
      ref[n] = (float)(lp[n] + d);
    }
    drl_grpo_stats s;
    ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, lp.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0,
                            g.data(), &s),
              DRL_OK);
    for (int n = 0; n < N; ++n) {
      if (!mask[n]) {
        EXPECT_EQ(g[n], 0.0f);
        continue;
      }
      if (kink_distance(lp[n], old[n], ref[n], cfg) < 5 * h) continue;
      std::vector<float> p = lp, m = lp;
      p[n] = (float)(lp[n] + h);
      m[n] = (float)(lp[n] - h);
      drl_grpo_stats sp, sm;
      std::vector<float> scratch(N);
      ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, p.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0,
                              scratch.data(), &sp),
                DRL_OK);
      ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, m.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0,
                              scratch.data(), &sm),
                DRL_OK);
      double fd = (sp.loss - sm.loss) / ((double)p[n] - (double)m[n]);
      EXPECT_NEAR(g[n], fd, 1e-5 * std::max(1.0, std::fabs(fd))) << "agg " << agg << " token " << n;
      ++checked;
      flat += g[n] == 0.0f;
    }
  }
  EXPECT_GT(checked, 120);
  EXPECT_GT(flat, 10);  // the flat (clipped or clamped) branches were exercised too
}

TEST(GrpoLoss, AllZeroOrAllMaskedBatchGivesZeroAndNoNan) {
  const int rows = 4, T = 5, N = rows * T;
  std::vector<float> lp(N, -1.0f), old(N, -1.3f), adv(rows, 0.0f), g(N, 9.0f);
  std::vector<uint8_t> mask(N, 1);
  for (int agg = 0; agg < 5; ++agg) {
    drl_grpo_loss_cfg cfg = base_cfg((drl_loss_agg)agg);
    cfg.norm_len = 5;
    drl_grpo_stats s;
    // all-zero advantages
    ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, lp.data(), old.data(), nullptr, adv.data(), mask.data(), 0.0, g.data(),
                            &s),
              DRL_OK);
    EXPECT_EQ(s.loss, 0.0);
    for (float x : g) EXPECT_EQ(x, 0.0f);
    // all masked, with NaN everywhere in the inputs
    std::vector<float> nan(N, NAN), nan_adv(rows, NAN);
    std::vector<uint8_t> none(N, 0);
    std::fill(g.begin(), g.end(), 9.0f);
    ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, nan.data(), nan.data(), nan.data(), nan_adv.data(), none.data(), 0.0,
                            g.data(), &s),
              DRL_OK);
    EXPECT_EQ(s.loss, 0.0);
    EXPECT_EQ(s.tokens, 0);
    EXPECT_EQ(s.clip_frac, 0.0);
    EXPECT_EQ(s.ratio_mean, 0.0);
    for (float x : g) EXPECT_EQ(x, 0.0f);
    // an empty batch
    ASSERT_EQ(drl_grpo_loss(&cfg, 0, T, nullptr, nullptr, nullptr, nullptr, nullptr, 0.0, nullptr, &s), DRL_OK);
    EXPECT_EQ(s.loss, 0.0);
  }
}

TEST(GrpoLoss, RejectsBadConfigAndNonFiniteInputs) {
  float lp = 0.0f, old = 0.0f, adv = 1.0f, g;
  uint8_t m = 1;
  drl_grpo_loss_cfg cfg = base_cfg();
  cfg.clip_low = 1.0f;
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &adv, &m, 0.0, &g, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("clip_low");
  cfg = base_cfg();
  cfg.dual_clip = 1.0f;
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &adv, &m, 0.0, &g, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("dual_clip");
  cfg = base_cfg(DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM);
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &adv, &m, 0.0, &g, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("norm_len");
  cfg = base_cfg();
  float bad = NAN;
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &bad, &old, nullptr, &adv, &m, 0.0, &g, nullptr), DRL_ERR_NUMERIC);
  EXPECT_ERROR_HAS("row 0, token 0");
  EXPECT_EQ(drl_grpo_loss(&cfg, 1, 1, &lp, &old, nullptr, &bad, &m, 0.0, &g, nullptr), DRL_ERR_NUMERIC);
}

// ---------------------------------------------------------------- verl parity

// verl's own compute_policy_loss_gspo and compute_policy_loss_vanilla on random batches (rows without loss tokens, a
// row of one token, a zero advantage; sequences inside and past the clips) in every aggregation verl has, its
// sequence modes counting the rows with a loss token or (as its trainer does) every row: the loss value, the gradient
// with respect to each log-prob and the clip fraction (tests/fixtures/policy_loss,
// bench/reference/policy_loss_fixtures.py).
TEST(PolicyLoss, MatchesVerl) {
  json_error_t err;
  json_t *root = json_load_file((source_dir() + "/tests/fixtures/policy_loss/cases.json").c_str(), 0, &err);
  ASSERT_NE(root, nullptr) << err.text;
  json_t *cases = json_object_get(root, "cases");
  ASSERT_EQ(json_array_size(cases), 21u);
  auto floats = [](json_t *a) {
    std::vector<float> v(json_array_size(a));
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)json_number_value(json_array_get(a, i));
    return v;
  };
  int gspo = 0, clipped = 0;
  for (size_t k = 0; k < json_array_size(cases); ++k) {
    json_t *c = json_array_get(cases, k);
    std::string kind = json_string_value(json_object_get(c, "loss_kind")), agg = json_string_value(json_object_get(c, "agg"));
    SCOPED_TRACE(kind + " " + agg + " case " + std::to_string(k));
    drl_grpo_loss_cfg cfg = base_cfg(agg == "token-mean"            ? DRL_AGG_TOKEN_MEAN
                                     : agg == "seq-mean-token-mean" ? DRL_AGG_SEQ_MEAN_TOKEN_MEAN
                                     : agg == "seq-mean-token-sum"  ? DRL_AGG_SEQ_MEAN_TOKEN_SUM
                                                                    : DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM);
    cfg.count_empty_rows = (int)json_integer_value(json_object_get(c, "count_empty_rows"));
    cfg.norm_len = (int)json_integer_value(json_object_get(c, "norm_len"));
    cfg.loss = kind == "gspo" ? DRL_LOSS_GSPO : DRL_LOSS_GRPO;
    gspo += kind == "gspo";
    int rows = (int)json_integer_value(json_object_get(c, "rows")), T = (int)json_integer_value(json_object_get(c, "T"));
    std::vector<float> lp = floats(json_object_get(c, "logprob")), old = floats(json_object_get(c, "old_logprob")),
                       adv = floats(json_object_get(c, "adv")), mask_f = floats(json_object_get(c, "mask"));
    std::vector<uint8_t> mask(mask_f.begin(), mask_f.end());
    json_t *want_grad = json_object_get(c, "grad");
    std::vector<float> g((size_t)rows * T);
    drl_grpo_stats s;
    ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, lp.data(), old.data(), nullptr, adv.data(), mask.data(), 0.0, g.data(), &s),
              DRL_OK) << last_error();
    double want = json_number_value(json_object_get(c, "pg_loss"));
    EXPECT_NEAR(s.pg_loss, want, 1e-6 * std::max(1.0, std::fabs(want)));
    EXPECT_NEAR(s.clip_frac, json_number_value(json_object_get(c, "clip_frac")), 1e-7);
    for (size_t n = 0; n < g.size(); ++n) {
      double w = json_number_value(json_array_get(want_grad, n));
      EXPECT_NEAR(g[n], w, 1e-6 * std::max(1e-2, std::fabs(w))) << "token " << n;
    }
    clipped += s.clipped > 0;
  }
  EXPECT_EQ(gspo, 3);
  EXPECT_GE(clipped, 14) << "the clips were exercised";
  json_decref(root);
}

// ---------------------------------------------------------------- GSPO

// Worked by hand (clip_low 0.2, clip_high 0.28): each row's ratio is exp of its mean log-ratio, every token of the row
// takes the row's clipped value, and aggregation averages tokens per row, then rows.
TEST(GspoLoss, HandValues) {
  drl_grpo_loss_cfg cfg = base_cfg(DRL_AGG_SEQ_MEAN_TOKEN_MEAN);
  cfg.loss = DRL_LOSS_GSPO;
  const int rows = 4, T = 3;
  // row 0: log-ratios {0.1, 0.3} (mean 0.2), A = 1: s = e^0.2 = 1.2214 inside [0.8, 1.28]: loss -s, derivative -s.
  // row 1: {0.5, 0.5, 0.5}, A = 1: s = e^0.5 = 1.6487 > 1.28: clipped, loss -1.28, derivative 0.
  // row 2: {-0.5}, A = -1: s = e^-0.5 = 0.6065 < 0.8: clipped, loss 0.8 (no dual clip), derivative 0.
  // row 3: {0.4, -0.2, -0.8} (mean -0.2), A = -2: s = e^-0.2 = 0.8187 inside: loss 2s, derivative 2s.
  const float lr[rows * T] = {0.1f, 0.3f, 0, 0.5f, 0.5f, 0.5f, 0, -0.5f, 0, 0.4f, -0.2f, -0.8f};
  const uint8_t mask[rows * T] = {1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1};
  const float adv[rows] = {1.0f, 1.0f, -1.0f, -2.0f};
  std::vector<float> lp(rows * T, -1.0f), old(rows * T), g(rows * T);
  for (int n = 0; n < rows * T; ++n) old[n] = lp[n] - lr[n];
  drl_grpo_stats s;
  ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, lp.data(), old.data(), nullptr, adv, mask, 0.0, g.data(), &s), DRL_OK);
  // The row means in float: the log-ratios of the float inputs, averaged in double.
  auto row_lr = [&](int r) {
    double sum = 0;
    int n = 0;
    for (int t = 0; t < T; ++t)
      if (mask[r * T + t]) sum += (double)lp[r * T + t] - (double)old[r * T + t], ++n;
    return sum / n;
  };
  const double s0 = std::exp(row_lr(0)), s3 = std::exp(row_lr(3));
  EXPECT_NEAR(s0, 1.2214, 1e-4);
  EXPECT_NEAR(s.pg_loss, (-s0 - 1.28 + 0.8 + 2 * s3) / 4, 1e-6);
  EXPECT_NEAR(g[0], -s0 / (4 * 2), 1e-7);
  EXPECT_NEAR(g[1], -s0 / (4 * 2), 1e-7);
  EXPECT_EQ(g[2], 0.0f);
  for (int t = 0; t < 3; ++t) EXPECT_EQ(g[3 + t], 0.0f);
  EXPECT_EQ(g[7], 0.0f);
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(g[9 + t], 2 * s3 / (4 * 3), 1e-7);
  EXPECT_EQ(s.tokens, 9);
  EXPECT_EQ(s.clipped, 4);  // row 1's three tokens and row 2's one
  EXPECT_EQ(s.dual_clipped, 0);
  EXPECT_NEAR(s.ratio_mean, (2 * s0 + 3 * std::exp(row_lr(1)) + std::exp(row_lr(2)) + 3 * s3) / 9, 1e-6);
}

// A row of one token is GRPO's token-level loss wherever the dual clip is idle; a row past exp(10) is clamped there
// with no gradient; zero advantages and rows without loss tokens give zeros, not NaN.
TEST(GspoLoss, EdgeCases) {
  drl_grpo_loss_cfg grpo = base_cfg(DRL_AGG_SEQ_MEAN_TOKEN_MEAN), gspo = grpo;
  gspo.loss = DRL_LOSS_GSPO;
  for (double ratio : {0.5, 0.9, 1.0, 1.2, 1.5})
    for (float a : {1.3f, -0.7f}) {
      float g1, g2;
      drl_grpo_stats s1, s2;
      double l1 = one_token(grpo, ratio, a, &g1, &s1), l2 = one_token(gspo, ratio, a, &g2, &s2);
      if (s1.dual_clipped) continue;
      EXPECT_NEAR(l1, l2, 1e-6) << ratio << " " << a;
      EXPECT_NEAR(g1, g2, 1e-6) << ratio << " " << a;
      EXPECT_EQ(s1.clipped, s2.clipped) << ratio << " " << a;
    }
  // exp(11) with a negative advantage: the unclipped branch, its log clamped at 10, flat.
  float g;
  drl_grpo_stats s;
  double l = one_token(gspo, std::exp(11.0), -1.0f, &g, &s);
  EXPECT_NEAR(l, std::exp(10.0), 1e-2);
  EXPECT_EQ(g, 0.0f);
  // zero advantages, and a row without loss tokens holding NaN
  const int rows = 2, T = 3;
  std::vector<float> lp = {-1, -2, -3, NAN, NAN, NAN}, old = {-1.5f, -2, -2.5f, NAN, NAN, NAN}, adv = {0, NAN}, gr(6, 9);
  std::vector<uint8_t> mask = {1, 1, 1, 0, 0, 0};
  ASSERT_EQ(drl_grpo_loss(&gspo, rows, T, lp.data(), old.data(), nullptr, adv.data(), mask.data(), 0.0, gr.data(), &s),
            DRL_OK);
  EXPECT_EQ(s.loss, 0.0);
  for (float x : gr) EXPECT_EQ(x, 0.0f);
  lp[1] = NAN;
  EXPECT_EQ(drl_grpo_loss(&gspo, rows, T, lp.data(), old.data(), nullptr, adv.data(), mask.data(), 0.0, gr.data(), &s),
            DRL_ERR_NUMERIC);
  EXPECT_ERROR_HAS("row 0, token 1");
}

// The gradient (with the k3 KL term) against central differences of the loss in every aggregation: a sequence-level
// ratio's derivative spread over the row's tokens is the derivative of the row's value.
TEST(GspoLoss, GradientMatchesCentralFiniteDifferences) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  const int rows = 8, T = 7, N = rows * T;
  const double h = 1e-3;
  int checked = 0;
  for (int agg = 0; agg < 5; ++agg) {
    drl_grpo_loss_cfg cfg = base_cfg((drl_loss_agg)agg);
    cfg.loss = DRL_LOSS_GSPO;
    cfg.kl_beta = 0.3f;
    cfg.norm_len = 12;
    std::vector<float> lp(N), old(N), ref(N), adv(rows), g(N);
    std::vector<uint8_t> mask(N);
    for (int r = 0; r < rows; ++r) {
      adv[r] = (float)(1.5 * normal(rng));
      double shift = 0.5 * normal(rng);  // rows inside and past the clips
      for (int t = 0; t < T; ++t) {
        int n = r * T + t;
        mask[n] = unif(rng) < 0.75;
        lp[n] = (float)(-3.0 * unif(rng));
        old[n] = (float)(lp[n] - shift - 0.2 * normal(rng));
        ref[n] = (float)(lp[n] + 4.0 * unif(rng) - 2.0);  // inside the k3 clamp
      }
    }
    drl_grpo_stats s;
    ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, lp.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0, g.data(),
                            &s),
              DRL_OK);
    for (int r = 0; r < rows; ++r) {
      double sum = 0;
      int n_row = 0;
      for (int t = 0; t < T; ++t)
        if (mask[r * T + t]) sum += (double)lp[r * T + t] - old[r * T + t], ++n_row;
      if (n_row == 0) continue;
      double m = sum / n_row;
      // away from the clip boundaries of the sequence ratio
      if (std::fabs(m - std::log(0.8)) < 5 * h || std::fabs(m - std::log(1.28)) < 5 * h) continue;
      for (int t = 0; t < T; ++t) {
        int n = r * T + t;
        if (!mask[n]) continue;
        std::vector<float> p = lp, q = lp, scratch(N);
        p[n] = (float)(lp[n] + h);
        q[n] = (float)(lp[n] - h);
        drl_grpo_stats sp, sq;
        ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, p.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0,
                                scratch.data(), &sp),
                  DRL_OK);
        ASSERT_EQ(drl_grpo_loss(&cfg, rows, T, q.data(), old.data(), ref.data(), adv.data(), mask.data(), 0.0,
                                scratch.data(), &sq),
                  DRL_OK);
        double fd = (sp.loss - sq.loss) / ((double)p[n] - (double)q[n]);
        EXPECT_NEAR(g[n], fd, 1e-5 * std::max(1.0, std::fabs(fd))) << "agg " << agg << " token " << n;
        ++checked;
      }
    }
    EXPECT_GT(s.clipped, 0) << "agg " << agg << ": some rows past the clips";
  }
  EXPECT_GT(checked, 120);
}

TEST(GrpoLoss, AggregationEnumMatchesConfig) {
  EXPECT_EQ((int)DRL_AGG_TOKEN_MEAN, (int)DRL_CFG_AGG_TOKEN_MEAN);
  EXPECT_EQ((int)DRL_AGG_SEQ_MEAN_TOKEN_MEAN, (int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_MEAN);
  EXPECT_EQ((int)DRL_AGG_SEQ_MEAN_TOKEN_SUM, (int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM);
  EXPECT_EQ((int)DRL_AGG_SEQ_MEAN_TOKEN_SUM_NORM, (int)DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM_NORM);
  EXPECT_EQ((int)DRL_AGG_DR_GRPO_NORM, (int)DRL_CFG_AGG_DR_GRPO_NORM);
  EXPECT_EQ((int)DRL_LOSS_GRPO, (int)DRL_CFG_LOSS_GRPO);
  EXPECT_EQ((int)DRL_LOSS_GSPO, (int)DRL_CFG_LOSS_GSPO);
}

}  // namespace
