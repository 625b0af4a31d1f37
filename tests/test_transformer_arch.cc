// The policy's pretrained-architecture features on the CPU (Hugging Face Llama, Qwen2, Qwen3): head_dim apart from
// d_model / n_heads, q/k/v biases, per-head q/k norms, a padded vocabulary, RoPE scaling. Layout names and shapes,
// config checks, the forward against a naive double-precision model written from the Hugging Face definitions, every
// gradient against finite differences, and the tied embedding's gradient as the sum of its two uses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "transformer_arch.h"

extern "C" {
#include "models/kv_cache.h"
#include "models/transformer.h"
}

namespace {

// Two blocks, GQA (2 query heads, 1 kv head), heads of 6 over d_model 8 when head_dim is on.
drl_transformer_config tiny(int tied) {
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
  c.init_std = 0.3f;
  c.norm_eps = 1e-5f;
  return c;
}

struct Batch {
  int B = 2, T = 6;
  std::vector<int32_t> tokens, targets, row_start{0, 2};  // row 1 left-padded by two
};

// Tokens over the whole vocabulary (padding ids are valid inputs), targets over the scored ids.
Batch make_batch(const drl_transformer_config &c, uint32_t seed) {
  Batch b;
  std::mt19937 rng(seed);
  int Vu = drl_transformer_vocab_used(&c);
  for (int i = 0; i < b.B * b.T; ++i) {
    b.tokens.push_back((int32_t)(rng() % c.vocab));
    b.targets.push_back((int32_t)(rng() % Vu));
  }
  b.targets[b.T + 0] = b.targets[b.T + 1] = -1;  // row 1's padding
  b.targets[5] = -1;
  if (c.vocab > Vu) b.tokens[3] = c.vocab - 1;  // a padding id as an input
  return b;
}

// A model whose vector tensors are redrawn (biases and gains away from 0 and 1).
struct Model {
  drl_device dev = cpu_device();
  drl_transformer m{};
  Model(const drl_transformer_config &c, int B, int T, uint64_t seed) {
    EXPECT_EQ(drl_transformer_create(&m, &c, &dev, B, T, seed), DRL_OK) << drl_last_error();
    randomize_vectors(m.ps.layout, m.ps.params, (uint32_t)seed + 100);
  }
  ~Model() { drl_transformer_free(&m); }
  const float *param(const char *name) const {
    const drl_tensor_info *t = drl_layout_find(&m.ps.layout, name);
    EXPECT_NE(t, nullptr) << name;
    return t ? m.ps.params + t->offset : nullptr;
  }
};

std::vector<float> forward(drl_transformer *m, const Batch &b, float temp, std::vector<float> *ent = nullptr) {
  std::vector<float> lp(b.B * b.T), e(b.B * b.T);
  EXPECT_EQ(drl_transformer_forward(m, b.tokens.data(), b.targets.data(), b.row_start.data(), b.B, b.T, temp,
                                    lp.data(), e.data()),
            DRL_OK)
      << drl_last_error();
  if (ent) *ent = e;
  return lp;
}

// L = sum_n w[n] * logprob[n]
double loss(drl_transformer *m, const Batch &b, const std::vector<float> &w) {
  std::vector<float> lp = forward(m, b, 0.9f);
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i) s += (double)w[i] * lp[i];
  return s;
}

// ---- a naive model in double precision, written from the Hugging Face definitions (research note, section 2) ----

void rmsnorm_ref(const double *x, const float *w, int n, double eps, double *y) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  double r = 1.0 / std::sqrt(ss / n + eps);
  for (int i = 0; i < n; ++i) y[i] = x[i] * r * w[i];
}

// y[o] = sum_i W[o, i] x[i] (+ b[o]), W [out, in].
void linear_ref(const double *x, const float *W, const float *b, int in, int out, double *y) {
  for (int o = 0; o < out; ++o) {
    double s = b ? b[o] : 0.0;
    for (int i = 0; i < in; ++i) s += (double)W[(size_t)o * in + i] * x[i];
    y[o] = s;
  }
}

