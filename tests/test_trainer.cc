// The trainer on the CPU: learning-rate schedule, SFT batches, and resume reproducing the uninterrupted run bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "run_compare.h"
#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "data/h5.h"
#include "data/task.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/sft.h"
#include "engine/trainer.h"
}

namespace {

drl_config tiny_config(const std::string &out_dir) {
  drl_config c;
  EXPECT_EQ(drl_config_load_default(&c), DRL_OK);
  for (const char *kv : {"model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1",
                         "model.d_ff=32", "model.max_seq=16", "data.n_train=200", "data.n_eval=8", "data.task=add", "data.size=2",
                         "sft.steps=12", "sft.batch_size=4", "trainer.eval_every=0", "trainer.ckpt_every=0",
                         "optim.warmup_steps=3", "run.threads=2", "run.quiet=true", "grpo.steps=6",
                         "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=4", "d3s.n_init=2",
                         "d3s.n_final=4", "grpo.lr=0.001"})
    EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv << ": " << drl_last_error();
  snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s", out_dir.c_str());
  return c;
}

class Trainer : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    drl_log_setup(DRL_LOG_ERROR, 1, 0);
  }
};

}  // namespace

TEST(LrSchedule, WarmupCosineAndConstant) {
  drl_config c;
  ASSERT_EQ(drl_config_load_default(&c), DRL_OK);
  c.optim.lr = 1.0;
  c.optim.warmup_steps = 10;
  c.optim.min_lr_ratio = 0.1;
  EXPECT_FLOAT_EQ(drl_optim_lr_at(&c.optim, 1, 110), 0.1f);
  EXPECT_FLOAT_EQ(drl_optim_lr_at(&c.optim, 10, 110), 1.0f);
  EXPECT_FLOAT_EQ(drl_optim_lr_at(&c.optim, 60, 110), 0.55f);  // halfway through the cosine
  EXPECT_FLOAT_EQ(drl_optim_lr_at(&c.optim, 110, 110), 0.1f);
  c.optim.lr_schedule = DRL_CFG_LR_CONSTANT;
  EXPECT_FLOAT_EQ(drl_optim_lr_at(&c.optim, 80, 110), 1.0f);
}

TEST(SftBatch, ScoresExactlyTheAnswerTokens) {
  drl_dataset ds;
  ASSERT_EQ(drl_task_generate("add", 50, 3, 2, &ds), DRL_OK);
  int T = 0;
  ASSERT_EQ(drl_sft_max_len(&ds, 0, 50, &T), DRL_OK);
  drl_sft_batch b;
  ASSERT_EQ(drl_sft_batch_alloc(&b, 6, T), DRL_OK);
  ASSERT_EQ(drl_sft_batch_fill(&b, &ds, 50, 11, 1, 0, 0), DRL_OK);
  int64_t scored = 0;
  for (int r = 0; r < b.B; ++r) {
    const int32_t *tok = b.tokens + r * T, *tg = b.targets + r * T;
    // Each scored target is the next token, and the scored run ends with EOS ('.' is id 12 in add's vocabulary).
    int last = -1;
    for (int t = 0; t < T; ++t)
      if (tg[t] >= 0) {
        EXPECT_EQ(tg[t], tok[t + 1]);
        ++scored;
        last = t;
      }
    ASSERT_GE(last, 0);
    EXPECT_EQ(tg[last], 12);
  }
  EXPECT_EQ(scored, b.scored);
  std::vector<float> lp(b.B * T, -2.0f);
  EXPECT_NEAR(drl_sft_loss(&b, lp.data()), 2.0, 1e-12);
  float gsum = 0;
  for (int n = 0; n < b.B * T; ++n) gsum += b.dlogprob[n];
  EXPECT_NEAR(gsum, -1.0f, 1e-5f);
  // The same step draws the same examples; another step draws others.
  std::vector<int32_t> first(b.tokens, b.tokens + b.B * T);
  ASSERT_EQ(drl_sft_batch_fill(&b, &ds, 50, 11, 1, 0, 0), DRL_OK);
  EXPECT_EQ(0, memcmp(first.data(), b.tokens, first.size() * 4));
  ASSERT_EQ(drl_sft_batch_fill(&b, &ds, 50, 11, 2, 0, 0), DRL_OK);
  EXPECT_NE(0, memcmp(first.data(), b.tokens, first.size() * 4));
  drl_sft_batch_free(&b);
  drl_dataset_free(&ds);
}

