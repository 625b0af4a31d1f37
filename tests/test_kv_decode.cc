// The kernels of incremental decoding and sampling on the CPU: KV append against a naive scatter, decode attention
// against the training forward's attention (bit for bit) and a double-precision reference, the top-k / top-p
// candidate sets, sample frequencies by chi-square, and the LM-head lane layout of the recorded log-probs.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>  // before the C headers: they include <math.h> inside extern "C"
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/device.h"
#include "kernels/gemm.h"
#include "kernels/kv_append.h"
#include "kernels/lm_head.h"
#include "kernels/philox.h"
#include "kernels/sampling.h"
}

// ---------------------------------------------------------------- KV append

TEST(KvAppend, ScattersRowsToSlotsAndPositions) {
  drl_device dev = cpu_device();
  const int n_slots = 5, T_cap = 7, kvd = 6, src_rows = 9, N = 8;
  std::vector<float> ks = random_uniform((size_t)src_rows * kvd, 1), vs = random_uniform((size_t)src_rows * kvd, 2);
  std::vector<float> kc((size_t)n_slots * T_cap * kvd, -7.0f), vc = kc;
  std::vector<int32_t> src = {3, 0, 8, 1, 1, 5, 2, 7}, slot = {0, 4, 2, 2, 3, 1, 0, 4}, pos = {0, 6, 3, 4, 0, 2, 1, 5};
  std::vector<float> want_k = kc, want_v = vc;
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < kvd; ++c) {
      want_k[((size_t)slot[i] * T_cap + pos[i]) * kvd + c] = ks[(size_t)src[i] * kvd + c];
      want_v[((size_t)slot[i] * T_cap + pos[i]) * kvd + c] = vs[(size_t)src[i] * kvd + c];
    }
  ASSERT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), src.data(), slot.data(), pos.data(), N,
                          src_rows, n_slots, T_cap, kvd),
            DRL_OK)
      << last_error();
  EXPECT_EQ(kc, want_k);
  EXPECT_EQ(vc, want_v);
  // NULL src_row: entry i copies row i
  std::vector<int32_t> slot2 = {4, 3}, pos2 = {6, 6};
  ASSERT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), nullptr, slot2.data(), pos2.data(), 2,
                          src_rows, n_slots, T_cap, kvd),
            DRL_OK);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(0, memcmp(&kc[((size_t)slot2[i] * T_cap + 6) * kvd], &ks[(size_t)i * kvd], kvd * sizeof(float)));
}

TEST(KvAppend, RejectsOutOfRangeEntriesBeforeWriting) {
  drl_device dev = cpu_device();
  const int n_slots = 2, T_cap = 3, kvd = 4;
  std::vector<float> ks = random_uniform(2 * kvd, 3), vs = ks;
  std::vector<float> kc((size_t)n_slots * T_cap * kvd, 0.0f), vc = kc, k0 = kc;
  std::vector<int32_t> slot = {0, 2}, pos = {0, 0};
  drl_clear_error();
  EXPECT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), nullptr, slot.data(), pos.data(), 2, 2,
                          n_slots, T_cap, kvd),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("entry 1");
  EXPECT_EQ(kc, k0) << "nothing written";
  slot = {0, 1};
  pos = {3, 0};
  EXPECT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), nullptr, slot.data(), pos.data(), 2, 2,
                          n_slots, T_cap, kvd),
            DRL_ERR_INVALID_ARG);
  std::vector<int32_t> src = {0, 2};
  pos = {0, 1};
  EXPECT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), src.data(), slot.data(), pos.data(), 2, 2,
                          n_slots, T_cap, kvd),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_kv_append(&dev, kc.data(), vc.data(), ks.data(), vs.data(), nullptr, slot.data(), pos.data(), 2, 2,
                          n_slots, T_cap, 0),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(kc, k0);
}

// ---------------------------------------------------------------- decode attention