// The inverse frequencies, scaled as transformers' rope_init functions scale them, in double.
std::vector<double> inv_freq_ref(const drl_transformer_config &c, int D) {
  std::vector<double> inv(D / 2);
  const drl_rope_scaling &r = c.rope_scaling;
  for (int i = 0; i < D / 2; ++i) {
    double f = std::pow((double)c.rope_theta, -2.0 * i / D);
    if (r.type == DRL_ROPE_SCALING_LINEAR) f /= r.factor;
    if (r.type == DRL_ROPE_SCALING_LLAMA3) {
      double wl = 2 * 3.14159265358979323846 / f, orig = r.original_max_pos;
      if (wl > orig / r.low_freq_factor) {
        f /= r.factor;
      } else if (wl >= orig / r.high_freq_factor) {
        double s = (orig / wl - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1 - s) * f / r.factor + s * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

// Log-probs of the batch's targets (NaN where unscored) under softmax(logits / temp) over the first vocab_used ids.
std::vector<double> reference_logprobs(const Model &md, const Batch &b, float temp) {
  const drl_transformer_config &c = md.m.cfg;
  const int C = c.d_model, H = c.n_heads, KV = c.n_kv_heads, D = drl_transformer_head_dim(&c), F = c.d_ff;
  const int Vu = drl_transformer_vocab_used(&c), T = b.T;
  const double eps = c.norm_eps;
  std::vector<double> inv = inv_freq_ref(c, D), out(b.B * T, NAN);
  auto P = [&](int l, const char *what) {
    return md.param(("layers." + std::to_string(l) + "." + what).c_str());
  };
  for (int r = 0; r < b.B; ++r) {
    int rs = b.row_start[r];
    std::vector<double> x((size_t)T * C);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < C; ++i) x[(size_t)t * C + i] = md.param("tok_emb")[(size_t)b.tokens[r * T + t] * C + i];
    for (int l = 0; l < c.n_layers; ++l) {
      std::vector<double> q((size_t)T * H * D), k((size_t)T * KV * D), v((size_t)T * KV * D), xn(C);
      for (int t = rs; t < T; ++t) {
        rmsnorm_ref(&x[(size_t)t * C], P(l, "attn_norm"), C, eps, xn.data());
        double *qt = &q[(size_t)t * H * D], *kt = &k[(size_t)t * KV * D], *vt = &v[(size_t)t * KV * D];
        linear_ref(xn.data(), P(l, "wq"), c.qkv_bias ? P(l, "bq") : nullptr, C, H * D, qt);
        linear_ref(xn.data(), P(l, "wk"), c.qkv_bias ? P(l, "bk") : nullptr, C, KV * D, kt);
        linear_ref(xn.data(), P(l, "wv"), c.qkv_bias ? P(l, "bv") : nullptr, C, KV * D, vt);
        // per head: RMSNorm (Qwen3), then rotate_half RoPE at the position counted from the row's start
        for (int pass = 0; pass < 2; ++pass) {
          int heads = pass ? KV : H;
          double *base = pass ? kt : qt;
          for (int h = 0; h < heads; ++h) {
            double *u = base + (size_t)h * D;
            if (c.qk_norm) {
              std::vector<double> tmp(u, u + D);
              rmsnorm_ref(tmp.data(), P(l, pass ? "k_norm" : "q_norm"), D, eps, u);
            }
            for (int i = 0; i < D / 2; ++i) {
              double a = (t - rs) * inv[i], x1 = u[i], x2 = u[i + D / 2];
              u[i] = x1 * std::cos(a) - x2 * std::sin(a);
              u[i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
            }
          }
        }
      }
      std::vector<double> att((size_t)H * D), o(C), xn2(C), g(F), u(F), hh(F), dn(C);
      std::vector<double> x_new = x;
      for (int t = rs; t < T; ++t) {
        for (int h = 0; h < H; ++h) {
          int kh = h / (H / KV);
          std::vector<double> s;
          double mx = -INFINITY;
          for (int j = rs; j <= t; ++j) {
            double d = 0;
            for (int i = 0; i < D; ++i) d += q[((size_t)t * H + h) * D + i] * k[((size_t)j * KV + kh) * D + i];
            s.push_back(d / std::sqrt((double)D));
            mx = std::fmax(mx, s.back());
          }
          double z = 0;
          for (double &e : s) z += (e = std::exp(e - mx));
          for (int i = 0; i < D; ++i) {
            double acc = 0;
            for (int j = rs; j <= t; ++j) acc += s[j - rs] / z * v[((size_t)j * KV + kh) * D + i];
            att[(size_t)h * D + i] = acc;
          }
        }
        linear_ref(att.data(), P(l, "wo"), nullptr, H * D, C, o.data());
        double *xt = &x_new[(size_t)t * C];
        for (int i = 0; i < C; ++i) xt[i] += o[i];
        rmsnorm_ref(xt, P(l, "ffn_norm"), C, eps, xn2.data());
        linear_ref(xn2.data(), P(l, "w_gate"), nullptr, C, F, g.data());
        linear_ref(xn2.data(), P(l, "w_up"), nullptr, C, F, u.data());
        for (int i = 0; i < F; ++i) hh[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        linear_ref(hh.data(), P(l, "w_down"), nullptr, F, C, dn.data());
        for (int i = 0; i < C; ++i) xt[i] += dn[i];
      }
      x = x_new;
    }
    const float *W = md.param(c.tied_embeddings ? "tok_emb" : "lm_head");
    std::vector<double> xf(C), z(Vu);
    for (int t = rs; t < T; ++t) {
      int tg = b.targets[r * T + t];
      if (tg < 0) continue;
      rmsnorm_ref(&x[(size_t)t * C], md.param("final_norm"), C, eps, xf.data());
      linear_ref(xf.data(), W, nullptr, C, Vu, z.data());
      double mx = -INFINITY, s = 0;
      for (double &e : z) mx = std::fmax(mx, e /= temp);
      for (double e : z) s += std::exp(e - mx);
      out[r * T + t] = z[tg] - mx - std::log(s);
    }
  }
  return out;
}

// Every tensor's gradient against central differences of the whole model; every element of the vector tensors (the
// new biases and norms among them), four random elements of the others.
void check_gradients(const drl_transformer_config &c, uint64_t seed, const char *what) {
  SCOPED_TRACE(what);
  Model md(c, 2, 6, seed);
  drl_transformer *m = &md.m;
  Batch b = make_batch(c, (uint32_t)seed + 1);
  std::vector<float> w(b.B * b.T);
  std::mt19937 rng((uint32_t)seed + 2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float &x : w) x = nd(rng);
  loss(m, b, w);
  ASSERT_EQ(drl_params_zero_grads(&m->ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(m, w.data()), DRL_OK) << drl_last_error();
  std::vector<float> grads(m->ps.grads, m->ps.grads + m->ps.layout.total);
  const float eps = 1e-2f;
  int checked = 0, bad = 0;
  for (int ti = 0; ti < m->ps.layout.count; ++ti) {
    const drl_tensor_info &t = m->ps.layout.tensors[ti];
    int64_t n = t.shape[0] * t.shape[1];
    double max_abs = 0;
    for (int64_t j = 0; j < n; ++j) max_abs = std::fmax(max_abs, std::fabs(grads[t.offset + j]));
    EXPECT_GT(max_abs, 1e-6) << t.name << " receives no gradient";
    bool all = t.shape[1] == 1;
    for (int64_t s = 0; s < (all ? n : 4); ++s) {
      int64_t j = t.offset + (all ? s : (int64_t)(rng() % n));
      float saved = m->ps.params[j];
      m->ps.params[j] = saved + eps;
      double up = loss(m, b, w);
      m->ps.params[j] = saved - eps;
      double down = loss(m, b, w);
      m->ps.params[j] = saved;
      double fd = (up - down) / (2 * eps), an = grads[j];
      ++checked;
      if (std::fabs(fd - an) > 2e-3 + 2e-2 * std::fmax(std::fabs(fd), std::fabs(an))) {
        ++bad;
        ADD_FAILURE() << t.name << "[" << j - t.offset << "]: analytic " << an << " finite difference " << fd;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "of " << checked;
}

int64_t tensor_index(const drl_layout &lay, const std::string &name) {
  const drl_tensor_info *t = drl_layout_find(&lay, name.c_str());
  return t ? t - lay.tensors : -1;
}

}  // namespace

// The optional tensors: names, shapes, no weight decay, after the FFN's tensors of each block (dense or MoE), and a
// layout without them exactly the one from before they existed. head_dim shapes the projections.
TEST(TransformerArch, LayoutNamesAndShapesPerFeature) {
  struct Case {
    const char *what;
    int head_dim, bias, norm, moe;
  } cases[] = {{"plain", 0, 0, 0, 0},     {"head_dim", 6, 0, 0, 0},   {"qkv_bias", 0, 1, 0, 0},
               {"qk_norm", 0, 0, 1, 0},   {"all", 6, 1, 1, 0},        {"all + MoE", 6, 1, 1, 1}};
  drl_layout plain;
  drl_transformer_config pc = tiny(0);
  ASSERT_EQ(drl_transformer_layout(&pc, &plain), DRL_OK);
  for (const Case &k : cases) {
    SCOPED_TRACE(k.what);
    drl_transformer_config c = tiny(0);
    c.head_dim = k.head_dim;
    c.qkv_bias = k.bias;
    c.qk_norm = k.norm;
    if (k.moe) c.moe = {4, 2, 6, 0, 1, 1, 1.0f};  // block 1 is an MoE block
    drl_layout lay;
    ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK) << drl_last_error();
    const int64_t C = 8, D = k.head_dim ? k.head_dim : 4, HD = 2 * D, KVD = D;
    int64_t at = 0;
    for (int i = 0; i < lay.count; ++i) {
      EXPECT_EQ(lay.tensors[i].offset, at) << lay.tensors[i].name;
      at += lay.tensors[i].shape[0] * lay.tensors[i].shape[1];
    }
    EXPECT_EQ(at, lay.total);
    for (int l = 0; l < 2; ++l) {
      std::string p = "layers." + std::to_string(l) + ".";
      const drl_tensor_info *wq = drl_layout_find(&lay, (p + "wq").c_str());
      const drl_tensor_info *wo = drl_layout_find(&lay, (p + "wo").c_str());
      ASSERT_NE(wq, nullptr);
      EXPECT_EQ(wq->shape[0], HD);
      EXPECT_EQ(wq->shape[1], C);
      EXPECT_EQ(wo->shape[0], C);
      EXPECT_EQ(wo->shape[1], HD);
      EXPECT_EQ(drl_layout_find(&lay, (p + "wk").c_str())->shape[0], KVD);
      // the block's last FFN tensor, then the optional ones in order, then the next block
      int64_t last_ffn = tensor_index(lay, p + (k.moe && l == 1 ? "experts.w_down" : "w_down"));
      ASSERT_GE(last_ffn, 0);
      struct Want {
        const char *name;
        int64_t rows;
        bool present;
      } want[] = {{"bq", HD, k.bias != 0},      {"bk", KVD, k.bias != 0},    {"bv", KVD, k.bias != 0},
                  {"q_norm", D, k.norm != 0},   {"k_norm", D, k.norm != 0}};
      int64_t next = last_ffn + 1;
      for (const Want &x : want) {
        int64_t i = tensor_index(lay, p + x.name);
        EXPECT_EQ(i >= 0, x.present) << p << x.name;
        if (i < 0) continue;
        EXPECT_EQ(i, next) << p << x.name << " follows the FFN and the optional tensors before it";
        next = i + 1;
        EXPECT_EQ(lay.tensors[i].shape[0], x.rows) << x.name;
        EXPECT_EQ(lay.tensors[i].shape[1], 1) << x.name;
        EXPECT_FALSE(lay.tensors[i].decay) << x.name << " has no weight decay";
      }
      const char *after = l == 0 ? "layers.1.attn_norm" : "final_norm";
      EXPECT_EQ(tensor_index(lay, after), next) << "the block ends with its optional tensors";
    }
    if (k.head_dim == 0 && !k.bias && !k.norm && !k.moe) {  // unchanged: the same table as the plain config
      ASSERT_EQ(lay.count, plain.count);
      EXPECT_EQ(lay.total, plain.total);
      for (int i = 0; i < lay.count; ++i) {
        EXPECT_STREQ(lay.tensors[i].name, plain.tensors[i].name);
        EXPECT_EQ(lay.tensors[i].offset, plain.tensors[i].offset);
      }
    }
    drl_layout_free(&lay);
  }
  drl_layout_free(&plain);
}

// Fresh biases are 0 and fresh q/k norm gains 1, as Hugging Face initialises them.
TEST(TransformerArch, InitialBiasesZeroAndNormGainsOne) {
  drl_device d = cpu_device();
  drl_transformer_config c = tiny(1);
  enable_all_features(&c, 6, 5);
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 1, 4, 3), DRL_OK) << drl_last_error();
  int seen = 0;
  for (int i = 0; i < m.ps.layout.count; ++i) {
    const drl_tensor_info &t = m.ps.layout.tensors[i];
    if (t.shape[1] != 1) continue;
    for (int64_t j = 0; j < t.shape[0]; ++j)
      EXPECT_EQ(m.ps.params[t.offset + j], is_bias_tensor(t) ? 0.0f : 1.0f) << t.name;
    seen += is_bias_tensor(t);
  }
  EXPECT_EQ(seen, 6);
  drl_transformer_free(&m);
}

TEST(TransformerArch, ConfigChecks) {
  drl_layout lay;
  drl_transformer_config c = tiny(1);
  c.d_model = 10;  // 2 heads of 5: odd
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  c.head_dim = 6;  // an explicit even head size frees d_model
  ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK) << drl_last_error();
  drl_layout_free(&lay);
  c.d_model = 9;  // n_heads need not divide d_model either
  ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK) << drl_last_error();
  drl_layout_free(&lay);
  c.head_dim = 5;
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("head_dim 5");
  c.head_dim = -2;
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  c = tiny(1);
  c.vocab_used = 8;
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("vocab_used 8");
  c.vocab_used = 7;
  ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK);
  drl_layout_free(&lay);
  c = tiny(1);
  c.rope_scaling.type = 7;
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("RoPE scaling type 7");
  c.rope_scaling.type = DRL_ROPE_SCALING_LINEAR;
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG) << "factor 0";
  c.rope_scaling.factor = 2.0f;
  ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK);
  drl_layout_free(&lay);
  c.rope_scaling = {DRL_ROPE_SCALING_LLAMA3, 8.0f, 4.0f, 1.0f, 8192};  // low >= high
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  c.rope_scaling = {DRL_ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 0};
  EXPECT_EQ(drl_transformer_layout(&c, &lay), DRL_ERR_INVALID_ARG);
  c.rope_scaling.original_max_pos = 8192;
  ASSERT_EQ(drl_transformer_layout(&c, &lay), DRL_OK);
  drl_layout_free(&lay);
}

