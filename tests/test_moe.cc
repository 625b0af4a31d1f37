// The MoE policy on the CPU: whole-model gradients against finite differences (with a bias that moves the selection
// and with the auxiliary loss), gates that ignore the bias, the router getting no gradient from balancing, routing
// that depends only on earlier batches' counts, the bias update rules on hand-made counts, KV-cache decoding, and
// checkpoints that carry the bias.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/moe_balance.h"
#include "engine/trainer.h"
#include "models/kv_cache.h"
#include "models/moe.h"
#include "models/transformer.h"
}

namespace {

// Two blocks, the second an MoE block of 4 experts (top 2) with a shared expert.
drl_transformer_config moe_config(int shared = 1, int normalize = 1) {
  drl_transformer_config c;
  memset(&c, 0, sizeof c);
  c.vocab = 7;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.d_ff = 12;
  c.max_seq = 16;
  c.tied_embeddings = 1;
  c.rope_theta = 10000.0f;
  c.init_std = 0.3f;
  c.norm_eps = 1e-5f;
  c.moe = {4, 2, 6, shared ? 5 : 0, 1, normalize, 1.5f};
  return c;
}

struct Batch {
  int B = 2, T = 6;
  std::vector<int32_t> tokens, targets;
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
  return b;
}

double loss(drl_transformer *m, const Batch &b, const std::vector<float> &w) {
  std::vector<float> lp(b.B * b.T);
  EXPECT_EQ(drl_transformer_forward(m, b.tokens.data(), b.targets.data(), nullptr, b.B, b.T, 1.0f, lp.data(),
                                    nullptr),
            DRL_OK)
      << drl_last_error();
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i) s += (double)w[i] * lp[i];
  return s;
}

// The selection of MoE block l in the last forward (CPU: device pointers are host pointers).
std::vector<int32_t> selection(const drl_transformer &m, int l) {
  const drl_moe_work &w = m.acts.moe[l];
  return std::vector<int32_t>(w.sel, w.sel + w.R * m.cfg.moe.top_k);
}

// The auxiliary loss alpha E sum_i f_i P_i of block l with the counts f held at `f` (constants, as in Switch).
double aux_loss(const drl_transformer &m, int l, const std::vector<double> &f, double alpha) {
  const drl_moe_work &w = m.acts.moe[l];
  int E = m.cfg.moe.experts;
  double L = 0;
  for (int e = 0; e < E; ++e) {
    double P = 0;
    for (int64_t t = 0; t < w.R; ++t) {
      double sum = 0;
      for (int j = 0; j < E; ++j) sum += w.scores[t * E + j];
      P += w.scores[t * E + e] / sum;
    }
    L += alpha * E * f[e] * P / (double)w.R;
  }
  return L;
}

}  // namespace

