// D3S: the exact max-variance subset against brute force, cross/intra/PODS sample selection on hand cases, the
// token-level top-K with its tie-break against a sort-based reference, the split (multi-rank) cut, the schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "engine/config.h"
#include "engine/d3s.h"
#include "engine/grpo.h"
}

namespace {

double pop_var(const std::vector<double> &x) {
  if (x.empty()) return 0.0;
  double m = 0.0, v = 0.0;
  for (double a : x) m += a;
  m /= (double)x.size();
  for (double a : x) v += (a - m) * (a - m);
  return v / (double)x.size();
}

std::vector<double> pick(const std::vector<float> &v, const std::vector<int> &idx) {
  std::vector<double> out;
  for (int i : idx) out.push_back(v[i]);
  return out;
}

// The documented subset: order by value descending then index ascending, take the first a and the last k - a with
// the smallest a whose variance is within 1e-9 * var(all) of the best; returned sorted.
std::vector<int> documented_subset(const std::vector<float> &v, int k) {
  int n = (int)v.size();
  std::vector<int> ord(n);
  for (int i = 0; i < n; ++i) ord[i] = i;
  std::sort(ord.begin(), ord.end(), [&](int a, int b) { return v[a] != v[b] ? v[a] > v[b] : a < b; });
  std::vector<double> all(v.begin(), v.end());
  double tol = 1e-9 * pop_var(all);
  std::vector<std::vector<int>> cand;
  std::vector<double> var;
  for (int a = 0; a <= k; ++a) {
    std::vector<int> s(ord.begin(), ord.begin() + a);
    s.insert(s.end(), ord.end() - (k - a), ord.end());
    std::sort(s.begin(), s.end());
    var.push_back(pop_var(pick(v, s)));
    cand.push_back(s);
  }
  double best = *std::max_element(var.begin(), var.end());
  for (int a = 0; a <= k; ++a)
    if (var[a] >= best - tol) return cand[a];
  return {};
}

TEST(MaxVarSubset, MatchesBruteForceOverAllSubsets) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  int instances = 0;
  for (int n = 1; n <= 10; ++n)
    for (int kind = 0; kind < 4; ++kind)
      for (int rep = 0; rep < (kind == 3 ? 1 : 3); ++rep) {
        std::vector<float> v(n);
        for (float &x : v) {
          if (kind == 0) x = (float)normal(rng);                         // Gaussian
          if (kind == 1) x = (rng() & 1) ? 1.0f : 0.0f;                  // binary with ties
          if (kind == 2) x = (float)((int)(rng() % 3) - 1) * 0.5f;       // three levels with ties
          if (kind == 3) x = 0.37f;                                      // all equal
        }
        std::vector<double> all(v.begin(), v.end());
        double scale = pop_var(all);
        for (int k = 0; k <= n; ++k) {
          double brute = -1.0;
          for (uint32_t m = 0; m < (1u << n); ++m) {
            if (__builtin_popcount(m) != k) continue;
            std::vector<double> s;
            for (int i = 0; i < n; ++i)
              if (m >> i & 1) s.push_back(v[i]);
            brute = std::max(brute, pop_var(s));
          }
          std::vector<int> idx(k + 1, -7);
          ASSERT_EQ(drl_d3s_maxvar_subset(v.data(), n, k, idx.data()), DRL_OK) << last_error();
          idx.resize(k);
          for (int j = 0; j < k; ++j) {
            ASSERT_GE(idx[j], 0);
            ASSERT_LT(idx[j], n);
            if (j > 0) {
              ASSERT_LT(idx[j - 1], idx[j]) << "indices ascending and distinct";
            }
          }
          EXPECT_GE(pop_var(pick(v, idx)), brute - 1e-9 * (scale + 1e-30)) << "n " << n << " k " << k << " kind " << kind;
          EXPECT_EQ(idx, documented_subset(v, k)) << "tie-break, n " << n << " k " << k << " kind " << kind;
          std::vector<int> again(k + 1);
          ASSERT_EQ(drl_d3s_maxvar_subset(v.data(), n, k, again.data()), DRL_OK);
          again.resize(k);
          EXPECT_EQ(again, idx);
          ++instances;
        }
      }
  EXPECT_GT(instances, 400);
}

