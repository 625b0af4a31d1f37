// The transformer policy on the CPU: layout, initialisation, whole-model gradients against finite differences,
// left padding, determinism and a few steps of learning.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "models/transformer.h"
}

namespace {

drl_transformer_config tiny(int tied = 1) {
  drl_transformer_config c = {};
  c.vocab = 7;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq = 16;
  c.tied_embeddings = tied;
  c.rope_theta = 10000.0f;
  c.init_std = 0.3f;  // large enough that attention is far from uniform
  c.norm_eps = 1e-5f;
  return c;
}

std::vector<float> host_params(const drl_transformer &m) {
  return std::vector<float>(m.ps.params, m.ps.params + m.ps.layout.total);
}

struct Batch {
  int B = 2, T = 6;
  std::vector<int32_t> tokens, targets, row_start;
};

Batch make_batch(int vocab, uint32_t seed) {
  Batch b;
  std::mt19937 rng(seed);
  b.tokens.resize(b.B * b.T);
  b.targets.resize(b.B * b.T);
  for (int i = 0; i < b.B * b.T; ++i) {
    b.tokens[i] = (int32_t)(rng() % vocab);
    b.targets[i] = (int32_t)(rng() % vocab);
  }
  b.row_start = {0, 2};  // row 1 is left-padded by two tokens
  for (int t = 0; t < 2; ++t) b.targets[1 * b.T + t] = -1;
  b.targets[5] = -1;
  return b;
}

// L = sum_n w[n] * logprob[n]
double loss(drl_transformer *m, const Batch &b, const std::vector<float> &w) {
  std::vector<float> lp(b.B * b.T);
  EXPECT_EQ(drl_transformer_forward(m, b.tokens.data(), b.targets.data(), b.row_start.data(), b.B, b.T, 0.9f,
                                    lp.data(), nullptr),
            DRL_OK)
      << drl_last_error();
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i) s += (double)w[i] * lp[i];
  return s;
}

}  // namespace

TEST(Transformer, LayoutIsContiguousAndNamed) {
  for (int tied : {1, 0}) {
    drl_transformer_config c = tiny(tied);
    drl_layout lay;
    ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK) << drl_last_error();
    int64_t at = 0;
    for (int i = 0; i < lay.count; ++i) {
      EXPECT_EQ(lay.tensors[i].offset, at) << lay.tensors[i].name;
      at += lay.tensors[i].shape[0] * lay.tensors[i].shape[1];
    }
    EXPECT_EQ(at, lay.total);
    int64_t C = 8, F = 12, KVD = 4, V = 7;
    int64_t per_layer = C + C * C + 2 * KVD * C + C * C + C + 3 * F * C;
    EXPECT_EQ(lay.total, V * C + 2 * per_layer + C + (tied ? 0 : V * C));
    ASSERT_NE(drl_layout_find(&lay, "layers.1.wk"), nullptr);
    EXPECT_EQ(drl_layout_find(&lay, "layers.1.wk")->shape[0], KVD);
    EXPECT_EQ(drl_layout_find(&lay, "lm_head") != nullptr, !tied);
    EXPECT_FALSE(drl_layout_find(&lay, "final_norm")->decay);
    EXPECT_TRUE(drl_layout_find(&lay, "layers.0.w_up")->decay);
    drl_layout_free(&lay);
  }
  drl_transformer_config bad = tiny();
  bad.n_kv_heads = 3;
  drl_layout lay;
  EXPECT_EQ(drl_transformer_layout(&bad, &lay), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("n_kv_heads 3");
}