// Every parameter's gradient (dense block, router, experts, shared expert) against central differences, with a bias
// that changes the selection of some tokens and with the auxiliary loss. Samples whose perturbation flips a routing
// decision are skipped (the loss is not differentiable there), and must be the minority.
TEST(MoeTransformer, GradientsMatchFiniteDifferences) {
  for (int aux : {0, 1}) {
    drl_device d = cpu_device();
    drl_transformer_config c = moe_config();
    drl_transformer m;
    ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 11), DRL_OK) << drl_last_error();
    std::vector<float> bias = {0, 0, 0, 0, 0.3f, -0.2f, 0.1f, 0.0f};  // block 1 only
    ASSERT_EQ(drl_transformer_moe_set_bias(&m, bias.data()), DRL_OK);
    Batch b = make_batch(c.vocab, 5);
    std::vector<float> w(b.B * b.T);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float &x : w) x = nd(rng);
    const double alpha = 0.7;
    loss(&m, b, w);
    std::vector<int32_t> base_sel = selection(m, 1);
    // The auxiliary loss of this forward: counts from its own routes, held constant.
    std::vector<double> counts(2 * 4, 0.0), f(4);
    ASSERT_EQ(drl_transformer_moe_routes(&m, nullptr, counts.data(), nullptr), DRL_OK);
    for (int e = 0; e < 4; ++e) f[e] = counts[4 + e] / (2.0 * b.B * b.T);
    std::vector<float> auxg(8, 0.0f);
    for (int e = 0; e < 4; ++e) auxg[4 + e] = (float)(alpha * 4 * f[e] / (b.B * b.T));
    if (aux) {
      ASSERT_EQ(drl_transformer_moe_set_aux(&m, auxg.data(), nullptr), DRL_OK);
    }
    ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(&m, w.data()), DRL_OK) << drl_last_error();
    std::vector<float> grads(m.ps.grads, m.ps.grads + m.ps.layout.total);
    auto total = [&]() { return loss(&m, b, w) + (aux ? aux_loss(m, 1, f, alpha) : 0.0); };
    const float eps = 2e-3f;
    int checked = 0, bad = 0, flipped = 0;
    for (int ti = 0; ti < m.ps.layout.count; ++ti) {
      const drl_tensor_info &t = m.ps.layout.tensors[ti];
      int64_t n = t.shape[0] * t.shape[1];
      double max_abs = 0;
      for (int64_t j = 0; j < n; ++j) max_abs = std::fmax(max_abs, std::fabs(grads[t.offset + j]));
      EXPECT_GT(max_abs, 1e-6) << t.name << " receives no gradient";
      for (int s = 0; s < 12; ++s) {
        int64_t j = t.offset + (int64_t)(rng() % n);
        float saved = m.ps.params[j];
        m.ps.params[j] = saved + eps;
        double up = total();
        bool same = selection(m, 1) == base_sel;
        m.ps.params[j] = saved - eps;
        double down = total();
        same = same && selection(m, 1) == base_sel;
        m.ps.params[j] = saved;
        if (!same) {
          ++flipped;
          continue;
        }
        double fd = (up - down) / (2 * eps), an = grads[j];
        ++checked;
        if (std::fabs(fd - an) > 2e-3 + 2e-2 * std::fmax(std::fabs(fd), std::fabs(an))) {
          ++bad;
          ADD_FAILURE() << (aux ? "with aux loss: " : "") << t.name << "[" << j - t.offset << "]: analytic " << an
                        << " finite difference " << fd;
        }
      }
    }
    EXPECT_EQ(bad, 0) << "of " << checked;
    EXPECT_LT(flipped, checked) << "too many perturbations changed the routing";
    EXPECT_GT(checked, 120);
    drl_transformer_free(&m);
  }
}

// Criterion 4: the bias moves only the selection. Block 1's input does not depend on its bias, so for every token
// whose selected set is the same with and without the bias, its gates are bit-identical.
TEST(MoeTransformer, GatesIgnoreTheBias) {
  drl_device d = cpu_device();
  drl_transformer_config c = moe_config();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 17), DRL_OK);
  Batch b = make_batch(c.vocab, 9);
  std::vector<float> w(b.B * b.T, 1.0f);
  loss(&m, b, w);
  const drl_moe_work &wk = m.acts.moe[1];
  int K = c.moe.top_k, R = b.B * b.T;
  std::vector<int32_t> sel0(wk.sel, wk.sel + R * K);
  std::vector<float> gates0(wk.gates, wk.gates + R * K);
  std::vector<float> bias = {0, 0, 0, 0, 0.05f, -0.08f, 0.02f, 0.01f};
  ASSERT_EQ(drl_transformer_moe_set_bias(&m, bias.data()), DRL_OK);
  loss(&m, b, w);
  int same_sets = 0, moved = 0;
  for (int r = 0; r < R; ++r) {
    std::vector<int32_t> a(sel0.begin() + r * K, sel0.begin() + r * K + K), s(wk.sel + r * K, wk.sel + r * K + K);
    std::vector<float> ga(gates0.begin() + r * K, gates0.begin() + r * K + K), gb(wk.gates + r * K, wk.gates + r * K + K);
    std::vector<int32_t> as = a, ss = s;
    std::sort(as.begin(), as.end());
    std::sort(ss.begin(), ss.end());
    if (as != ss) {
      ++moved;
      continue;
    }
    ++same_sets;
    // The same experts, possibly in another order: each expert's gate has the same bits.
    for (int k = 0; k < K; ++k)
      for (int q = 0; q < K; ++q)
        if (a[k] == s[q]) {
          EXPECT_EQ(std::memcmp(&ga[k], &gb[q], 4), 0) << "token " << r << " expert " << a[k];
        }
  }
  EXPECT_GT(same_sets, 0);
  EXPECT_GT(moved, 0) << "the bias must move some selections for the test to mean anything";
  drl_transformer_free(&m);
}