TEST(MaxVarSubset, HandCasesAndTieBreak) {
  int idx[4];
  const float a[4] = {1, 1, 0, 0};  // order 0, 1, 2, 3; a = 1 takes index 0 and the last of the order, 3
  ASSERT_EQ(drl_d3s_maxvar_subset(a, 4, 2, idx), DRL_OK);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 3);
  const float e[4] = {5, 5, 5, 5};  // every subset ties: a = 0, the last two of the order
  ASSERT_EQ(drl_d3s_maxvar_subset(e, 4, 2, idx), DRL_OK);
  EXPECT_EQ(idx[0], 2);
  EXPECT_EQ(idx[1], 3);
  const float s[5] = {0.1f, -3.0f, 2.0f, 0.0f, 4.0f};  // the extremes
  ASSERT_EQ(drl_d3s_maxvar_subset(s, 5, 2, idx), DRL_OK);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 4);
  EXPECT_EQ(drl_d3s_maxvar_subset(s, 5, 6, idx), DRL_ERR_INVALID_ARG);
  const float bad[2] = {1.0f, NAN};
  EXPECT_EQ(drl_d3s_maxvar_subset(bad, 2, 1, idx), DRL_ERR_NUMERIC);
  EXPECT_EQ(drl_d3s_maxvar_subset(nullptr, 0, 0, nullptr), DRL_OK);
}

// Three groups of G = 4 and N_s = 2: all-zero rewards, one rare success, one rare failure.
struct Batch {
  std::vector<float> rewards{0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0};
  std::vector<float> adv = std::vector<float>(12);
  Batch() { EXPECT_EQ(drl_grpo_advantages(rewards.data(), 3, 4, 0, 1e-6f, adv.data()), DRL_OK); }
};

std::vector<int> kept_rows(const std::vector<uint8_t> &keep) {
  std::vector<int> out;
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) out.push_back((int)i);
  return out;
}

TEST(D3sSamples, CrossGroupDropsZeroVarianceGroupsAndKeepsRareOutcomes) {
  Batch b;
  // advantages: 0 0 0 0 | 1.5 -0.5 -0.5 -0.5 | 0.5 0.5 0.5 -1.5; the best 6 are a = 3: {1.5, .5, .5} + {-.5, -.5, -1.5}
  EXPECT_NEAR(b.adv[4], 1.5, 1e-5);
  EXPECT_NEAR(b.adv[11], -1.5, 1e-5);
  std::vector<uint8_t> keep(12, 9);
  ASSERT_EQ(drl_d3s_select_samples(b.adv.data(), 3, 4, 2, DRL_D3S_CROSS, keep.data()), DRL_OK) << last_error();
  EXPECT_EQ(kept_rows(keep), (std::vector<int>{4, 6, 7, 8, 9, 11}));
  drl_d3s_stats s;
  drl_d3s_measure(b.adv.data(), keep.data(), nullptr, nullptr, 12, 0, &s);
  EXPECT_EQ(s.samples, 12);
  EXPECT_EQ(s.kept_samples, 6);
  EXPECT_EQ(s.useful_samples, 6);
  EXPECT_DOUBLE_EQ(s.usefulness, 1.0);
}

