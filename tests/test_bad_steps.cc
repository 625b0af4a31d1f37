// A non-finite loss or gradient, injected with DYNRL_FAULT (kernels/fault.h), in every kind of phase: the step is
// skipped and counted (the parameters and AdamW moments right after it equal those right before it, bit for bit, and
// the run goes on), and trainer.max_bad_steps of them in a row end `dynrl train` with a message naming the step and
// the tensor, leaving the last good checkpoint on disk. Then the same through the C API.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_run.h"
#include "run_compare.h"
#include "test_util.h"

extern "C" {
#include <dynrl.h>

#include "kernels/fault.h"
}

namespace {

using Exit = CliExit;

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

struct Ckpt {
  drl_checkpoint ck;
  explicit Ckpt(const std::string &path) {
    memset(&ck, 0, sizeof ck);
    EXPECT_EQ(drl_checkpoint_read(path.c_str(), nullptr, &ck), DRL_OK) << drl_last_error();
  }
  ~Ckpt() { drl_checkpoint_free(&ck); }
  size_t bytes() const { return (size_t)ck.layout.total * sizeof(float); }
};

bool all_finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// A phase on a tiny model: its --set overrides (steps: 10), the name its messages use, the faults of the single bad
// step (at step 4) and of the streak (steps 5 on), and the tensor the streak's fault names.
struct Phase {
  const char *name;
  std::vector<std::string> sets;
  const char *single;         // the fault kind of the single bad step
  const char *single_what;    // what its warning names
  const char *streak;         // "kind@0:5-100[:tensor]"
  const char *streak_kind;    // "loss" or "gradient"
  const char *streak_what;    // the tensor (or "loss") the stop message names
};

const std::vector<std::string> kTiny = {
    "model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=32",
    "model.max_seq=16", "data.n_train=200", "data.n_eval=0", "data.task=add", "data.size=2", "sft.batch_size=4",
    "optim.warmup_steps=2", "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=4",
    "d3s.n_init=2", "d3s.n_final=4", "grpo.lr=0.001", "trainer.eval_every=0", "run.threads=1"};
const std::vector<std::string> kFlow = {
    "flow.batch_size=32", "flow.hidden=16", "flow.layers=2", "tree.steps=6", "tree.depth=3", "tree.window_every=3",
    "tree.conditions_per_iter=2", "tree.eval_samples=16", "tree.eval_every=0", "tree.epochs=2",
    "trainer.eval_every=0", "run.threads=1"};

class BadSteps : public TempDirTest {
 protected:
  // `dynrl train --quiet` of phase p into dir with the extra overrides.
  Exit train(const Phase &p, const std::string &dir, std::vector<std::string> extra, const std::string &fault,
             const std::string &log) {
    return run_dynrl(train_args(p.sets, path(dir), extra), fault, path(log));
  }

  // Steps 1-3, then step 4 with one injected fault, then the rest (each a resumed invocation).
  void single_bad_step(const Phase &p) {
    Exit a = train(p, "one", {"trainer.stop_after=3", "trainer.ckpt_every=0"}, "", "a.log");
    ASSERT_EQ(a.code, 0) << a.log;
    std::filesystem::copy_file(path("one/ckpt.h5"), path("before.h5"));
    Exit b = train(p, "one", {"trainer.stop_after=1", "trainer.ckpt_every=0", "trainer.resume=true"},
                   std::string(p.single) + "@0:4", "b.log");
    ASSERT_EQ(b.code, 0) << b.log;
    EXPECT_TRUE(has(b.log, std::string(p.name) + " step 4: non-finite ")) << b.log;
    EXPECT_TRUE(has(b.log, std::string("(in ") + p.single_what + "): the step is skipped (1 skipped, 1 in a row)"))
        << b.log;
    {
      Ckpt before(path("before.h5")), after(path("one/ckpt.h5"));
      ASSERT_EQ(before.ck.layout.total, after.ck.layout.total);
      EXPECT_EQ(before.ck.trainer_step, 3);
      EXPECT_EQ(after.ck.trainer_step, 4);
      EXPECT_EQ(after.ck.optim_step, before.ck.optim_step) << "the AdamW step counter moved";
      EXPECT_EQ(0, memcmp(before.ck.params, after.ck.params, before.bytes())) << "the parameters changed";
      EXPECT_EQ(0, memcmp(before.ck.m, after.ck.m, before.bytes())) << "the first moments changed";
      EXPECT_EQ(0, memcmp(before.ck.v, after.ck.v, before.bytes())) << "the second moments changed";
      EXPECT_EQ(after.ck.bad_steps, 1);
      EXPECT_EQ(after.ck.bad_streak, 1);
    }
    Exit c = train(p, "one", {"trainer.ckpt_every=0", "trainer.resume=true"}, "", "c.log");
    ASSERT_EQ(c.code, 0) << c.log;
    std::vector<double> bad = read_training_series(path("one/metrics.h5"), "/metrics/bad_steps");
    ASSERT_EQ(bad.size(), 10u);
    for (size_t i = 0; i < bad.size(); ++i) EXPECT_EQ(bad[i], i < 3 ? 0.0 : 1.0) << "bad_steps of step " << i + 1;
    Ckpt before(path("before.h5")), end(path("one/ckpt.h5"));
    EXPECT_EQ(end.ck.trainer_step, 10);
    EXPECT_EQ(end.ck.bad_steps, 1);
    EXPECT_EQ(end.ck.bad_streak, 0);
    EXPECT_TRUE(all_finite(end.ck.params, end.ck.layout.total));
    EXPECT_NE(0, memcmp(before.ck.params, end.ck.params, before.bytes())) << "the steps after the bad one trained";
  }