namespace {

struct DecodeCase {
  int B = 3, T = 9, H = 4, KV = 2, D = 6, T_cap = 12;
  std::vector<int32_t> rs{0, 3, 8};
  std::vector<int32_t> slot_of{2, 0, 3};  // row b lives in cache slot slot_of[b]
  int n_slots = 4;
  std::vector<float> q, k, v;
  DecodeCase() {
    q = random_uniform((size_t)B * T * H * D, 11, -2, 2);
    k = random_uniform((size_t)B * T * KV * D, 12, -2, 2);
    v = random_uniform((size_t)B * T * KV * D, 13);
  }
  // The cache holding every position of every row (slot_of[b], t); row_start per slot.
  void fill_cache(std::vector<float> *kc, std::vector<float> *vc, std::vector<int32_t> *slot_rs) const {
    int kvd = KV * D;
    kc->assign((size_t)n_slots * T_cap * kvd, 123.0f);  // unused positions hold junk
    vc->assign(kc->size(), -55.0f);
    slot_rs->assign(n_slots, 0);
    for (int b = 0; b < B; ++b) {
      (*slot_rs)[slot_of[b]] = rs[b];
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < kvd; ++c) {
          (*kc)[((size_t)slot_of[b] * T_cap + t) * kvd + c] = k[((size_t)b * T + t) * kvd + c];
          (*vc)[((size_t)slot_of[b] * T_cap + t) * kvd + c] = v[((size_t)b * T + t) * kvd + c];
        }
    }
  }
  // The view of a cache without a shared prefix (P = 0): every column in the slot's own store, group = slot.
  drl_decode_kv view(const std::vector<float> &kc, const std::vector<float> &vc,
                     const std::vector<int32_t> &slot_rs) const {
    static const float unused = 0.0f;
    return {&unused, &unused, kc.data(), vc.data(), slot_rs.data(), n_slots, 0, n_slots, T_cap, 0};
  }
  // Decodes the queries of position t of every row.
  std::vector<float> decode_at(int t, const std::vector<float> &kc, const std::vector<float> &vc,
                               const std::vector<int32_t> &slot_rs) const {
    drl_device dev = cpu_device();
    std::vector<float> qt((size_t)B * H * D), out(qt.size(), 9.0f);
    for (int b = 0; b < B; ++b)
      std::copy_n(&q[((size_t)b * T + t) * H * D], H * D, &qt[(size_t)b * H * D]);
    std::vector<int32_t> pos(B, t);
    std::vector<float> scratch(drl_attention_decode_scratch_floats(B, H, T_cap));
    drl_decode_kv kv = view(kc, vc, slot_rs);
    EXPECT_EQ(drl_attention_decode(&dev, out.data(), qt.data(), &kv, slot_of.data(), slot_of.data(), pos.data(), B, H,
                                   KV, D, scratch.data()),
              DRL_OK)
        << last_error();
    return out;
  }
};

}  // namespace

// Decoding position t against a cache reproduces row t of the full causal attention, bit for bit: the same scores,
// the same softmax row math, the same output sums, and padded queries give exact zeros.
TEST(AttentionDecode, BitIdenticalToFullSequenceAttention) {
  DecodeCase c;
  std::vector<float> full((size_t)c.B * c.T * c.H * c.D), att((size_t)c.B * c.H * c.T * c.T);
  ASSERT_EQ(drl_attention_forward_cpu(full.data(), att.data(), c.q.data(), c.k.data(), c.v.data(), c.rs.data(), c.B,
                                      c.T, c.H, c.KV, c.D),
            DRL_OK);
  std::vector<float> kc, vc;
  std::vector<int32_t> slot_rs;
  c.fill_cache(&kc, &vc, &slot_rs);
  // Positions after t hold the future: decoding must not read them. Poison them per t.
  for (int t = 0; t < c.T; ++t) {
    std::vector<float> kt = kc, vt = vc;
    for (int b = 0; b < c.B; ++b)
      for (int j = t + 1; j < c.T_cap; ++j)
        for (int e = 0; e < c.KV * c.D; ++e) {
          kt[((size_t)c.slot_of[b] * c.T_cap + j) * c.KV * c.D + e] = NAN;
          vt[((size_t)c.slot_of[b] * c.T_cap + j) * c.KV * c.D + e] = NAN;
        }
    std::vector<float> out = c.decode_at(t, kt, vt, slot_rs);
    for (int b = 0; b < c.B; ++b)
      ASSERT_EQ(0, memcmp(&out[(size_t)b * c.H * c.D], &full[((size_t)b * c.T + t) * c.H * c.D],
                          c.H * c.D * sizeof(float)))
          << "row " << b << " position " << t;
  }
}