TEST(D3sSamples, IntraGroupKeepsNsPerGroup) {
  Batch b;
  std::vector<uint8_t> keep(12);
  ASSERT_EQ(drl_d3s_select_samples(b.adv.data(), 3, 4, 2, DRL_D3S_INTRA, keep.data()), DRL_OK);
  // group 0 ties everywhere (a = 0: rows 2, 3); group 1: {1.5, -0.5} with a = 1 (rows 4, 7); group 2: {0.5, -1.5}
  // ties between a = 0 and a = 1, a = 0 wins (rows 10, 11).
  EXPECT_EQ(kept_rows(keep), (std::vector<int>{2, 3, 4, 7, 10, 11}));
  drl_d3s_stats s;
  drl_d3s_measure(b.adv.data(), keep.data(), nullptr, nullptr, 12, 0, &s);
  EXPECT_EQ(s.kept_samples, 6);
  EXPECT_EQ(s.useful_samples, 4);
  EXPECT_DOUBLE_EQ(s.usefulness, 4.0 / 6);
  // N_s larger than G is an error with a clear message
  EXPECT_EQ(drl_d3s_select_samples(b.adv.data(), 3, 4, 5, DRL_D3S_INTRA, keep.data()), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("N_s = 5");
  EXPECT_EQ(drl_d3s_select_samples(b.adv.data(), 3, 4, 0, DRL_D3S_CROSS, keep.data()), DRL_ERR_INVALID_ARG);
}

TEST(D3sSamples, PodsRenormalisesWhileD3sKeepsFullGroupAdvantages) {
  // One group of 6 with a single success; keep 2.
  const float r[6] = {0, 0, 1, 0, 0, 0};
  float adv[6];
  ASSERT_EQ(drl_grpo_advantages(r, 1, 6, 0, 1e-6f, adv), DRL_OK);
  const double full_plus = (5.0 / 6) / (std::sqrt(1.0 / 6) + 1e-6);  // std = sqrt((25/36 + 5/36) / 5)
  EXPECT_NEAR(adv[2], full_plus, 1e-5);

  std::vector<uint8_t> keep(6);
  ASSERT_EQ(drl_d3s_select_samples(adv, 1, 6, 2, DRL_D3S_INTRA, keep.data()), DRL_OK);
  EXPECT_EQ(kept_rows(keep), (std::vector<int>{2, 5}));  // the success and one failure; adv untouched
  EXPECT_NEAR(adv[2], full_plus, 1e-5);

  std::vector<uint8_t> pkeep(6);
  float padv[6];
  ASSERT_EQ(drl_d3s_pods_select(r, 1, 6, 2, 0, 1e-6f, pkeep.data(), padv), DRL_OK) << last_error();
  EXPECT_EQ(kept_rows(pkeep), (std::vector<int>{2, 5}));
  // re-normalised on {1, 0}: mean 0.5, std sqrt(0.5)
  EXPECT_NEAR(padv[2], 0.5 / (std::sqrt(0.5) + 1e-6), 1e-6);
  EXPECT_NEAR(padv[5], -0.5 / (std::sqrt(0.5) + 1e-6), 1e-6);
  EXPECT_GT(std::fabs(padv[2] - adv[2]), 1.0);  // the two methods differ
  for (int i : {0, 1, 3, 4}) EXPECT_EQ(padv[i], 0.0f);
  // Dr.GRPO flavour of PODS: r - mean on the subset
  ASSERT_EQ(drl_d3s_pods_select(r, 1, 6, 2, 1, 1e-6f, pkeep.data(), padv), DRL_OK);
  EXPECT_EQ(padv[2], 0.5f);
  EXPECT_EQ(padv[5], -0.5f);
  EXPECT_EQ(drl_d3s_pods_select(r, 1, 6, 7, 0, 1e-6f, pkeep.data(), padv), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("N_s");
}

TEST(D3sTokens, Budget) {
  EXPECT_EQ(drl_d3s_token_budget(10, 0.2), 2);
  EXPECT_EQ(drl_d3s_token_budget(10, 0.3), 3);  // 0.3 * 10 is 3 after rounding K, not 4
  EXPECT_EQ(drl_d3s_token_budget(10, 0.25), 3);
  EXPECT_EQ(drl_d3s_token_budget(100, 0.7), 70);
  EXPECT_EQ(drl_d3s_token_budget(100, 0.07), 7);  // 0.07 * 100 = 7.000000000000001 in double
  EXPECT_EQ(drl_d3s_token_budget(50, 0.28), 14);  // 14.000000000000002
  EXPECT_EQ(drl_d3s_token_budget(5, 1e-12), 1);
  EXPECT_EQ(drl_d3s_token_budget(3, 0.1), 1);  // K n < 1 keeps 1
  EXPECT_EQ(drl_d3s_token_budget(1, 0.01), 1);
  EXPECT_EQ(drl_d3s_token_budget(0, 0.5), 0);
  EXPECT_EQ(drl_d3s_token_budget(7, 1.0), 7);
}

std::vector<int> mask_positions(const std::vector<uint8_t> &m) {
  std::vector<int> out;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i]) out.push_back((int)i);
  return out;
}