// The forward's log-probs against the naive double model, feature by feature and all together, tied and untied.
TEST(TransformerArch, ForwardMatchesNaiveHuggingFaceModel) {
  struct Case {
    const char *what;
    int tied, head_dim, bias, norm, vocab_used, rope;
  } cases[] = {{"plain", 1, 0, 0, 0, 0, 0},     {"head_dim 6 (GQA)", 1, 6, 0, 0, 0, 0},
               {"qkv_bias", 1, 0, 1, 0, 0, 0},  {"qk_norm", 1, 0, 0, 1, 0, 0},
               {"vocab_used 5", 0, 0, 0, 0, 5, 0}, {"linear RoPE", 1, 0, 0, 0, 0, DRL_ROPE_SCALING_LINEAR},
               {"all, untied", 0, 6, 1, 1, 5, DRL_ROPE_SCALING_LLAMA3},
               {"all, tied", 1, 6, 1, 1, 5, DRL_ROPE_SCALING_LLAMA3}};
  for (const Case &k : cases) {
    SCOPED_TRACE(k.what);
    drl_transformer_config c = tiny(k.tied);
    c.head_dim = k.head_dim;
    c.qkv_bias = k.bias;
    c.qk_norm = k.norm;
    c.vocab_used = k.vocab_used;
    c.rope_scaling = {k.rope, 4.0f, 1.0f, 4.0f, 200};
    c.max_seq = 16;
    Model md(c, 2, 6, 31);
    Batch b = make_batch(c, 8);
    std::vector<float> ent;
    std::vector<float> lp = forward(&md.m, b, 0.8f, &ent);
    std::vector<double> want = reference_logprobs(md, b, 0.8f);
    int scored = 0;
    for (size_t i = 0; i < lp.size(); ++i) {
      if (b.targets[i] < 0) continue;
      ++scored;
      EXPECT_NEAR(lp[i], want[i], 2e-5 * (1 + std::fabs(want[i]))) << "position " << i;
      EXPECT_LE(ent[i], std::log((double)drl_transformer_vocab_used(&c)) + 1e-5) << "entropy over the scored ids";
    }
    EXPECT_EQ(scored, 9);
  }
}