TEST(AttentionDecode, MatchesDoublePrecisionReference) {
  DecodeCase c;
  std::vector<float> kc, vc;
  std::vector<int32_t> slot_rs;
  c.fill_cache(&kc, &vc, &slot_rs);
  int g = c.H / c.KV;
  for (int t : {0, 4, 8}) {
    std::vector<float> out = c.decode_at(t, kc, vc, slot_rs);
    for (int b = 0; b < c.B; ++b)
      for (int h = 0; h < c.H; ++h) {
        std::vector<double> p;
        double mx = -1e300, sum = 0;
        for (int j = c.rs[b]; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < c.D; ++d)
            dot += (double)c.q[(((size_t)b * c.T + t) * c.H + h) * c.D + d] *
                   c.k[(((size_t)b * c.T + j) * c.KV + h / g) * c.D + d];
          p.push_back(dot / std::sqrt((double)c.D));
          mx = std::max(mx, p.back());
        }
        for (double &x : p) sum += (x = std::exp(x - mx));
        for (int d = 0; d < c.D; ++d) {
          double o = 0;
          for (size_t jj = 0; jj < p.size(); ++jj)
            o += p[jj] / sum * c.v[(((size_t)b * c.T + c.rs[b] + jj) * c.KV + h / g) * c.D + d];
          ASSERT_NEAR(out[((size_t)b * c.H + h) * c.D + d], o, 2e-6) << "b=" << b << " h=" << h << " t=" << t;
        }
      }
  }
}

TEST(AttentionDecode, ThreadCountChangesNoBit) {
  DecodeCase c;
  std::vector<float> kc, vc;
  std::vector<int32_t> slot_rs;
  c.fill_cache(&kc, &vc, &slot_rs);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one = c.decode_at(8, kc, vc, slot_rs);
  omp_set_num_threads(2);
  std::vector<float> two = c.decode_at(8, kc, vc, slot_rs);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, memcmp(one.data(), two.data(), one.size() * sizeof(float)));
}

TEST(AttentionDecode, RejectsBadArguments) {
  drl_device dev = cpu_device();
  DecodeCase c;
  std::vector<float> kc, vc;
  std::vector<int32_t> slot_rs;
  c.fill_cache(&kc, &vc, &slot_rs);
  drl_decode_kv kv = c.view(kc, vc, slot_rs);
  std::vector<float> q((size_t)c.B * c.H * c.D), out(q.size()), scratch(c.B * c.H * c.T_cap);
  std::vector<int32_t> pos(c.B, 4), bad_slot = {0, 4, 1};
  drl_clear_error();
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, c.slot_of.data(), bad_slot.data(), pos.data(), c.B,
                                 c.H, c.KV, c.D, scratch.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("row 1");
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, bad_slot.data(), c.slot_of.data(), pos.data(), c.B,
                                 c.H, c.KV, c.D, scratch.data()),
            DRL_ERR_INVALID_ARG)
      << "group outside the prefix store";
  std::vector<int32_t> bad_pos = {4, c.T_cap, 4};
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, c.slot_of.data(), c.slot_of.data(), bad_pos.data(),
                                 c.B, c.H, c.KV, c.D, scratch.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, c.slot_of.data(), c.slot_of.data(), pos.data(), c.B,
                                 3, c.KV, c.D, scratch.data()),
            DRL_ERR_INVALID_ARG)
      << "KV must divide H";
  drl_decode_kv long_prefix = kv;
  long_prefix.P = 1;  // > P_cap 0
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &long_prefix, c.slot_of.data(), c.slot_of.data(),
                                 pos.data(), c.B, c.H, c.KV, c.D, scratch.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, c.slot_of.data(), c.slot_of.data(), pos.data(), c.B,
                                 c.H, c.KV, c.D, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("scratch");
}