TEST(D3sTokens, BatchWideHandCaseWithTies) {
  const int rows = 2, T = 5;
  const float adv[2] = {1.0f, -1.0f};
  const float H[10] = {0.5f, 0.5f, 0.2f, 0.5f, 0.1f, 0.5f, 0.3f, 0.5f, 0.0f, 0.5f};
  std::vector<uint8_t> valid(10, 1);
  valid[9] = 0;  // a high-entropy slot that is not a response token
  std::vector<uint8_t> mask(10, 7);
  int64_t kept = -1;
  // 9 candidates; score 0.5 at flat 0, 1, 3, 5, 7
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, valid.data(), nullptr, rows, T, 0.3, DRL_D3S_TOKENS_BATCH, mask.data(), &kept),
            DRL_OK)
      << last_error();
  EXPECT_EQ(kept, 3);  // ceil(2.7)
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{0, 1, 3}));
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, valid.data(), nullptr, rows, T, 0.5, DRL_D3S_TOKENS_BATCH, mask.data(), &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{0, 1, 3, 5, 7}));
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, valid.data(), nullptr, rows, T, 0.6, DRL_D3S_TOKENS_BATCH, mask.data(), &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{0, 1, 3, 5, 6, 7}));
  // only row 1 kept: 4 candidates, keep 2
  const uint8_t keep_row[2] = {0, 1};
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, valid.data(), keep_row, rows, T, 0.5, DRL_D3S_TOKENS_BATCH, mask.data(),
                                  &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{5, 7}));
  drl_d3s_stats s;
  drl_d3s_measure(adv, keep_row, valid.data(), mask.data(), rows, T, &s);
  EXPECT_EQ(s.kept_samples, 1);
  EXPECT_EQ(s.candidate_tokens, 4);
  EXPECT_EQ(s.kept_tokens, 2);
  // K n < 1 keeps the single best
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, valid.data(), keep_row, rows, T, 0.1, DRL_D3S_TOKENS_BATCH, mask.data(),
                                  &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{5}));
  // |A| matters batch-wide: doubling row 1's advantage moves its tokens to the front
  const float adv2[2] = {1.0f, 2.0f};
  ASSERT_EQ(drl_d3s_select_tokens(adv2, H, valid.data(), nullptr, rows, T, 0.3, DRL_D3S_TOKENS_BATCH, mask.data(),
                                  &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{5, 6, 7}));  // 1.0, 0.6, 1.0
}