// Each feature on its own and all together, tied and untied LM heads.
TEST(TransformerArch, GradientsMatchFiniteDifferences) {
  for (int tied : {1, 0}) {
    drl_transformer_config c = tiny(tied);
    c.head_dim = 6;  // != d_model / n_heads = 4, with GQA
    check_gradients(c, 40 + tied, tied ? "head_dim, tied" : "head_dim, untied");
    c = tiny(tied);
    c.qkv_bias = 1;
    check_gradients(c, 42 + tied, tied ? "qkv_bias, tied" : "qkv_bias, untied");
    c = tiny(tied);
    c.qk_norm = 1;
    check_gradients(c, 44 + tied, tied ? "qk_norm, tied" : "qk_norm, untied");
    c = tiny(tied);
    c.vocab_used = 5;
    check_gradients(c, 46 + tied, tied ? "vocab_used, tied" : "vocab_used, untied");
    c = tiny(tied);
    enable_all_features(&c, 6, 5);
    check_gradients(c, 48 + tied, tied ? "all, tied" : "all, untied");
  }
  drl_transformer_config c = tiny(0);
  enable_all_features(&c, 6, 5);
  c.moe = {4, 2, 6, 0, 1, 1, 1.0f};
  check_gradients(c, 50, "all, MoE block 1");
}

