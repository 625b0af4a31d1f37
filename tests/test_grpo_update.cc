// One GRPO iteration end to end on a tiny policy: rollouts, rewards, selection and updates raise the reward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "engine/config.h"
#include "engine/grpo_update.h"
#include "models/transformer.h"
#include "samplers/rollout.h"
}

namespace {

// Reward 1 when the first generated token is `want`, so the optimum is a deterministic choice.
void reward_first_token(const drl_rollout_batch &b, int want, std::vector<float> &rewards) {
  for (int r = 0; r < b.rows; ++r) rewards[r] = b.tokens[(size_t)r * b.T + b.P] == want ? 1.0f : 0.0f;
}

double train(const char *sampling, bool token_level, int iterations, double *first) {
  drl_config cfg;
  EXPECT_EQ(drl_config_load_default(&cfg), DRL_OK);
  for (const char *kv : {"grpo.group_size=8", "grpo.lr=0.01", "grpo.max_new_tokens=3", "d3s.n_init=4", "d3s.n_final=6",
                         "optim.grad_clip=1.0"})
    EXPECT_EQ(drl_config_set(&cfg, kv), DRL_OK) << kv;
  std::string s = std::string("d3s.sampling=") + sampling;
  EXPECT_EQ(drl_config_set(&cfg, s.c_str()), DRL_OK);
  cfg.d3s.token_level = token_level;
  drl_device cpu = cpu_device();
  drl_transformer_config tc = {9, 16, 2, 2, 1, 32, 16, 1, 10000.0f, 0.05f, 1e-5f, {}, 0, 0, 0, 0, {}};
  drl_transformer m;
  EXPECT_EQ(drl_transformer_create(&m, &tc, &cpu, 32, 16, 3), DRL_OK);
  const int n = 4, G = 8;
  std::vector<int32_t> prompts = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int64_t> offsets = {0, 2, 4, 6, 8};
  drl_rollout ro;
  memset(&ro, 0, sizeof ro);
  EXPECT_EQ(drl_rollout_create(&ro, &m, n * G, G, 2, 3), DRL_OK);
  drl_grpo_update_state st;
  EXPECT_EQ(drl_grpo_update_state_create(&st, &cfg, &m, 1, n * G, 5), DRL_OK);
  drl_rollout_batch b;
  memset(&b, 0, sizeof b);
  std::vector<float> rewards(n * G);
  int64_t optim_step = 0;
  double last = 0;
  for (int it = 1; it <= iterations; ++it) {
    drl_rollout_params rp = {G, 3, 1.0f, 0, 1.0f, 0, 77, (uint32_t)it, 0, 0, nullptr, 0, nullptr, nullptr};
    EXPECT_EQ(drl_rollout_generate(&ro, &m, prompts.data(), offsets.data(), n, &rp, &b), DRL_OK) << last_error();
    reward_first_token(b, 5, rewards);
    drl_grpo_update_batch rb = {n, G, b.T, b.tokens, b.row_start, b.mask, rewards.data(), b.entropy};
    drl_grpo_update_stats stats;
    EXPECT_EQ(drl_grpo_update(&st, &m, &cfg, &rb, nullptr, nullptr, it, iterations, &optim_step, &stats), DRL_OK)
        << last_error();
    if (it == 1) *first = stats.reward_mean;
    last = stats.reward_mean;
  }
  drl_rollout_batch_free(&b);
  drl_grpo_update_state_free(&st, &m);
  drl_rollout_free(&ro);
  drl_transformer_free(&m);
  return last;
}

}  // namespace

TEST(RlStep, GrpoRaisesTheReward) {
  for (const char *sampling : {"none", "d3s", "pods"}) {
    double first = 0, last = train(sampling, true, 25, &first);
    EXPECT_LT(first, 0.4) << sampling;
    EXPECT_GT(last, 0.8) << sampling << ": reward " << first << " -> " << last;
  }
}