  // Faults from step 5 on with trainer.max_bad_steps=3 and a checkpoint every 4 steps: the run stops at step 7.
  void streak_stops(const Phase &p) {
    Exit e = train(p, "streak", {"trainer.max_bad_steps=3", "trainer.ckpt_every=4"}, p.streak, "streak.log");
    EXPECT_EQ(e.code, 1) << e.log;
    EXPECT_EQ(e.signal, 0) << e.log;
    std::string msg = std::string(p.name) + " step 7: 3 consecutive steps with a non-finite " + p.streak_kind +
                      " (first in " + p.streak_what + "); stopping; the last good checkpoint is " +
                      path("streak/ckpt.h5") + " (" + p.name + " step 4)";
    EXPECT_TRUE(has(e.log, msg)) << "expected: " << msg << "\n" << e.log;
    Ckpt ck(path("streak/ckpt.h5"));
    EXPECT_EQ(ck.ck.trainer_step, 4);
    EXPECT_EQ(ck.ck.bad_steps, 0);
    EXPECT_TRUE(all_finite(ck.ck.params, ck.ck.layout.total));
    EXPECT_TRUE(all_finite(ck.ck.m, ck.ck.layout.total));
    EXPECT_TRUE(all_finite(ck.ck.v, ck.ck.layout.total));
    std::vector<double> bad = read_training_series(path("streak/metrics.h5"), "/metrics/bad_steps");
    EXPECT_EQ(bad, (std::vector<double>{0, 0, 0, 0, 1, 2, 3}));
  }
};

const Phase kSft = {"sft", with(kTiny, {"trainer.phases=sft", "sft.steps=10"}), "nan_loss", "loss",
                    "inf_grad@0:5-100:layers.0.wq", "gradient", "layers.0.wq"};
// kl_beta > 0: every iteration updates (one without any signal makes no update to skip); partial credit: rewards
// differ within groups from the start, so the updates move the policy.
const Phase kGrpo = {"grpo", with(kTiny, {"trainer.phases=grpo", "grpo.steps=10", "grpo.reward=partial",
                                          "grpo.kl_beta=0.01"}),
                     "nan_grad",
                     "tok_emb", "nan_grad@0:5-100:layers.1.wo", "gradient", "layers.1.wo"};
const Phase kSpsa = {"sft", with(kTiny, {"trainer.phases=sft", "sft.steps=10", "optim.name=spsa", "spsa.lr=0.001",
                                         "spsa.samples=2"}),
                     "nan_loss", "loss", "nan_loss@0:5-100", "loss", "loss"};
const Phase kFlowPretrain = {"flow_pretrain", with(kFlow, {"trainer.phases=flow_pretrain", "flow.pretrain_steps=10"}),
                             "inf_grad", "cond_emb", "nan_grad@0:5-100:l1.w", "gradient", "l1.w"};
const Phase kFlowGrpo = {"flow_grpo", with(kFlow, {"trainer.phases=flow_grpo", "tree.iterations=10"}), "nan_loss",
                         "loss", "inf_grad@0:5-100:out.b", "gradient", "out.b"};

}  // namespace

TEST_F(BadSteps, SftSkipsOneAndStopsAfterAStreak) {
  single_bad_step(kSft);
  streak_stops(kSft);
}

TEST_F(BadSteps, GrpoSkipsOneAndStopsAfterAStreak) {
  single_bad_step(kGrpo);
  streak_stops(kGrpo);
}

TEST_F(BadSteps, SpsaSkipsOneAndStopsAfterAStreak) {
  single_bad_step(kSpsa);
  streak_stops(kSpsa);
}

TEST_F(BadSteps, FlowPretrainSkipsOneAndStopsAfterAStreak) {
  single_bad_step(kFlowPretrain);
  streak_stops(kFlowPretrain);
}

