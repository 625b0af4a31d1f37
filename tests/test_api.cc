// The public C API: a host trainer's calls, their errors, and that training through it moves the policy.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include <dynrl.h>
}

namespace {

class Api : public TempDirTest {
 protected:
  drl_engine *make(std::vector<std::string> extra = {}) {
    std::vector<std::string> sets = {"model.d_model=32", "model.n_layers=2", "model.d_ff=64",
                                     "grpo.prompts_per_step=4", "grpo.group_size=4", "d3s.n_init=2",
                                     "d3s.n_final=4", "data.n_train=200", "data.n_eval=8", "data.size=2",
                                     "grpo.max_new_tokens=4", "run.quiet=true", "run.threads=2",
                                     "run.out_dir=" + path("run")};
    sets.insert(sets.end(), extra.begin(), extra.end());
    std::vector<const char *> argv;
    for (auto &s : sets) argv.push_back(s.c_str());
    drl_engine *e = nullptr;
    EXPECT_EQ(drl_engine_create(nullptr, argv.data(), (int)argv.size(), &e), DRL_OK) << last_error();
    return e;
  }
};

float always_one(const int32_t *, int, const int32_t *, int, void *user) {
  ++*(int *)user;
  return 1.0f;
}

}  // namespace

TEST_F(Api, GenerateTrainSaveLoad) {
  drl_engine *e = make();
  ASSERT_NE(e, nullptr);
  EXPECT_STREQ(drl_engine_vocab(e), "0123456789+=.");
  int32_t ids[16];
  int64_t n = 0;
  ASSERT_EQ(drl_engine_encode(e, "12+3=", ids, 16, &n), DRL_OK);
  ASSERT_EQ(n, 5);
  int64_t offsets[2] = {0, n};
  drl_rollouts r;
  ASSERT_EQ(drl_engine_generate(e, ids, offsets, 1, &r), DRL_OK) << last_error();
  EXPECT_EQ(r.rows, 4);
  EXPECT_EQ(r.prompt_len, 5);
  for (int row = 0; row < r.rows; ++row) {
    EXPECT_GE(r.response_len[row], 1);
    EXPECT_LE(r.response_len[row], 4);
    for (int t = 0; t < 5; ++t) EXPECT_EQ(r.tokens[row * r.length + t], ids[t]);
  }
  std::vector<float> rewards = {1, 0, 0, 1};
  drl_stats s;
  ASSERT_EQ(drl_engine_train(e, rewards.data(), &s), DRL_OK) << last_error();
  EXPECT_EQ(s.iteration, 1);
  EXPECT_EQ(s.reward_mean, 0.5);
  EXPECT_GT(s.optim_steps, 0);
  EXPECT_EQ(drl_engine_train(e, rewards.data(), &s), DRL_ERR_INVALID_ARG) << "rollouts are consumed";
  EXPECT_ERROR_HAS("drl_engine_generate");
  ASSERT_EQ(drl_engine_save(e, path("c.h5").c_str()), DRL_OK) << last_error();
  drl_engine *other = make();
  ASSERT_EQ(drl_engine_load(other, path("c.h5").c_str()), DRL_OK) << last_error();
  drl_stats t;
  ASSERT_EQ(drl_engine_stats(e, &t), DRL_OK);
  EXPECT_EQ(t.iteration, 1);
  drl_engine_destroy(other);
  drl_engine_destroy(e);
}

TEST_F(Api, RewardCallbackScoresEveryRollout) {
  drl_engine *e = make();
  int calls = 0;
  ASSERT_EQ(drl_engine_set_reward(e, always_one, &calls), DRL_OK);
  drl_stats s;
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK) << last_error();
  EXPECT_EQ(calls, 16);
  EXPECT_EQ(s.reward_mean, 1.0);
  EXPECT_EQ(s.loss, 0.0) << "equal rewards: zero advantages, zero loss";
  EXPECT_EQ(s.optim_steps, 0) << "and no optimizer step: AdamW's momentum alone would move the weights";
  ASSERT_EQ(drl_engine_set_reward(e, nullptr, nullptr), DRL_OK);
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK);
  EXPECT_EQ(calls, 16) << "the task's verifier took over";
  EXPECT_EQ(s.iteration, 2);
  drl_engine_destroy(e);
}

TEST_F(Api, ErrorsAreStatusesWithMessages) {
  drl_engine *e = nullptr;
  const char *bad[] = {"model.d_modle=3"};
  EXPECT_EQ(drl_engine_create(nullptr, bad, 1, &e), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("model.d_modle");
  EXPECT_EQ(e, nullptr);
  EXPECT_EQ(drl_engine_create(path("missing.yaml").c_str(), nullptr, 0, &e), DRL_ERR_IO);
  const char *spsa[] = {"optim.name=spsa"};
  EXPECT_EQ(drl_engine_create(nullptr, spsa, 1, &e), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("dynrl train");
  EXPECT_EQ(e, nullptr);
  const char *flow[] = {"trainer.phases=flow_pretrain,flow_grpo"};
  EXPECT_EQ(drl_engine_create(nullptr, flow, 1, &e), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("flow phases (flow_pretrain)");
  EXPECT_EQ(e, nullptr);
  e = make();
  int32_t ids[4] = {1, 10, 2, 11};
  int64_t offsets[6] = {0, 4, 4, 4, 4, 4};
  drl_rollouts r;
  EXPECT_EQ(drl_engine_generate(e, ids, offsets, 5, &r), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("prompts_per_step");
  EXPECT_EQ(drl_engine_generate(e, nullptr, offsets, 1, &r), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_engine_load(e, path("missing.h5").c_str()), DRL_ERR_IO);
  drl_engine *big = make({"model.d_model=64"});
  ASSERT_EQ(drl_engine_save(big, path("big.h5").c_str()), DRL_OK);
  EXPECT_EQ(drl_engine_load(e, path("big.h5").c_str()), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("tok_emb");
  drl_engine_destroy(big);
  drl_engine_destroy(e);
  drl_engine_destroy(nullptr);
}