// The prompt stored once per group: rows of a group read its prefix columns from the group's store and the rest from
// their own. Every output equals the row-by-row path (drl_attention_decode_row over the row's columns laid out
// contiguously) bit for bit, for groups of 1, 3 and 16 rows, 1 and 2 query heads per kv head, varied row starts,
// rows at different columns (one still on its last prompt column, one on padding), a group split into two runs by
// another group's rows, and 1 or 2 threads.
TEST(AttentionDecode, SharedPrefixIsBitIdenticalToTheRowByRowPath) {
  drl_device dev = cpu_device();
  const int D = 12, KV = 2, P = 11, P_cap = 13, S_cap = 9, n_groups = 3;
  const std::vector<int32_t> group_rs = {0, 4, 10};
  for (int G : {1, 3, 16})
    for (int g : {1, 2}) {
      const int H = KV * g, N = n_groups * G, kvd = KV * D, T_cap = P + S_cap;
      SCOPED_TRACE(testing::Message() << "G=" << G << " g=" << g);
      std::mt19937 rng(100 + G * 10 + g);
      std::vector<float> kp = random_uniform((size_t)n_groups * P_cap * kvd, 1 + G, -2, 2);
      std::vector<float> vp = random_uniform(kp.size(), 2 + G);
      std::vector<float> ks = random_uniform((size_t)N * S_cap * kvd, 3 + G, -2, 2);
      std::vector<float> vs = random_uniform(ks.size(), 4 + G);
      std::vector<float> q = random_uniform((size_t)N * H * D, 5 + G, -2, 2);
      // Row order: group 1's rows, then group 0's, then group 2's first half, group 1's last row, group 2's rest.
      std::vector<int32_t> grp, slot, pos;
      auto add = [&](int gr, int k) {
        grp.push_back(gr);
        slot.push_back(gr * G + k);
        pos.push_back(P + (int32_t)(rng() % S_cap));
      };
      for (int k = 0; k < G - 1; ++k) add(1, k);
      for (int k = 0; k < G; ++k) add(0, k);
      for (int k = 0; k < G / 2; ++k) add(2, k);
      add(1, G - 1);
      for (int k = G / 2; k < G; ++k) add(2, k);
      pos[0] = P - 1;  // a row still reading its last prompt column
      pos[N - 1] = 3;  // group 2's prompt starts at column 10: a padding query, all zeros
      const drl_decode_kv kv = {kp.data(), vp.data(), ks.data(), vs.data(), group_rs.data(), n_groups, P_cap, N, S_cap, P};
      std::vector<float> want((size_t)N * H * D), row(T_cap);
      for (int i = 0; i < N; ++i) {
        // the row's columns [0, pos] contiguous: its group's prefix, then its own suffix
        std::vector<float> k((size_t)T_cap * kvd), v(k.size());
        for (int j = 0; j < T_cap; ++j)
          for (int e = 0; e < kvd; ++e) {
            size_t src = j < P ? ((size_t)grp[i] * P_cap + j) * kvd + e : ((size_t)slot[i] * S_cap + j - P) * kvd + e;
            k[(size_t)j * kvd + e] = j < P ? kp[src] : ks[src];
            v[(size_t)j * kvd + e] = j < P ? vp[src] : vs[src];
          }
        int lo, hi;
        drl_attention_key_range(pos[i], group_rs[grp[i]], &lo, &hi);
        for (int h = 0; h < H; ++h)
          drl_attention_decode_row(&want[((size_t)i * H + h) * D], row.data(), &q[((size_t)i * H + h) * D],
                                   k.data() + (h / g) * D, v.data() + (h / g) * D, kvd, lo, hi, D,
                                   drl_attention_scale(D));
      }
      int saved = omp_get_max_threads();
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        std::vector<float> out(want.size(), 7.0f), scratch(drl_attention_decode_scratch_floats(N, H, T_cap), 5.0f);
        ASSERT_EQ(drl_attention_decode(&dev, out.data(), q.data(), &kv, grp.data(), slot.data(), pos.data(), N, H, KV,
                                       D, scratch.data()),
                  DRL_OK)
            << last_error();
        EXPECT_EQ(0, memcmp(out.data(), want.data(), want.size() * sizeof(float))) << threads << " threads";
      }
      omp_set_num_threads(saved);
    }
}

// ---------------------------------------------------------------- sampling math

namespace {

// The kept candidates as a vector of ids, in the order drl_sample_candidates returns them.
std::vector<int> candidates(const std::vector<float> &z, int top_k, float top_p) {
  std::vector<int32_t> idx(z.size());
  std::vector<float> w(z.size());
  int n = drl_sample_candidates(z.data(), (int)z.size(), top_k, top_p, idx.data(), w.data());
  return std::vector<int>(idx.begin(), idx.begin() + n);
}

// The distribution sampling should follow, in double: candidate order (logit desc, id asc), top-k, the smallest
// prefix with mass >= top_p, renormalised; 0 for the rest.
std::vector<double> expected_distribution(const std::vector<float> &z, int top_k, double top_p) {
  int V = (int)z.size();
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  int k = top_k > 0 && top_k < V ? top_k : V;
  double mx = z[order[0]], total = 0;
  std::vector<double> w(k);
  for (int i = 0; i < k; ++i) total += (w[i] = std::exp((double)z[order[i]] - mx));
  int n = k;
  if (top_p < 1.0) {
    double cum = 0;
    for (int i = 0; i < k; ++i)
      if ((cum += w[i]) >= top_p * total) {
        n = i + 1;
        break;
      }
  }
  double kept = 0;
  for (int i = 0; i < n; ++i) kept += w[i];
  std::vector<double> p(V, 0.0);
  for (int i = 0; i < n; ++i) p[order[i]] = w[i] / kept;
  return p;
}

}  // namespace