// Reference: rank candidates by (score desc, flat asc) with a sort and keep the first budget(n, K).
std::vector<uint8_t> reference_mask(const std::vector<float> &adv, const std::vector<float> &H,
                                    const std::vector<uint8_t> &valid, const std::vector<uint8_t> &keep, int rows,
                                    int T, double K, int row_lo, int row_hi) {
  std::vector<std::pair<float, int>> c;
  for (int r = row_lo; r < row_hi; ++r)
    if (keep[r])
      for (int t = 0; t < T; ++t)
        if (valid[r * T + t]) c.push_back({std::fabs(adv[r]) * H[r * T + t], r * T + t});
  std::sort(c.begin(), c.end(), [](const std::pair<float, int> &a, const std::pair<float, int> &b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<uint8_t> m(rows * T, 0);
  int64_t k = drl_d3s_token_budget((int64_t)c.size(), K);
  for (int64_t i = 0; i < k; ++i) m[c[i].second] = 1;
  return m;
}

TEST(D3sTokens, ExactBudgetWithManyTiesMatchesSortReferenceAndIsDeterministic) {
  std::mt19937 rng(3);
  const int rows = 12, T = 16, N = rows * T;
  const float levels[4] = {0.0f, 0.25f, 0.5f, 1.0f};
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<float> adv(rows), H(N);
    std::vector<uint8_t> valid(N), keep(rows);
    for (int r = 0; r < rows; ++r) {
      adv[r] = (float)((int)(rng() % 5) - 2);  // |A| in {0, 1, 2}, ties across rows
      keep[r] = rng() % 4 != 0;
    }
    for (int n = 0; n < N; ++n) {
      H[n] = levels[rng() % 4];
      valid[n] = rng() % 5 != 0;
    }
    for (double K : {0.01, 0.2, 0.35, 0.5, 0.99, 1.0}) {
      for (int scope = 0; scope < 2; ++scope) {
        std::vector<uint8_t> mask(N), again(N);
        int64_t kept = 0, kept2 = 0;
        ASSERT_EQ(drl_d3s_select_tokens(adv.data(), H.data(), valid.data(), keep.data(), rows, T, K,
                                        (drl_d3s_token_scope)scope, mask.data(), &kept),
                  DRL_OK)
            << last_error();
        ASSERT_EQ(drl_d3s_select_tokens(adv.data(), H.data(), valid.data(), keep.data(), rows, T, K,
                                        (drl_d3s_token_scope)scope, again.data(), &kept2),
                  DRL_OK);
        EXPECT_EQ(mask, again) << "deterministic across calls";
        std::vector<uint8_t> ref(N, 0);
        int64_t budget = 0;
        if (scope == DRL_D3S_TOKENS_BATCH) {
          ref = reference_mask(adv, H, valid, keep, rows, T, K, 0, rows);
          int64_t n = 0;
          for (int r = 0; r < rows; ++r)
            for (int t = 0; t < T; ++t) n += keep[r] && valid[r * T + t];
          budget = drl_d3s_token_budget(n, K);
        } else {
          for (int r = 0; r < rows; ++r) {
            std::vector<uint8_t> one = reference_mask(adv, H, valid, keep, rows, T, K, r, r + 1);
            for (int t = 0; t < T; ++t) ref[r * T + t] = one[r * T + t];
            int64_t n = 0;
            for (int t = 0; t < T; ++t) n += keep[r] && valid[r * T + t];
            budget += drl_d3s_token_budget(n, K);
          }
        }
        EXPECT_EQ(mask, ref) << "rep " << rep << " K " << K << " scope " << scope;
        EXPECT_EQ(kept, budget);
        int64_t count = 0;
        for (int n = 0; n < N; ++n) {
          count += mask[n];
          if (mask[n]) {
            EXPECT_TRUE(valid[n] && keep[n / T]) << "only candidates are kept";
          }
        }
        EXPECT_EQ(count, budget) << "exactly ceil(K n)";
      }
    }
  }
}

TEST(D3sTokens, PerSequenceScopeKeepsCeilKnPerRow) {
  const int rows = 2, T = 4;
  const float adv[2] = {3.0f, 0.1f};
  const float H[8] = {0.1f, 0.9f, 0.4f, 0.9f, 0.2f, 0.8f, 0.7f, 0.6f};
  std::vector<uint8_t> mask(8);
  int64_t kept = 0;
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, nullptr, nullptr, rows, T, 0.5, DRL_D3S_TOKENS_SEQUENCE, mask.data(), &kept),
            DRL_OK);
  EXPECT_EQ(kept, 4);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{1, 3, 5, 6}));  // per row, |A| irrelevant
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, nullptr, nullptr, rows, T, 0.5, DRL_D3S_TOKENS_BATCH, mask.data(), &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{0, 1, 2, 3}));  // batch-wide, row 0's |A| dominates
  ASSERT_EQ(drl_d3s_select_tokens(adv, H, nullptr, nullptr, rows, T, 0.1, DRL_D3S_TOKENS_SEQUENCE, mask.data(), &kept),
            DRL_OK);
  EXPECT_EQ(mask_positions(mask), (std::vector<int>{1, 5}));  // K n < 1 keeps 1 per row
}