TEST(Transformer, InitIsSeededAndShaped) {
  drl_device d = cpu_device();
  drl_transformer_config c = tiny();
  c.d_model = 64;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 128;
  c.init_std = 0.02f;
  drl_transformer a, b, other;
  ASSERT_EQ(drl_transformer_create(&a, &c, &d, 2, 8, 7), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_transformer_create(&b, &c, &d, 2, 8, 7), DRL_OK);
  ASSERT_EQ(drl_transformer_create(&other, &c, &d, 2, 8, 8), DRL_OK);
  EXPECT_EQ(0, memcmp(a.ps.params, b.ps.params, a.ps.layout.total * sizeof(float)));
  EXPECT_NE(0, memcmp(a.ps.params, other.ps.params, a.ps.layout.total * sizeof(float)));
  const drl_tensor_info *norm = drl_layout_find(&a.ps.layout, "layers.0.ffn_norm");
  for (int i = 0; i < norm->shape[0]; ++i) EXPECT_EQ(a.ps.params[norm->offset + i], 1.0f);
  const drl_tensor_info *wq = drl_layout_find(&a.ps.layout, "layers.1.w_gate");
  double s2 = 0;
  int64_t n = wq->shape[0] * wq->shape[1];
  for (int64_t i = 0; i < n; ++i) s2 += (double)a.ps.params[wq->offset + i] * a.ps.params[wq->offset + i];
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.002);
  const drl_tensor_info *wo = drl_layout_find(&a.ps.layout, "layers.1.wo");
  s2 = 0;
  n = wo->shape[0] * wo->shape[1];
  for (int64_t i = 0; i < n; ++i) s2 += (double)a.ps.params[wo->offset + i] * a.ps.params[wo->offset + i];
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02 / 2.0, 0.002) << "residual projections scaled by 1/sqrt(2L)";
  drl_transformer_free(&a);
  drl_transformer_free(&b);
  drl_transformer_free(&other);
}

// Every tensor's gradient against central differences of the whole model, tied and untied, with a padded row.
TEST(Transformer, GradientsMatchFiniteDifferences) {
  for (int tied : {1, 0}) {
    drl_device d = cpu_device();
    drl_transformer_config c = tiny(tied);
    drl_transformer m;
    ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 11), DRL_OK) << drl_last_error();
    Batch b = make_batch(c.vocab, 5);
    std::vector<float> w(b.B * b.T);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float &x : w) x = nd(rng);
    loss(&m, b, w);
    ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(&m, w.data()), DRL_OK) << drl_last_error();
    std::vector<float> grads(m.ps.grads, m.ps.grads + m.ps.layout.total);
    const float eps = 1e-2f;
    int checked = 0, bad = 0;
    for (int ti = 0; ti < m.ps.layout.count; ++ti) {
      const drl_tensor_info &t = m.ps.layout.tensors[ti];
      int64_t n = t.shape[0] * t.shape[1];
      double max_abs = 0;
      for (int64_t j = 0; j < n; ++j) max_abs = std::fmax(max_abs, std::fabs(grads[t.offset + j]));
      EXPECT_GT(max_abs, 1e-6) << t.name << " receives no gradient";
      for (int s = 0; s < 4; ++s) {
        int64_t j = t.offset + (int64_t)(rng() % n);
        float saved = m.ps.params[j];
        m.ps.params[j] = saved + eps;
        double up = loss(&m, b, w);
        m.ps.params[j] = saved - eps;
        double down = loss(&m, b, w);
        m.ps.params[j] = saved;
        double fd = (up - down) / (2 * eps), an = grads[j];
        ++checked;
        if (std::fabs(fd - an) > 2e-3 + 2e-2 * std::fmax(std::fabs(fd), std::fabs(an))) {
          ++bad;
          ADD_FAILURE() << (tied ? "tied " : "untied ") << t.name << "[" << j - t.offset << "]: analytic " << an
                        << " finite difference " << fd;
        }
      }
    }
    EXPECT_EQ(bad, 0) << "of " << checked;
    drl_transformer_free(&m);
  }
}