TEST(Sampling, CandidateOrderTopKAndTopP) {
  //                         0     1     2     3     4     5     6     7
  std::vector<float> z = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.5f, -3.0f, 0.0f};
  // both off: the whole row in id order, no sort
  EXPECT_EQ(candidates(z, 0, 1.0f), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(candidates(z, 8, 1.0f), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7})) << "k = V is off";
  // top-k: higher logit first, the lower id first among equal logits
  EXPECT_EQ(candidates(z, 1, 1.0f), (std::vector<int>{1}));
  EXPECT_EQ(candidates(z, 2, 1.0f), (std::vector<int>{1, 3}));
  EXPECT_EQ(candidates(z, 4, 1.0f), (std::vector<int>{1, 3, 4, 0}));
  EXPECT_EQ(candidates(z, 7, 1.0f), (std::vector<int>{1, 3, 4, 0, 5, 7, 2}));
  // top-p: weights e^(z - 2): 1, 1, e^-1 = .368, e^-1.5 = .223 (x2), e^-2 = .135, e^-3 = .050, e^-5 = .007
  // total 3.006: p = 0.3 needs 0.90 -> {1}; 0.5 needs 1.50 -> {1, 3}; 0.8 needs 2.40 -> 1, 3, 4, 0 (2.59)
  EXPECT_EQ(candidates(z, 0, 0.3f), (std::vector<int>{1}));
  EXPECT_EQ(candidates(z, 0, 0.5f), (std::vector<int>{1, 3}));
  EXPECT_EQ(candidates(z, 0, 0.8f), (std::vector<int>{1, 3, 4, 0}));
  EXPECT_EQ(candidates(z, 0, 1e-6f), (std::vector<int>{1})) << "tiny p is greedy";
  // top-p applies to what top-k kept: k = 3 keeps mass 2.368; p = 0.9 needs 2.13 -> all three
  EXPECT_EQ(candidates(z, 3, 0.9f), (std::vector<int>{1, 3, 4}));
  EXPECT_EQ(candidates(z, 3, 0.6f), (std::vector<int>{1, 3}));
  // a larger vocabulary against a full sort, for several k (exercises the bounded heap)
  std::vector<float> big = random_uniform(1000, 21, -4, 4);
  for (int i = 0; i < 1000; i += 7) big[i] = big[i / 2];  // plenty of ties
  std::vector<int> order(1000);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return big[a] > big[b] || (big[a] == big[b] && a < b); });
  for (int k : {1, 2, 17, 500, 999})
    EXPECT_EQ(candidates(big, k, 1.0f), std::vector<int>(order.begin(), order.begin() + k)) << "k=" << k;
  std::vector<int> nucleus = candidates(big, 0, 0.99f);
  EXPECT_GT(nucleus.size(), 500u);
  EXPECT_EQ(nucleus, std::vector<int>(order.begin(), order.begin() + nucleus.size())) << "a prefix of the order";
}

TEST(Sampling, DrawIsInverseCdfOverKeptWeights) {
  std::vector<int32_t> idx = {5, 2, 9};
  std::vector<float> w = {0.5f, 0.25f, 0.25f};
  EXPECT_EQ(drl_sample_draw(idx.data(), w.data(), 3, 0.0f), 5);
  EXPECT_EQ(drl_sample_draw(idx.data(), w.data(), 3, 0.4999f), 5);
  EXPECT_EQ(drl_sample_draw(idx.data(), w.data(), 3, 0.5f), 2);
  EXPECT_EQ(drl_sample_draw(idx.data(), w.data(), 3, 0.75f), 9);
  EXPECT_EQ(drl_sample_draw(idx.data(), w.data(), 3, 1.0f - 0x1p-24f), 9);
  // a zero weight is never drawn, not even at the ends
  std::vector<float> wz = {0.0f, 1.0f, 0.0f};
  EXPECT_EQ(drl_sample_draw(idx.data(), wz.data(), 3, 0.0f), 2);
  EXPECT_EQ(drl_sample_draw(idx.data(), wz.data(), 3, 1.0f - 0x1p-24f), 2);
}

