// Resume after a crash, for every kind of phase: `dynrl train` is killed (SIGKILL, through DYNRL_FAULT) at random
// steps, with a random checkpoint interval in each attempt, and resumed with --resume until it finishes. The final
// checkpoint (parameters, AdamW moments, position) and every metrics row must equal the uninterrupted run's, bit for
// bit. The steps come from a seeded generator: DYNRL_TEST_SEED picks another draw, and a failure prints the draw.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "run_compare.h"
#include "test_util.h"

namespace {

struct Case {
  const char *name;
  int steps;  // global steps of the whole run (metrics rows)
  std::vector<std::string> sets;
  std::vector<const char *> series;  // metrics compared row by row (wall-clock series are not)
};

// Test names and failure messages show the case's name, not its bytes.
void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

const std::vector<std::string> kTiny = {
    "model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=32",
    "model.max_seq=16", "data.n_train=200", "data.n_eval=8", "data.task=add", "data.size=2", "sft.batch_size=4",
    "optim.warmup_steps=2", "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=4",
    "d3s.n_init=2", "d3s.n_final=4", "grpo.lr=0.001", "trainer.eval_every=4", "run.threads=1"};

const std::vector<Case> &cases() {
  static const std::vector<Case> all = {
      {"sft", 12, with(kTiny, {"trainer.phases=sft", "sft.steps=12"}),
       {"/metrics/loss", "/metrics/grad_norm", "/metrics/lr", "/metrics/eval_accuracy", "/metrics/heldout_loss"}},
      {"sft_grpo", 12, with(kTiny, {"trainer.phases=sft,grpo", "sft.steps=6", "grpo.steps=6"}),
       {"/metrics/phase", "/metrics/loss", "/metrics/grad_norm", "/metrics/reward_mean", "/metrics/kept_tokens",
        "/metrics/entropy", "/metrics/eval_accuracy"}},
      {"spsa", 10,
       with(kTiny, {"trainer.phases=sft,grpo", "sft.steps=6", "grpo.steps=4", "optim.name=spsa", "spsa.lr=0.001",
                    "spsa.samples=2", "spsa.hash_every=3"}),
       {"/metrics/phase", "/metrics/loss", "/metrics/projected_grad", "/metrics/reward_mean",
        "/metrics/payload_bytes"}},
      {"moe", 10,
       with(kTiny, {"trainer.phases=sft,grpo", "sft.steps=6", "grpo.steps=4", "model.ffn=moe", "moe.experts=4",
                    "moe.top_k=2", "moe.bias_rate=0.01", "moe.rl_bias_rate=0.01"}),
       {"/metrics/phase", "/metrics/loss", "/metrics/moe_maxvio_batch", "/metrics/moe_maxvio_global",
        "/metrics/reward_mean"}},
      {"flow", 20,
       {"trainer.phases=flow_pretrain,flow_grpo", "flow.pretrain_steps=12", "flow.batch_size=32", "flow.hidden=16",
        "flow.layers=2", "tree.iterations=8", "tree.steps=6", "tree.depth=3", "tree.window_every=3",
        "tree.conditions_per_iter=2", "tree.eval_samples=16", "tree.eval_every=4", "tree.epochs=2",
        "trainer.eval_every=5", "run.threads=1"},
       {"/metrics/phase", "/metrics/loss", "/metrics/grad_norm", "/metrics/reward_mean", "/metrics/nfe_total",
        "/metrics/eval_reward", "/metrics/window"}},
  };
  return all;
}

uint32_t test_seed() {
  const char *s = getenv("DYNRL_TEST_SEED");
  return s ? (uint32_t)strtoul(s, nullptr, 10) : 20261201u;
}

class Resume : public TempDirTest, public ::testing::WithParamInterface<Case> {};

TEST_P(Resume, KilledAtRandomStepsThenResumedEqualsTheUninterruptedRun) {
  const Case &c = GetParam();
  const std::string whole = path("whole"), split = path("split");
  CliExit w = run_dynrl(train_args(c.sets, whole), "", path("whole.log"));
  ASSERT_EQ(w.code, 0) << w.log;

  std::mt19937 rng(test_seed() ^ (uint32_t)std::hash<std::string>{}(c.name));
  std::ostringstream draw;  // what happened, for the failure message
  draw << "DYNRL_TEST_SEED=" << test_seed() << ":";
  // Three crashes at distinct random steps in [1, steps - 1], in order, then a run to the end; every attempt draws
  // its own checkpoint interval.
  std::vector<int> kills;
  while (kills.size() < 3) {
    int s = std::uniform_int_distribution<int>(1, c.steps - 1)(rng);
    if (std::find(kills.begin(), kills.end(), s) == kills.end()) kills.push_back(s);
  }
  std::sort(kills.begin(), kills.end());
  kills.push_back(0);
  for (size_t attempt = 0; attempt < kills.size(); ++attempt) {
    int kill = kills[attempt], ckpt_every = std::uniform_int_distribution<int>(1, 4)(rng);
    draw << " [ckpt_every " << ckpt_every << (kill ? ", kill after step " + std::to_string(kill) : ", to the end") << "]";
    CliExit e = run_dynrl(train_args(c.sets, split, {"trainer.ckpt_every=" + std::to_string(ckpt_every)}, true), kill ? "kill@0:" + std::to_string(kill) : "",
                       path("split" + std::to_string(attempt) + ".log"));
    if (kill) ASSERT_EQ(e.signal, SIGKILL) << draw.str() << ": the run was not killed\n" << e.log;
    else ASSERT_EQ(e.code, 0) << draw.str() << "\n" << e.log;
  }
  SCOPED_TRACE(draw.str());
  expect_same_runs(whole, split, (size_t)c.steps, c.series);
}

INSTANTIATE_TEST_SUITE_P(EveryPhase, Resume, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case> &i) { return std::string(i.param.name); });

}  // namespace