// Criterion 5: the bias is no parameter (not in the layout, untouched by AdamW), and with aux_free the router's
// gradient is that of the task loss alone: the finite-difference test above holds with a bias; here the gradient with
// a bias equals the gradient without it whenever the bias changes no selection.
TEST(MoeTransformer, BalancingGivesTheRouterNoGradient) {
  drl_device d = cpu_device();
  drl_transformer_config c = moe_config();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 23), DRL_OK);
  for (int i = 0; i < m.ps.layout.count; ++i) EXPECT_EQ(std::strstr(m.ps.layout.tensors[i].name, "bias"), nullptr);
  Batch b = make_batch(c.vocab, 4);
  std::vector<float> w(b.B * b.T, -0.5f);
  loss(&m, b, w);
  std::vector<int32_t> sel0 = selection(m, 1);
  ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&m, w.data()), DRL_OK);
  std::vector<float> g0(m.ps.grads, m.ps.grads + m.ps.layout.total);
  std::vector<float> bias = {0, 0, 0, 0, 1e-4f, -1e-4f, 2e-4f, 0};  // too small to move a selection here
  ASSERT_EQ(drl_transformer_moe_set_bias(&m, bias.data()), DRL_OK);
  loss(&m, b, w);
  ASSERT_EQ(selection(m, 1), sel0);
  ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&m, w.data()), DRL_OK);
  EXPECT_EQ(0, memcmp(g0.data(), m.ps.grads, g0.size() * sizeof(float)));
  // An AdamW step moves parameters only: the bias on the device is as set.
  drl_optim_hparams hp = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1};
  ASSERT_EQ(optim_step(&m.ps, hp), DRL_OK);
  EXPECT_EQ(0, memcmp(m.moe_bias, bias.data(), bias.size() * sizeof(float)));
  drl_transformer_free(&m);
}

TEST(MoeBalance, UpdateRulesOnHandMadeCounts) {
  // Counts 10, 30, 20, 20 (mean 20): expert 0 under-loaded, 1 over-loaded, 2 and 3 balanced.
  const double c[4] = {10, 30, 20, 20};
  float b[4] = {0, 0, 0, 0};
  drl_moe_bias_update(b, c, 4, 0.5f, DRL_MOE_BIAS_SIGN, 0);
  EXPECT_EQ(b[0], 0.5f);
  EXPECT_EQ(b[1], -0.5f);
  EXPECT_EQ(b[2], 0.0f);
  EXPECT_EQ(b[3], 0.0f);
  float p[4] = {0, 0, 0, 0};
  drl_moe_bias_update(p, c, 4, 0.5f, DRL_MOE_BIAS_PROPORTIONAL, 0);  // u (mean - c) / mean
  EXPECT_FLOAT_EQ(p[0], 0.25f);
  EXPECT_FLOAT_EQ(p[1], -0.25f);
  // Sign with three under-loaded experts: the steps sum to 2u; centred, to 0.
  const double d[4] = {1, 1, 1, 97};
  float s[4] = {0, 0, 0, 0}, z[4] = {0, 0, 0, 0};
  drl_moe_bias_update(s, d, 4, 1.0f, DRL_MOE_BIAS_SIGN, 0);
  drl_moe_bias_update(z, d, 4, 1.0f, DRL_MOE_BIAS_SIGN, 1);
  EXPECT_EQ(s[0] + s[1] + s[2] + s[3], 2.0f);
  EXPECT_FLOAT_EQ(z[0] + z[1] + z[2] + z[3], 0.0f);
  EXPECT_FLOAT_EQ(z[0], 0.5f);
  EXPECT_FLOAT_EQ(z[3], -1.5f);
  // No tokens: nothing moves. MaxVio of the counts above: (30 - 20) / 20 and (97 - 25) / 25.
  const double none[4] = {0, 0, 0, 0};
  drl_moe_bias_update(b, none, 4, 1.0f, DRL_MOE_BIAS_SIGN, 1);
  EXPECT_EQ(b[0], 0.5f);
  EXPECT_DOUBLE_EQ(drl_moe_maxvio(c, 4), 0.5);
  EXPECT_DOUBLE_EQ(drl_moe_maxvio(d, 4), 72.0 / 25.0);
  EXPECT_EQ(drl_moe_maxvio(none, 4), 0.0);
}