// Frequencies of many draws (Philox uniforms, as rollout draws them) against the renormalised truncated distribution:
// Pearson's chi-square below its 1e-4 quantile, and tokens outside the kept set never drawn.
TEST(Sampling, FrequenciesMatchRenormalisedDistribution) {
  std::vector<float> z = {1.2f, 0.4f, 0.4f, -0.3f, 2.0f, -1.5f, 0.9f, 0.1f, -0.8f, 1.6f};
  const int V = (int)z.size(), n = 200000;
  const double chi2_q[] = {0, 15.14, 18.42, 21.11, 23.51, 25.74, 27.86, 29.88, 31.83, 33.72};  // dof 1..9, 1e-4
  struct Cfg {
    int k;
    float p;
  };
  for (Cfg cfg : {Cfg{0, 1.0f}, Cfg{3, 1.0f}, Cfg{2, 1.0f}, Cfg{0, 0.7f}, Cfg{5, 0.8f}, Cfg{7, 0.9f}}) {
    SCOPED_TRACE(testing::Message() << "top_k=" << cfg.k << " top_p=" << cfg.p);
    std::vector<double> want = expected_distribution(z, cfg.k, cfg.p);
    std::vector<int32_t> idx(V);
    std::vector<float> w(V);
    int kept = drl_sample_candidates(z.data(), V, cfg.k, cfg.p, idx.data(), w.data());
    std::vector<long> count(V, 0);
    uint32_t tag = drl_rng_tag(DRL_RNG_TEST, 0, 0);
    for (int i = 0; i < n; ++i) count[drl_sample_draw(idx.data(), w.data(), kept, drl_rng_uniform(99, 1, tag, i))]++;
    double chi2 = 0;
    int support = 0;
    for (int j = 0; j < V; ++j) {
      if (want[j] == 0) {
        EXPECT_EQ(count[j], 0) << "token " << j << " is outside the kept set";
        continue;
      }
      ++support;
      double e = want[j] * n;
      chi2 += (count[j] - e) * (count[j] - e) / e;
    }
    EXPECT_EQ(support, kept);
    if (support > 1) {
      EXPECT_LT(chi2, chi2_q[support - 1]) << "dof " << support - 1;
    }
  }
}

// The recorded log-prob and entropy use the LM head's lane layout: the same bits as drl_lm_head_forward on the same
// logits, for vocabularies that use 32 to 512 lanes.
TEST(Sampling, RowLseHasTheLmHeadBits) {
  drl_device dev = cpu_device();
  const int N = 5, C = 16;
  for (int V : {13, 300, 3000, 50000}) {
    SCOPED_TRACE(testing::Message() << "V=" << V);
    std::vector<float> x = random_uniform((size_t)N * C, 31, -2, 2), W = random_uniform((size_t)V * C, 32);
    std::vector<int32_t> tg(N);
    for (int n = 0; n < N; ++n) tg[n] = (n * 7919) % V;
    std::vector<float> lp(N), ent(N), scratch(drl_lm_head_scratch_floats(&dev, N, V));
    ASSERT_EQ(drl_lm_head_forward(&dev, lp.data(), ent.data(), x.data(), W.data(), tg.data(), N, C, V, 0.7f,
                                  scratch.data(), N),
              DRL_OK)
        << last_error();
    // the head's logits call, then the sampler's row math
    std::vector<float> z((size_t)N * V);
    ASSERT_EQ(drl_gemm(&dev, 0, 1, N, V, C, 1.0f / 0.7f, x.data(), C, W.data(), C, 0.0f, z.data(), V), DRL_OK);
    for (int n = 0; n < N; ++n) {
      drl_lse a = drl_sample_row_lse(&z[(size_t)n * V], V);
      float my_lp = drl_lse_logprob(a, z[(size_t)n * V + tg[n]]), my_ent = drl_lse_entropy(a);
      EXPECT_EQ(0, memcmp(&my_lp, &lp[n], 4)) << my_lp << " vs " << lp[n];
      EXPECT_EQ(0, memcmp(&my_ent, &ent[n], 4)) << my_ent << " vs " << ent[n];
    }
  }
}