// Each optimizer step is normalised by its own minibatch (as verl normalises each mini-batch): with the policy held
// still (learning rate 0, so every minibatch sees the same log-probabilities), two minibatches of one batch leave
// the same AdamW moments, bit for bit, as its two halves given one after the other as batches of their own, in every
// aggregation. A batch-wide denominator would halve each step's gradient.
TEST(RlStep, EachMinibatchIsNormalisedOnItsOwn) {
  const int n = 4, G = 4;
  for (const char *agg : {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm",
                          "dr_grpo_norm"}) {
    SCOPED_TRACE(agg);
    drl_config cfg;
    ASSERT_EQ(drl_config_load_default(&cfg), DRL_OK);
    for (const char *kv : {"grpo.group_size=4", "grpo.lr=0", "optim.lr=0", "grpo.max_new_tokens=3",
                           "d3s.sampling=none", "optim.grad_clip=0.5"})
      ASSERT_EQ(drl_config_set(&cfg, kv), DRL_OK) << kv;
    std::string a = std::string("grpo.loss_agg=") + agg;
    ASSERT_EQ(drl_config_set(&cfg, a.c_str()), DRL_OK);
    drl_device cpu = cpu_device();
    drl_transformer_config tc = {9, 16, 2, 2, 1, 32, 16, 1, 10000.0f, 0.05f, 1e-5f, {}, 0, 0, 0, 0, {}};
    drl_transformer whole, halves;
    ASSERT_EQ(drl_transformer_create(&whole, &tc, &cpu, 32, 16, 3), DRL_OK);
    ASSERT_EQ(drl_transformer_create(&halves, &tc, &cpu, 32, 16, 3), DRL_OK);
    // One batch of 4 prompts x 4 rollouts of ragged prompts, rewards varied within every group.
    std::vector<int32_t> prompts = {1, 2, 3, 4, 5, 6, 7, 8, 1};
    std::vector<int64_t> offsets = {0, 2, 5, 6, 9};
    drl_rollout ro;
    memset(&ro, 0, sizeof ro);
    ASSERT_EQ(drl_rollout_create(&ro, &whole, n * G, G, 3, 3), DRL_OK);
    drl_rollout_batch b;
    memset(&b, 0, sizeof b);
    drl_rollout_params rp = {G, 3, 1.0f, 0, 1.0f, 0, 77, 1, 0, 0, nullptr, 0, nullptr, nullptr};
    ASSERT_EQ(drl_rollout_generate(&ro, &whole, prompts.data(), offsets.data(), n, &rp, &b), DRL_OK);
    std::vector<float> rewards(n * G);
    for (int r = 0; r < n * G; ++r) rewards[r] = (float)((r * 7 + b.tokens[(size_t)r * b.T + b.P]) % 3);
    drl_grpo_update_stats stats;
    // two minibatches of the whole batch
    cfg.grpo.minibatches = 2;
    drl_grpo_update_state st;
    ASSERT_EQ(drl_grpo_update_state_create(&st, &cfg, &whole, 1, n * G, b.T), DRL_OK);
    int64_t step_whole = 0, step_halves = 0;
    drl_grpo_update_batch all = {n, G, b.T, b.tokens, b.row_start, b.mask, rewards.data(), nullptr};
    ASSERT_EQ(drl_grpo_update(&st, &whole, &cfg, &all, nullptr, nullptr, 1, 1, &step_whole, &stats), DRL_OK)
        << last_error();
    drl_grpo_update_state_free(&st, &whole);
    ASSERT_EQ(step_whole, 2);
    // the two halves, one batch each
    cfg.grpo.minibatches = 1;
    ASSERT_EQ(drl_grpo_update_state_create(&st, &cfg, &halves, 1, n * G, b.T), DRL_OK);
    size_t half = (size_t)(n / 2) * G * b.T;
    for (int h = 0; h < 2; ++h) {
      drl_grpo_update_batch part = {n / 2, G, b.T, b.tokens + h * half, b.row_start + h * (n / 2) * G,
                                    b.mask + h * half, rewards.data() + h * (n / 2) * G, nullptr};
      ASSERT_EQ(drl_grpo_update(&st, &halves, &cfg, &part, nullptr, nullptr, 1, 1, &step_halves, &stats), DRL_OK)
          << last_error();
    }
    drl_grpo_update_state_free(&st, &halves);
    ASSERT_EQ(step_halves, 2);
    size_t count = (size_t)whole.ps.layout.total;
    EXPECT_EQ(0, memcmp(whole.ps.m, halves.ps.m, count * sizeof(float))) << "first moments";
    EXPECT_EQ(0, memcmp(whole.ps.v, halves.ps.v, count * sizeof(float))) << "second moments";
    bool moved = false;
    for (size_t i = 0; i < count && !moved; ++i) moved = whole.ps.m[i] != 0.0f;
    EXPECT_TRUE(moved) << "the steps had a gradient";
    drl_rollout_batch_free(&b);
    drl_rollout_free(&ro);
    drl_transformer_free(&whole);
    drl_transformer_free(&halves);
  }
}