// An SFT run stopped after 5 steps and resumed equals the uninterrupted run: parameters and AdamW moments, bit for bit.
TEST_F(Trainer, SftResumeIsBitExact) {
  drl_train_summary whole, part, rest;
  drl_config a = tiny_config(path("whole"));
  ASSERT_EQ(drl_config_set(&a, "trainer.phases=sft"), DRL_OK);
  ASSERT_EQ(drl_train(&a, nullptr, &whole), DRL_OK) << last_error();
  EXPECT_EQ(whole.steps, 12);
  drl_config b = tiny_config(path("split"));
  ASSERT_EQ(drl_config_set(&b, "trainer.phases=sft"), DRL_OK);
  b.trainer.stop_after = 5;
  ASSERT_EQ(drl_train(&b, nullptr, &part), DRL_OK) << last_error();
  EXPECT_EQ(part.stopped_at, 5);
  EXPECT_EQ(part.steps, 5);
  b.trainer.stop_after = 0;
  b.trainer.resume = true;
  ASSERT_EQ(drl_train(&b, nullptr, &rest), DRL_OK) << last_error();
  EXPECT_EQ(rest.resumed_from, 5);
  EXPECT_EQ(rest.steps, 7);
  EXPECT_EQ(rest.final_loss, whole.final_loss);
  expect_same_runs(path("whole"), path("split"), 12, {"/metrics/loss", "/metrics/grad_norm", "/metrics/lr"});
  // A run with another seed does not resume from this checkpoint.
  b.run.seed = 99;
  EXPECT_EQ(drl_train(&b, nullptr, &rest), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("run.seed");
}

// SFT then GRPO, stopped in the middle of GRPO and resumed: the same policy, optimizer and metrics as one run.
TEST_F(Trainer, GrpoResumeIsBitExact) {
  drl_train_summary whole, part, rest;
  drl_config a = tiny_config(path("whole"));
  ASSERT_EQ(drl_train(&a, nullptr, &whole), DRL_OK) << last_error();
  EXPECT_EQ(whole.steps, 18);
  drl_config b = tiny_config(path("split"));
  b.trainer.stop_after = 15;  // all 12 sft steps, then 3 of the 6 grpo iterations
  ASSERT_EQ(drl_train(&b, nullptr, &part), DRL_OK) << last_error();
  EXPECT_EQ(part.stopped_at, 3);
  b.trainer.stop_after = 0;
  b.trainer.resume = true;
  ASSERT_EQ(drl_train(&b, nullptr, &rest), DRL_OK) << last_error();
  EXPECT_EQ(rest.resumed_from, 3);
  EXPECT_EQ(rest.steps, 3);
  EXPECT_EQ(rest.eval_after, whole.eval_after);
  expect_same_runs(path("whole"), path("split"), 18,
                   {"/metrics/reward_mean", "/metrics/loss", "/metrics/kept_tokens", "/metrics/phase",
                    "/metrics/eval_accuracy"});
}

TEST_F(Trainer, ErrorsAreClear) {
  drl_train_summary s;
  drl_config c = tiny_config(path("e"));
  c.model.max_seq = 4;
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("model.max_seq");
  c = tiny_config(path("e"));
  snprintf(c.data.path, sizeof c.data.path, "%s", path("missing.h5").c_str());
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_IO);
  EXPECT_ERROR_HAS("missing.h5");
}

// The held-out evaluation before training, after each phase's last step and so at the end, each in the metrics row
// of its global step (and nowhere else with trainer.eval_every = 0), with the values the summary reports per phase.
TEST_F(Trainer, EvaluatesAtEveryPhaseEndIntoTheMetrics) {
  drl_train_summary s;
  drl_config c = tiny_config(path("run"));
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  drl_h5_file f;
  ASSERT_EQ(drl_h5_open_read(path("run/metrics.h5").c_str(), &f), DRL_OK);
  int64_t shape[1] = {0};
  void *data = nullptr;
  ASSERT_EQ(drl_h5_read_array(&f, "/metrics/step", DRL_H5_INT64, 1, shape, 1 << 20, &data), DRL_OK);
  std::vector<double> step((int64_t *)data, (int64_t *)data + shape[0]);
  free(data);
  drl_h5_close(&f);
  std::vector<double> acc = read_series(path("run/metrics.h5"), "/metrics/eval_accuracy"),
                      phase = read_series(path("run/metrics.h5"), "/metrics/phase");
  ASSERT_EQ(step.size(), 19u);
  std::vector<double> at;
  for (size_t i = 0; i < step.size(); ++i) {
    EXPECT_EQ(step[i], (double)i);
    if (!std::isnan(acc[i])) at.push_back(step[i]);
  }
  EXPECT_EQ(at, (std::vector<double>{0, 12, 18}));
  ASSERT_EQ(s.n_phases, 2);
  EXPECT_EQ(acc[0], s.eval_before);
  EXPECT_EQ(phase[0], (double)DRL_CFG_PHASE_SFT);
  EXPECT_EQ(acc[12], s.phases[0].eval);
  EXPECT_EQ(acc[18], s.phases[1].eval);
  EXPECT_EQ(s.eval_after, s.phases[1].eval);
  EXPECT_EQ(s.phases[0].phase, DRL_CFG_PHASE_SFT);
  EXPECT_EQ(s.phases[0].steps, 12);
  EXPECT_EQ(s.phases[1].phase, DRL_CFG_PHASE_GRPO);
  EXPECT_EQ(s.phases[1].steps, 6);
  for (int p = 0; p < 2; ++p) {
    EXPECT_GT(s.phases[p].seconds, 0.0);
    EXPECT_GT(s.phases[p].tokens, 0.0);
  }
  // sft trains on its examples' tokens without padding: 12 steps x 4 examples of 2-digit sums, 6 to 10 tokens each
  EXPECT_GE(s.phases[0].tokens, 12 * 4 * 6);
  EXPECT_LE(s.phases[0].tokens, 12 * 4 * 10);
}

// A run directory that holds a run is continued (--resume) or started over (--force), never replaced silently.
TEST_F(Trainer, AUsedRunDirectoryIsRefusedUnlessResumeOrForce) {
  drl_train_summary s;
  drl_config c = tiny_config(path("run"));
  ASSERT_EQ(drl_config_set(&c, "trainer.phases=sft"), DRL_OK);
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  std::vector<double> loss = read_series(path("run/metrics.h5"), "/metrics/loss");
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("already holds a run");
  EXPECT_ERROR_HAS("--resume");
  EXPECT_ERROR_HAS("--force");
  EXPECT_EQ(read_series(path("run/metrics.h5"), "/metrics/loss").size(), loss.size()) << "nothing was touched";
  c.trainer.force = true;
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  EXPECT_EQ(s.steps, 12) << "started over";
  c.trainer.force = false;
  c.trainer.resume = true;
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  EXPECT_EQ(s.steps, 0) << "the finished run resumes at its end";
}