TEST(D3sTokens, EmptyInputKeepsNothing) {
  int64_t kept = -1;
  EXPECT_EQ(drl_d3s_select_tokens(nullptr, nullptr, nullptr, nullptr, 0, 8, 0.5, DRL_D3S_TOKENS_BATCH, nullptr, &kept),
            DRL_OK);
  EXPECT_EQ(kept, 0);
  const float adv[2] = {1.0f, 1.0f}, H[4] = {1, 1, 1, 1};
  const uint8_t none[4] = {0, 0, 0, 0}, no_rows[2] = {0, 0};
  std::vector<uint8_t> mask(4, 5);
  for (int scope = 0; scope < 2; ++scope) {
    ASSERT_EQ(drl_d3s_select_tokens(adv, H, none, nullptr, 2, 2, 0.5, (drl_d3s_token_scope)scope, mask.data(), &kept),
              DRL_OK);
    EXPECT_EQ(kept, 0);
    EXPECT_EQ(mask_positions(mask), std::vector<int>{});
    ASSERT_EQ(drl_d3s_select_tokens(adv, H, nullptr, no_rows, 2, 2, 0.5, (drl_d3s_token_scope)scope, mask.data(),
                                    &kept),
              DRL_OK);
    EXPECT_EQ(kept, 0);
    EXPECT_EQ(mask_positions(mask), std::vector<int>{});
  }
  drl_d3s_cut cut;
  ASSERT_EQ(drl_d3s_token_cut(nullptr, 0, 0, &cut), DRL_OK);
  EXPECT_EQ(cut.index, -1);
  EXPECT_TRUE(std::isinf(cut.score));
}

TEST(D3sTokens, CutHandlesSignedZerosNegativesAndBadInput) {
  const float s[5] = {-0.0f, 0.0f, -1.0f, 2.0f, 0.0f};
  drl_d3s_cut cut;
  ASSERT_EQ(drl_d3s_token_cut(s, 5, 2, &cut), DRL_OK);
  EXPECT_EQ(cut.score, 0.0f);  // 2 is kept, then the first zero by ordinal: -0 and +0 are the same score
  EXPECT_EQ(cut.index, 0);
  ASSERT_EQ(drl_d3s_token_cut(s, 5, 4, &cut), DRL_OK);  // all three zeros, the last by ordinal is 4
  EXPECT_EQ(cut.score, 0.0f);
  EXPECT_EQ(cut.index, 4);
  ASSERT_EQ(drl_d3s_token_cut(s, 5, 5, &cut), DRL_OK);
  EXPECT_EQ(cut.score, -1.0f);
  EXPECT_EQ(cut.index, 2);
  ASSERT_EQ(drl_d3s_token_cut(s, 5, 1, &cut), DRL_OK);
  EXPECT_EQ(cut.score, 2.0f);
  EXPECT_EQ(cut.index, 3);
  EXPECT_EQ(drl_d3s_token_cut(s, 5, 6, &cut), DRL_ERR_INVALID_ARG);
  const float bad[2] = {1.0f, NAN};
  EXPECT_EQ(drl_d3s_token_cut(bad, 2, 1, &cut), DRL_ERR_NUMERIC);
  const float adv[1] = {1.0f}, H[2] = {0.5f, INFINITY};
  uint8_t mask[2];
  EXPECT_EQ(drl_d3s_select_tokens(adv, H, nullptr, nullptr, 1, 2, 0.5, DRL_D3S_TOKENS_BATCH, mask, nullptr),
            DRL_ERR_NUMERIC);
  EXPECT_ERROR_HAS("entropy");
  EXPECT_EQ(drl_d3s_select_tokens(adv, H, nullptr, nullptr, 1, 2, 0.0, DRL_D3S_TOKENS_BATCH, mask, nullptr),
            DRL_ERR_INVALID_ARG);
}