// With the rollout's entropies the update chooses its tokens first and forwards only the rows holding a loss token, cut
// after the last column holding one. Its loss and every gradient tensor equal the padded, masked update's (within
// 1e-6 of the largest entry, for the GEMMs' dependence on the row count), for every token kept (K = 1, with full
// responses, so a loss token in the last column that can hold one), a fifth of them, a single one, and the MoE
// policy; ragged prompts (mixed left padding). The entropies handed in are the padded path's own (one forward of
// every row), so both choose the same tokens. The pruned single update leaves out the old-policy pass and takes its
// own forward's log-probs as the old ones: bit for bit what two epochs (the pass run, lr 0) compute.
TEST(GrpoUpdate, PrunedUpdateEqualsThePaddedOne) {
  struct Case {
    const char *name;
    const char *K;
    bool moe;
  };
  for (const Case &cs : {Case{"every token", "1.0", false}, Case{"a fifth of the tokens", "0.2", false},
                         Case{"one token", "0.000001", false}, Case{"MoE policy", "0.3", true}}) {
    SCOPED_TRACE(cs.name);
    const int n = 4, G = 4, max_new = 5;
    drl_config cfg;
    ASSERT_EQ(drl_config_load_default(&cfg), DRL_OK);
    for (const char *kv : {"grpo.group_size=4", "grpo.lr=0", "optim.lr=0", "grpo.max_new_tokens=5",
                           "optim.grad_clip=0", "d3s.sampling=d3s", "d3s.n_init=4", "d3s.n_final=4",
                           "d3s.schedule=false", "d3s.token_scope=batch"})
      ASSERT_EQ(drl_config_set(&cfg, kv), DRL_OK) << kv;
    std::string k = std::string("d3s.k_init=") + cs.K;
    ASSERT_EQ(drl_config_set(&cfg, k.c_str()), DRL_OK);
    drl_device cpu = cpu_device();
    drl_transformer_config tc = {9, 16, 2, 2, 1, 32, 16, 1, 10000.0f, 0.3f, 1e-5f, {}, 0, 0, 0, 0, {}};
    if (cs.moe) tc.moe = {4, 2, 12, 8, 1, 1, 1.5f};
    drl_transformer padded, pruned, two_epochs;
    ASSERT_EQ(drl_transformer_create(&padded, &tc, &cpu, 32, 16, 3), DRL_OK) << last_error();
    ASSERT_EQ(drl_transformer_create(&pruned, &tc, &cpu, 32, 16, 3), DRL_OK);
    ASSERT_EQ(drl_transformer_create(&two_epochs, &tc, &cpu, 32, 16, 3), DRL_OK);
    std::vector<int32_t> prompts = {1, 2, 3, 4, 5, 6, 7, 8, 1};
    std::vector<int64_t> offsets = {0, 2, 5, 6, 9};
    drl_rollout ro{};
    ASSERT_EQ(drl_rollout_create(&ro, &padded, n * G, G, 3, max_new), DRL_OK);
    drl_rollout_batch b{};
    drl_rollout_params rp = {G, max_new, 1.0f, 0, 1.0f, 0, 78, 1, 0, 0, nullptr, 0, nullptr, nullptr};
    ASSERT_EQ(drl_rollout_generate(&ro, &padded, prompts.data(), offsets.data(), n, &rp, &b), DRL_OK);
    bool full = false, early = false;
    for (int r = 0; r < b.rows; ++r) (b.response_len[r] == max_new ? full : early) = true;
    EXPECT_TRUE(full && early) << "responses of full length and shorter";
    std::vector<float> rewards(n * G);
    for (int r = 0; r < n * G; ++r) rewards[r] = (float)((r * 5 + b.tokens[(size_t)r * b.T + b.P + 1]) % 4);
    // the entropies the padded path's old-policy pass computes: one forward of every row
    std::vector<int32_t> targets((size_t)b.rows * b.T, -1);
    for (int r = 0; r < b.rows; ++r)
      for (int t = 0; t + 1 < b.T; ++t)
        if (b.mask[(size_t)r * b.T + t]) targets[(size_t)r * b.T + t] = b.tokens[(size_t)r * b.T + t + 1];
    std::vector<float> lp((size_t)b.rows * b.T), ent(lp.size());
    ASSERT_EQ(drl_transformer_forward(&padded, b.tokens, targets.data(), b.row_start, b.rows, b.T, 1.0f, lp.data(),
                                      ent.data()),
              DRL_OK);
    drl_grpo_update_stats sp, sq;
    drl_grpo_update_state st;
    int64_t step_p = 0, step_q = 0;
    ASSERT_EQ(drl_grpo_update_state_create(&st, &cfg, &padded, 1, n * G, b.T), DRL_OK);
    drl_grpo_update_batch bp = {n, G, b.T, b.tokens, b.row_start, b.mask, rewards.data(), nullptr};
    ASSERT_EQ(drl_grpo_update(&st, &padded, &cfg, &bp, nullptr, nullptr, 1, 1, &step_p, &sp), DRL_OK) << last_error();
    drl_grpo_update_batch bq = bp;
    bq.entropy = ent.data();
    ASSERT_EQ(drl_grpo_update(&st, &pruned, &cfg, &bq, nullptr, nullptr, 1, 1, &step_q, &sq), DRL_OK) << last_error();
    drl_grpo_update_stats s2;
    int64_t step_2 = 0;
    cfg.grpo.ppo_epochs = 2;
    ASSERT_EQ(drl_grpo_update(&st, &two_epochs, &cfg, &bq, nullptr, nullptr, 1, 1, &step_2, &s2), DRL_OK);
    drl_grpo_update_state_free(&st, &padded);
    EXPECT_EQ(step_2, 2);
    EXPECT_EQ(s2.loss, sq.loss);
    EXPECT_EQ(0, memcmp(two_epochs.ps.grads, pruned.ps.grads, (size_t)pruned.ps.layout.total * sizeof(float)))
        << "the single update's own log-probs are the old-policy pass's, bit for bit";
    EXPECT_EQ(sp.kept_tokens, sq.kept_tokens);
    EXPECT_GT(sq.kept_tokens, 0);
    if (std::string(cs.K) == "0.000001") {
      EXPECT_EQ(sq.kept_tokens, 1);
    }
    EXPECT_EQ(sp.skipped, 0);
    EXPECT_NEAR(sq.loss, sp.loss, 1e-6 * std::fabs(sp.loss) + 1e-9);
    EXPECT_EQ(sp.positions, (int64_t)n * G * b.T) << "every row at full width";
    EXPECT_LT(sq.positions, sp.positions) << "the pruned forwards run over fewer positions";
    const drl_layout &lay = padded.ps.layout;
    for (int t = 0; t < lay.count; ++t) {
      const drl_tensor_info &ti = lay.tensors[t];
      double big = 0, diff = 0;
      for (int64_t i = ti.offset; i < ti.offset + ti.shape[0] * ti.shape[1]; ++i) {
        big = std::fmax(big, std::fabs((double)padded.ps.grads[i]));
        diff = std::fmax(diff, std::fabs((double)padded.ps.grads[i] - pruned.ps.grads[i]));
      }
      EXPECT_LE(diff, 1e-6 * big + 1e-12) << ti.name;
    }
    drl_rollout_batch_free(&b);
    drl_rollout_free(&ro);
    drl_transformer_free(&padded);
    drl_transformer_free(&pruned);
    drl_transformer_free(&two_epochs);
  }
}