// Criterion 6: batch k is routed with the bias of the counts of batches before k. The bias moves only in the step
// after a batch's backward, and batch k's routes are those the bias of step k - 1 gives.
TEST(MoeBalance, RoutingDependsOnlyOnEarlierBatches) {
  drl_device d = cpu_device();
  drl_transformer_config c = moe_config(0);
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 6, 29), DRL_OK);
  drl_config cfg;
  ASSERT_EQ(drl_config_load_default(&cfg), DRL_OK);
  cfg.moe.first_layer = 1;
  cfg.moe.bias_rate = 0.05;
  drl_moe_balance bal;
  ASSERT_EQ(drl_moe_balance_init(&bal, &cfg, &m, nullptr), DRL_OK);
  std::vector<float> w(12, 1.0f);
  for (int k = 0; k < 6; ++k) {
    Batch b = make_batch(c.vocab, 100 + k);
    std::vector<float> before(bal.bias, bal.bias + 8);
    loss(&m, b, w);
    std::vector<int32_t> sel = selection(m, 1);
    ASSERT_EQ(drl_moe_balance_forward(&bal, &m, nullptr), DRL_OK);
    EXPECT_EQ(0, memcmp(before.data(), bal.bias, 8 * sizeof(float))) << "counting batch " << k << " moved the bias";
    EXPECT_EQ(0, memcmp(before.data(), m.moe_bias, 8 * sizeof(float)));
    ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
    ASSERT_EQ(drl_transformer_backward(&m, w.data()), DRL_OK);
    ASSERT_EQ(drl_moe_balance_step(&bal, &m, k + 1, 0), DRL_OK);
    if (k > 0) {
      EXPECT_NE(0, memcmp(before.data(), bal.bias, 8 * sizeof(float))) << "step " << k << " did not move the bias";
    }
    // Batch k again with the bias before its step: the same routes.
    ASSERT_EQ(drl_transformer_moe_set_bias(&m, before.data()), DRL_OK);
    loss(&m, b, w);
    EXPECT_EQ(selection(m, 1), sel) << "batch " << k;
    ASSERT_EQ(drl_transformer_moe_set_bias(&m, bal.bias), DRL_OK);
  }
  drl_moe_balance_free(&bal);
  drl_transformer_free(&m);
}

// The KV-cache decoder runs the MoE blocks on its own workspace: its logits match the full forward's.
TEST(MoeTransformer, KvDecodeMatchesTheFullForward) {
  drl_device d = cpu_device();
  drl_transformer_config c = moe_config();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &d, 2, 8, 31), DRL_OK);
  std::vector<float> bias = {0, 0, 0, 0, 0.2f, -0.1f, 0.05f, 0};
  ASSERT_EQ(drl_transformer_moe_set_bias(&m, bias.data()), DRL_OK);
  std::vector<int32_t> seq = {1, 4, 2, 6, 3, 5, 0, 2};
  const int P = 3, T = 8, V = c.vocab;
  drl_kv_cache kc;
  ASSERT_EQ(drl_kv_cache_create(&kc, &m, 1, 1, P, T - P), DRL_OK) << drl_last_error();
  std::vector<float> logits(V), full(V);
  ASSERT_EQ(drl_kv_cache_prefill(&kc, &m, seq.data(), nullptr, 1, P, 1, 1, 1.0f, logits.data()), DRL_OK);
  for (int t = P; t < T; ++t) {
    ASSERT_EQ(drl_kv_cache_decode(&kc, &m, &seq[t], nullptr, 1, 1.0f, logits.data()), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_transformer_forward(&m, seq.data(), nullptr, nullptr, 1, t + 1, 1.0f, nullptr, nullptr), DRL_OK);
    int at = t;
    ASSERT_EQ(drl_transformer_logits_at(&m, &at, 1.0f, full.data()), DRL_OK);
    for (int v = 0; v < V; ++v) EXPECT_NEAR(logits[v], full[v], 2e-5f) << "position " << t << " token " << v;
  }
  drl_kv_cache_free(&kc);
  drl_transformer_free(&m);
}