// The batch split over two "ranks": gather both halves' scores, one cut, each half applies it with its first ordinal.
TEST(D3sTokens, SplitBatchWithOneGlobalCutEqualsTheWholeBatch) {
  std::mt19937 rng(5);
  const int rows = 10, T = 8, N = rows * T, half = 4;
  std::vector<float> adv(rows), H(N);
  std::vector<uint8_t> valid(N);
  for (int r = 0; r < rows; ++r) adv[r] = (float)((int)(rng() % 3) - 1);
  for (int n = 0; n < N; ++n) {
    H[n] = (float)(rng() % 4) * 0.5f;
    valid[n] = rng() % 3 != 0;
  }
  std::vector<uint8_t> whole(N);
  ASSERT_EQ(drl_d3s_select_tokens(adv.data(), H.data(), valid.data(), nullptr, rows, T, 0.3, DRL_D3S_TOKENS_BATCH,
                                  whole.data(), nullptr),
            DRL_OK);
  std::vector<float> scores(N);
  int64_t m0 = 0, m1 = 0;
  ASSERT_EQ(drl_d3s_token_scores(adv.data(), H.data(), valid.data(), nullptr, half, T, scores.data(), &m0), DRL_OK);
  ASSERT_EQ(drl_d3s_token_scores(&adv[half], &H[half * T], &valid[half * T], nullptr, rows - half, T, &scores[m0],
                                 &m1),
            DRL_OK);
  drl_d3s_cut cut;
  ASSERT_EQ(drl_d3s_token_cut(scores.data(), m0 + m1, drl_d3s_token_budget(m0 + m1, 0.3), &cut), DRL_OK);
  std::vector<uint8_t> split(N);
  int64_t k0 = 0, k1 = 0;
  ASSERT_EQ(drl_d3s_apply_cut(adv.data(), H.data(), valid.data(), nullptr, half, T, 0, &cut, split.data(), &k0),
            DRL_OK);
  ASSERT_EQ(drl_d3s_apply_cut(&adv[half], &H[half * T], &valid[half * T], nullptr, rows - half, T, m0, &cut,
                              &split[half * T], &k1),
            DRL_OK);
  EXPECT_EQ(split, whole);
  EXPECT_EQ(k0 + k1, drl_d3s_token_budget(m0 + m1, 0.3));
}

TEST(D3sSchedule, EndpointsMidpointAndOff) {
  drl_d3s_schedule s = {4, 8, 0.2, 0.5, 1};
  int n = 0;
  double K = 0;
  ASSERT_EQ(drl_d3s_schedule_at(&s, 0, 100, &n, &K), DRL_OK);
  EXPECT_EQ(n, 4);
  EXPECT_EQ(K, 0.2);
  ASSERT_EQ(drl_d3s_schedule_at(&s, 100, 100, &n, &K), DRL_OK);
  EXPECT_EQ(n, 8);
  EXPECT_EQ(K, 0.5);
  ASSERT_EQ(drl_d3s_schedule_at(&s, 50, 100, &n, &K), DRL_OK);
  EXPECT_EQ(n, 6);
  EXPECT_NEAR(K, 0.35, 1e-15);
  ASSERT_EQ(drl_d3s_schedule_at(&s, 25, 100, &n, &K), DRL_OK);
  EXPECT_EQ(n, 5);
  EXPECT_NEAR(K, 0.275, 1e-15);
  ASSERT_EQ(drl_d3s_schedule_at(&s, 500, 100, &n, &K), DRL_OK);  // progress clamps to 1
  EXPECT_EQ(n, 8);
  EXPECT_EQ(K, 0.5);
  drl_d3s_schedule odd = {4, 7, 0.2, 0.5, 1};
  ASSERT_EQ(drl_d3s_schedule_at(&odd, 1, 2, &n, &K), DRL_OK);
  EXPECT_EQ(n, 6);  // 5.5 rounds half away from zero
  s.enabled = 0;
  ASSERT_EQ(drl_d3s_schedule_at(&s, 50, 100, &n, &K), DRL_OK);
  EXPECT_EQ(n, 4);
  EXPECT_EQ(K, 0.2);
  drl_d3s_schedule bad = {0, 8, 0.2, 0.5, 1};
  EXPECT_EQ(drl_d3s_schedule_at(&bad, 0, 10, &n, &K), DRL_ERR_INVALID_ARG);
  bad = {4, 8, 0.2, 1.5, 1};
  EXPECT_EQ(drl_d3s_schedule_at(&bad, 0, 10, &n, &K), DRL_ERR_INVALID_ARG);
}

TEST(D3sSchedule, ScopeEnumsMatchConfig) {
  EXPECT_EQ((int)DRL_D3S_CROSS, (int)DRL_CFG_SCOPE_CROSS);
  EXPECT_EQ((int)DRL_D3S_INTRA, (int)DRL_CFG_SCOPE_INTRA);
  EXPECT_EQ((int)DRL_D3S_TOKENS_BATCH, (int)DRL_CFG_TOKENS_BATCH);
  EXPECT_EQ((int)DRL_D3S_TOKENS_SEQUENCE, (int)DRL_CFG_TOKENS_SEQUENCE);
}

}  // namespace