// A left-padded row scores its real tokens as the same row unpadded (positions count from row_start).
TEST(Transformer, LeftPaddingDoesNotChangeScores) {
  drl_device d = cpu_device();
  drl_transformer_config c = tiny();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 8, 4), DRL_OK);
  std::vector<int32_t> seq = {1, 4, 2, 6, 3}, tg = {4, 2, 6, 3, 5};
  const int T = 8, pad = 3;
  std::vector<int32_t> tokens(2 * T, 0), targets(2 * T, -1), row_start = {0, pad};
  for (int i = 0; i < 5; ++i) {
    tokens[i] = seq[i];
    targets[i] = tg[i];
    tokens[T + pad + i] = seq[i];
    targets[T + pad + i] = tg[i];
  }
  tokens[T + 0] = 5;  // garbage in the padding must not matter
  tokens[T + 1] = 6;
  std::vector<float> lp(2 * T), ent(2 * T);
  ASSERT_EQ(drl_transformer_forward(&m, tokens.data(), targets.data(), row_start.data(), 2, T, 1.0f, lp.data(),
                                    ent.data()),
            DRL_OK)
      << drl_last_error();
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(lp[i], lp[T + pad + i], 1e-5) << i;
    EXPECT_NEAR(ent[i], ent[T + pad + i], 1e-5) << i;
    EXPECT_LT(lp[i], 0.0f);
    EXPECT_GT(ent[i], 0.0f);
    EXPECT_LE(ent[i], std::log(7.0f) + 1e-5f);
  }
  drl_transformer_free(&m);
}

TEST(Transformer, ForwardRejectsBadInput) {
  drl_device d = cpu_device();
  drl_transformer_config c = tiny();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 4), DRL_OK);
  Batch b = make_batch(c.vocab, 1);
  EXPECT_EQ(drl_transformer_forward(&m, b.tokens.data(), b.targets.data(), nullptr, 3, 6, 1.0f, nullptr, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("exceeds");
  b.tokens[3] = 99;
  EXPECT_EQ(drl_transformer_forward(&m, b.tokens.data(), b.targets.data(), nullptr, 2, 6, 1.0f, nullptr, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("99");
  drl_transformer_free(&m);
  drl_transformer_config big = tiny();
  EXPECT_EQ(drl_transformer_create(&m, &big, &d, 2, 17, 4), DRL_ERR_INVALID_ARG);
}

// AdamW steps on one fixed batch drive its loss down, identically in two runs; a NaN gradient is refused.
TEST(Transformer, StepsLearnDeterministically) {
  std::vector<float> finals;
  std::vector<std::vector<float>> params;
  for (int run = 0; run < 2; ++run) {
    drl_device d = cpu_device();
    drl_transformer_config c = tiny();
    c.init_std = 0.05f;
    drl_transformer m;
    ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 21), DRL_OK);
    Batch b = make_batch(c.vocab, 9);
    std::vector<float> lp(12), dlp(12);
    int scored = 0;
    for (int i = 0; i < 12; ++i) scored += b.targets[i] >= 0;
    float first = 0, last = 0;
    for (int step = 1; step <= 60; ++step) {
      ASSERT_EQ(drl_transformer_forward(&m, b.tokens.data(), b.targets.data(), b.row_start.data(), 2, 6, 1.0f,
                                        lp.data(), nullptr),
                DRL_OK);
      float nll = 0;
      for (int i = 0; i < 12; ++i) {
        nll -= lp[i] / scored;
        dlp[i] = b.targets[i] >= 0 ? -1.0f / scored : 0.0f;
      }
      if (step == 1) first = nll;
      last = nll;
      ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
      ASSERT_EQ(drl_transformer_backward(&m, dlp.data()), DRL_OK);
      drl_optim_hparams hp = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.01f, 1.0f, step};
      float norm = 0;
      ASSERT_EQ(optim_step(&m.ps, hp, &norm), DRL_OK) << drl_last_error();
      EXPECT_TRUE(std::isfinite(norm));
    }
    EXPECT_LT(last, 0.25f * first) << "loss " << first << " -> " << last;
    finals.push_back(last);
    params.push_back(host_params(m));
    m.ps.grads[3] = NAN;
    drl_optim_hparams hp = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 61};
    std::vector<float> before = host_params(m);
    EXPECT_EQ(optim_step(&m.ps, hp), DRL_ERR_NUMERIC);
    EXPECT_ERROR_HAS("step 61");
    EXPECT_ERROR_HAS("tok_emb");  // the tensor holding the NaN
    EXPECT_EQ(0, memcmp(before.data(), m.ps.params, before.size() * sizeof(float))) << "weights untouched";
    drl_transformer_free(&m);
  }
  EXPECT_EQ(finals[0], finals[1]);
  EXPECT_EQ(0, memcmp(params[0].data(), params[1].data(), params[0].size() * sizeof(float)));
}
