// One GRPO iteration end to end on a tiny policy: rollouts, rewards, selection and updates raise the reward.
#include <gtest/gtest.h>

#include <cstring>
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
  EXPECT_EQ(drl_rollout_create(&ro, &m, n * G, 5), DRL_OK);
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
    drl_grpo_update_batch rb = {n, G, b.T, b.tokens, b.row_start, b.mask, rewards.data()};
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