class MoeTrainer : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    drl_log_setup(DRL_LOG_ERROR, 1, 0);
  }
  drl_config config(const std::string &dir, const char *balance) {
    drl_config c;
    EXPECT_EQ(drl_config_load_default(&c), DRL_OK);
    for (const char *kv : {"model.ffn=moe", "model.d_model=16", "model.n_layers=2", "model.n_heads=2",
                           "model.n_kv_heads=1", "model.d_ff=32", "model.max_seq=16", "moe.experts=4",
                           "moe.top_k=2", "moe.bias_rate=0.01", "data.n_train=200", "data.n_eval=16", "data.task=add", "data.size=2",
                           "sft.steps=12", "sft.batch_size=4", "trainer.eval_every=0", "trainer.ckpt_every=0",
                           "run.threads=2", "run.quiet=true", "grpo.steps=4", "grpo.prompts_per_step=2",
                           "grpo.group_size=4", "grpo.max_new_tokens=4", "d3s.n_init=2", "d3s.n_final=4",
                           "grpo.lr=0.001", "moe.rl_bias_rate=0.01"})
      EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv << ": " << last_error();
    std::string b = std::string("moe.balance=") + balance;
    EXPECT_EQ(drl_config_set(&c, b.c_str()), DRL_OK);
    snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s", dir.c_str());
    return c;
  }
};

// SFT then GRPO with each balancing mode; stopped and resumed with aux_free, the bias (checkpointed) and everything
// else equal the uninterrupted run.
TEST_F(MoeTrainer, TrainsResumesAndCheckpointsTheBias) {
  for (const char *mode : {"aux_free", "aux_loss", "none"}) {
    drl_config a = config(path(std::string("whole_") + mode), mode);
    drl_train_summary s;
    ASSERT_EQ(drl_train(&a, nullptr, &s), DRL_OK) << mode << ": " << last_error();
    EXPECT_TRUE(std::isfinite(s.final_loss));
    drl_checkpoint ck;
    ASSERT_EQ(drl_checkpoint_read((path(std::string("whole_") + mode) + "/ckpt.h5").c_str(), nullptr, &ck), DRL_OK);
    ASSERT_EQ(ck.moe_bias_n, 8);
    double moved = 0;
    for (int i = 0; i < 8; ++i) moved += std::fabs(ck.moe_bias[i]);
    if (std::string(mode) == "aux_free") {
      EXPECT_GT(moved, 0.0);
    } else {
      EXPECT_EQ(moved, 0.0) << mode << " must not move the bias";
    }
    drl_checkpoint_free(&ck);
  }
  drl_config b = config(path("split"), "aux_free");
  b.trainer.stop_after = 9;
  drl_train_summary part, rest;
  ASSERT_EQ(drl_train(&b, nullptr, &part), DRL_OK) << last_error();
  b.trainer.stop_after = 0;
  b.trainer.resume = true;
  ASSERT_EQ(drl_train(&b, nullptr, &rest), DRL_OK) << last_error();
  drl_checkpoint x, y;
  ASSERT_EQ(drl_checkpoint_read((path("whole_aux_free") + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK);
  ASSERT_EQ(drl_checkpoint_read((path("split") + "/ckpt.h5").c_str(), &x.layout, &y), DRL_OK);
  EXPECT_EQ(0, memcmp(x.params, y.params, x.layout.total * sizeof(float)));
  EXPECT_EQ(0, memcmp(x.moe_bias, y.moe_bias, 8 * sizeof(float)));
  drl_checkpoint_free(&x);
  drl_checkpoint_free(&y);
}