// Padding ids are never scored: the LM head's padding rows get no gradient and do not change a log-prob; as inputs
// they are ordinary embeddings; a padding id as a target is an error.
TEST(TransformerArch, PaddedVocabularyIsNeverScored) {
  drl_transformer_config c = tiny(0);
  c.vocab_used = 5;
  Model md(c, 2, 6, 12);
  Batch b = make_batch(c, 13);
  std::vector<float> lp = forward(&md.m, b, 1.0f);
  std::vector<float> dlp(lp.size(), 1.0f);
  ASSERT_EQ(drl_params_zero_grads(&md.m.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&md.m, dlp.data()), DRL_OK);
  const drl_tensor_info *head = drl_layout_find(&md.m.ps.layout, "lm_head");
  const int C = c.d_model;
  for (int v = 5; v < 7; ++v)
    for (int i = 0; i < C; ++i) {
      EXPECT_EQ(md.m.ps.grads[head->offset + (int64_t)v * C + i], 0.0f) << "lm_head row " << v;
      md.m.ps.params[head->offset + (int64_t)v * C + i] = 1e4f;  // would dominate every softmax if it were scored
    }
  std::vector<float> again = forward(&md.m, b, 1.0f);
  EXPECT_EQ(0, memcmp(lp.data(), again.data(), lp.size() * sizeof(float))) << "padding rows change nothing";
  double emb = 0;
  for (int i = 0; i < C; ++i) emb += std::fabs(md.m.ps.grads[(int64_t)(c.vocab - 1) * C + i]);
  EXPECT_GT(emb, 0.0) << "a padding id as an input has an embedding gradient";
  b.targets[2] = 5;
  EXPECT_EQ(drl_transformer_forward(&md.m, b.tokens.data(), b.targets.data(), b.row_start.data(), b.B, b.T, 1.0f,
                                    nullptr, nullptr),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("target 5");
  std::vector<int> t_of = {5, 5};
  std::vector<float> logits(2 * 5);
  ASSERT_EQ(drl_transformer_logits_at(&md.m, t_of.data(), 1.0f, logits.data()), DRL_OK) << "[B, vocab_used]";
}

// The tied embedding serves as the embedding and as the LM head: its gradient is the sum of the two, which the
// untied model with the same weights computes separately. Every other gradient is the same bits.
TEST(TransformerArch, TiedGradientIsTheSumOfBothUses) {
  for (int all : {0, 1}) {
    SCOPED_TRACE(all ? "all features" : "plain");
    drl_transformer_config cu = tiny(0);
    if (all) enable_all_features(&cu, 6, 5);
    drl_transformer_config ct = cu;
    ct.tied_embeddings = 1;
    Model untied(cu, 2, 6, 61), tied(ct, 2, 6, 62);
    const drl_layout &lu = untied.m.ps.layout, &lt = tied.m.ps.layout;
    for (int i = 0; i < lt.count; ++i) {  // the same weights: the tied model's tensors from the untied one
      const drl_tensor_info *src = drl_layout_find(&lu, lt.tensors[i].name);
      ASSERT_NE(src, nullptr);
      memcpy(tied.m.ps.params + lt.tensors[i].offset, untied.m.ps.params + src->offset,
             (size_t)(src->shape[0] * src->shape[1]) * sizeof(float));
    }
    const drl_tensor_info *emb = drl_layout_find(&lu, "tok_emb"), *head = drl_layout_find(&lu, "lm_head");
    int64_t n = emb->shape[0] * emb->shape[1];
    memcpy(untied.m.ps.params + head->offset, untied.m.ps.params + emb->offset, (size_t)n * sizeof(float));
    Batch b = make_batch(cu, 63);
    std::vector<float> w = random_normal(b.B * b.T, 1.0f, 64);
    for (Model *md : {&untied, &tied}) {
      loss(&md->m, b, w);
      ASSERT_EQ(drl_params_zero_grads(&md->m.ps), DRL_OK);
      ASSERT_EQ(drl_transformer_backward(&md->m, w.data()), DRL_OK);
    }
    double scale = 0;
    for (int64_t j = 0; j < n; ++j) scale = std::fmax(scale, std::fabs(tied.m.ps.grads[j]));
    ASSERT_GT(scale, 0.0);
    for (int64_t j = 0; j < n; ++j) {
      double sum = (double)untied.m.ps.grads[emb->offset + j] + untied.m.ps.grads[head->offset + j];
      EXPECT_NEAR(tied.m.ps.grads[j], sum, 1e-6 * scale) << "tok_emb[" << j << "]";
    }
    double head_part = 0;
    for (int64_t j = 0; j < n; ++j) head_part += std::fabs(untied.m.ps.grads[head->offset + j]);
    EXPECT_GT(head_part, 0.0) << "both uses contribute";
    for (int i = 1; i < lt.count; ++i) {
      const drl_tensor_info &t = lt.tensors[i];
      const drl_tensor_info *src = drl_layout_find(&lu, t.name);
      EXPECT_EQ(0, memcmp(tied.m.ps.grads + t.offset, untied.m.ps.grads + src->offset,
                          (size_t)(t.shape[0] * t.shape[1]) * sizeof(float)))
          << t.name;
    }
  }
}

// head_dim = d_model / n_heads spelled out is the default: the same bits.
TEST(TransformerArch, ExplicitDefaultHeadDimChangesNothing) {
  drl_transformer_config a = tiny(1), b = tiny(1);
  b.head_dim = a.d_model / a.n_heads;
  b.vocab_used = b.vocab;
  drl_device d = cpu_device();
  drl_transformer ma, mb;
  ASSERT_EQ(drl_transformer_create(&ma, &a, &d, 2, 6, 5), DRL_OK);
  ASSERT_EQ(drl_transformer_create(&mb, &b, &d, 2, 6, 5), DRL_OK);
  Batch batch = make_batch(a, 6);
  std::vector<float> la = forward(&ma, batch, 1.0f), lb = forward(&mb, batch, 1.0f);
  EXPECT_EQ(0, memcmp(la.data(), lb.data(), la.size() * sizeof(float)));
  std::vector<float> dlp(la.size(), 0.5f);
  for (drl_transformer *m : {&ma, &mb}) {
    ASSERT_EQ(drl_params_zero_grads(&m->ps), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(m, dlp.data()), DRL_OK);
  }
  EXPECT_EQ(0, memcmp(ma.ps.grads, mb.ps.grads, ma.ps.layout.total * sizeof(float)));
  drl_transformer_free(&ma);
  drl_transformer_free(&mb);
}

// The memory accounting (the memory table of docs/models.md) is what create allocates, for every feature and MoE.
TEST(TransformerArch, MemoryAccountingIsWhatCreateAllocates) {
  drl_device cpu = cpu_device();
  for (int variant = 0; variant < 3; ++variant) {
    drl_transformer_config c = tiny(variant == 0);
    if (variant >= 1) enable_all_features(&c, 6, 5);
    if (variant == 2) {
      c.moe.experts = 4;
      c.moe.top_k = 2;
      c.moe.d_expert = 6;
      c.moe.normalize = 1;
      c.moe.route_scale = 1.0f;
    }
    drl_model_memory mem;
    ASSERT_EQ(drl_transformer_memory(&c, &cpu, 3, 10, &mem), DRL_OK) << last_error();
    drl_transformer m;
    ASSERT_EQ(drl_transformer_create(&m, &c, &cpu, 3, 10, 1), DRL_OK) << last_error();
    EXPECT_EQ(mem.params, m.ps.layout.total * 4) << variant;
    EXPECT_EQ(mem.grads, mem.params);
    EXPECT_EQ(mem.optimizer, 2 * mem.params);
    EXPECT_EQ(mem.activations, m.act_bytes) << variant;
    EXPECT_GT(mem.activations, 0);
    drl_kv_cache kv;
    ASSERT_EQ(drl_kv_cache_create(&kv, &m, 4, 2, 5, 7), DRL_OK) << last_error();
    EXPECT_EQ(drl_kv_cache_device_bytes(&c, &cpu, 4, 2, 5, 7), kv.device_bytes) << variant;
    drl_kv_cache_free(&kv);
    drl_transformer_free(&m);
  }
}