TEST_F(BadSteps, FlowGrpoSkipsOneAndStopsAfterAStreak) {
  single_bad_step(kFlowGrpo);
  streak_stops(kFlowGrpo);
}

// max_bad_steps = 0 never stops: every step of a run whose every gradient is NaN is skipped, and it finishes.
TEST_F(BadSteps, ZeroMaxNeverStops) {
  Exit e = train(kSft, "never", {"trainer.max_bad_steps=0", "trainer.ckpt_every=0"}, "nan_grad@0:1-100", "n.log");
  ASSERT_EQ(e.code, 0) << e.log;
  std::vector<double> bad = read_training_series(path("never/metrics.h5"), "/metrics/bad_steps");
  ASSERT_EQ(bad.size(), 10u);
  EXPECT_EQ(bad.back(), 10.0);
  Ckpt ck(path("never/ckpt.h5"));
  EXPECT_EQ(ck.ck.optim_step, 0) << "no AdamW step was taken";
}

// The C API: a NaN gradient in iteration 2 skips its updates (stats say so, the optimizer state does not move), and
// trainer.max_bad_steps of them in a row return DRL_ERR_NUMERIC naming the iteration and the tensor.
TEST_F(BadSteps, EngineApiSkipsAndCounts) {
  std::vector<std::string> sets = {
      "model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=32",
      "model.max_seq=16", "data.n_train=200", "data.n_eval=0", "data.task=add", "data.size=2", "grpo.prompts_per_step=2",
      "grpo.group_size=4", "grpo.max_new_tokens=4", "d3s.n_init=2", "d3s.n_final=4", "grpo.reward=partial",
      "grpo.kl_beta=0.01", "trainer.max_bad_steps=2", "run.threads=1", "run.quiet=true", "run.out_dir=" + path("api")};
  std::vector<const char *> argv;
  for (const std::string &s : sets) argv.push_back(s.c_str());
  setenv("DYNRL_FAULT", "nan_grad@0:2,nan_grad@0:4-5:final_norm", 1);
  drl_fault_reset();
  drl_engine *e = nullptr;
  ASSERT_EQ(drl_engine_create(nullptr, argv.data(), (int)argv.size(), &e), DRL_OK) << last_error();
  drl_stats s1, s2, s3;
  ASSERT_EQ(drl_engine_iterate(e, &s1), DRL_OK) << last_error();
  EXPECT_EQ(s1.skipped, 0);
  EXPECT_GT(s1.optim_steps, 0);
  ASSERT_EQ(drl_engine_save(e, path("it1.h5").c_str()), DRL_OK) << last_error();
  ASSERT_EQ(drl_engine_iterate(e, &s2), DRL_OK) << last_error();
  EXPECT_EQ(s2.skipped, 1);
  EXPECT_EQ(s2.bad_steps, 1);
  EXPECT_EQ(s2.optim_steps, s1.optim_steps);
  EXPECT_TRUE(std::isnan(s2.grad_norm));
  ASSERT_EQ(drl_engine_save(e, path("it2.h5").c_str()), DRL_OK) << last_error();
  {
    Ckpt a(path("it1.h5")), b(path("it2.h5"));
    EXPECT_EQ(0, memcmp(a.ck.params, b.ck.params, a.bytes()));
    EXPECT_EQ(0, memcmp(a.ck.m, b.ck.m, a.bytes()));
    EXPECT_EQ(0, memcmp(a.ck.v, b.ck.v, a.bytes()));
    EXPECT_EQ(b.ck.bad_steps, 1);
  }
  ASSERT_EQ(drl_engine_iterate(e, &s3), DRL_OK) << last_error();
  EXPECT_EQ(s3.skipped, 0);
  EXPECT_GT(s3.optim_steps, s2.optim_steps);
  ASSERT_EQ(drl_engine_save(e, path("it3.h5").c_str()), DRL_OK) << last_error();
  {
    Ckpt b(path("it2.h5")), c(path("it3.h5"));
    EXPECT_NE(0, memcmp(b.ck.params, c.ck.params, b.bytes())) << "a good iteration moves the policy";
  }
  EXPECT_EQ(drl_engine_iterate(e, &s3), DRL_OK) << last_error();  // iteration 4: one bad, not yet two in a row
  EXPECT_EQ(s3.skipped, 1);
  EXPECT_EQ(drl_engine_iterate(e, &s3), DRL_ERR_NUMERIC);
  EXPECT_ERROR_HAS("grpo step 5: 2 consecutive steps with a non-finite gradient (first in final_norm); stopping; "
                   "the last good checkpoint is " + path("it3.h5") + " (grpo step 3)");
  EXPECT_EQ(s3.bad_steps, 3);
  drl_engine_destroy(e);
  unsetenv("DYNRL_FAULT");
  drl_fault_reset();
}
