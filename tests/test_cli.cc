// The dynrl command as a user runs it: exit codes, usage on wrong usage, and the data and config verbs end to end.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

extern "C" {
#include "data/dataset.h"
#include "data/h5.h"
}

namespace {

struct CliRun {
  int code;
  std::string out;  // stdout and stderr together
};

CliRun run_env(const std::string &env, const std::string &args) {
  std::string cmd = env + " " + std::string(DRL_CLI_PATH) + " " + args + " 2>&1";
  CliRun r{-1, ""};
  FILE *p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

CliRun run(const std::string &args) { return run_env("", args); }

class Cli : public TempDirTest {};

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_F(Cli, VersionAndHelp) {
  CliRun v = run("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_TRUE(has(v.out, "dynrl 0.")) << v.out;
  CliRun h = run("help");
  EXPECT_EQ(h.code, 0);
  EXPECT_TRUE(has(h.out, "data")) << h.out;
  EXPECT_TRUE(has(h.out, "config")) << h.out;
  CliRun hv = run("help data");
  EXPECT_EQ(hv.code, 0);
  EXPECT_TRUE(has(hv.out, "usage: dynrl data gen")) << hv.out;
}

TEST_F(Cli, WrongUsageExitsTwoWithUsage) {
  for (const char *args : {"", "frobnicate", "help frobnicate", "data", "data gen --task add", "data gen --n",
                           "data gen --task add --n x -o f.h5", "data info", "config", "config print a.yaml b.yaml",
                           "config print --set", "sample", "sample a.h5 b.h5", "sample a.h5 --n 0",
                           "sample a.h5 --bogus", "generate", "generate p --n 0 --prompt x", "generate p",
                           "generate p --prompt x --top-p 0", "generate p --prompt x --device tpu", "eval p",
                           "eval --data d.h5", "eval p --data d.h5 --batch 0", "eval p --data d.h5 --reward x:y", "data gen --task add --n 0 -o f.h5"}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, 2) << "dynrl " << args << "\n" << r.out;
    EXPECT_TRUE(has(r.out, "usage:")) << "dynrl " << args << "\n" << r.out;
  }
}

TEST_F(Cli, DataGenThenInfo) {
  std::string file = dir_ + "/nested/dir/add.h5";
  CliRun g = run("data gen --task add --n 50 --seed 7 -o " + file);
  ASSERT_EQ(g.code, 0) << g.out;
  CliRun i = run("data info " + file);
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_TRUE(has(i.out, "task     add")) << i.out;
  EXPECT_TRUE(has(i.out, "50 sequences")) << i.out;
  EXPECT_TRUE(has(i.out, "prompt[0]")) << i.out;
  // Same seed, same file contents (dataset-level determinism through the CLI).
  std::string again = dir_ + "/again.h5";
  ASSERT_EQ(run("data gen --task add --n 50 --seed 7 -o " + again).code, 0);
  CliRun i2 = run("data info " + again);
  EXPECT_EQ(i.out.substr(i.out.find("task")), i2.out.substr(i2.out.find("task")));
}

TEST_F(Cli, DataErrorsAreMessagesNotCrashes) {
  CliRun missing = run("data info " + dir_ + "/nope.h5");
  EXPECT_EQ(missing.code, 1);
  EXPECT_TRUE(has(missing.out, "dynrl: error:")) << missing.out;
  std::ofstream(dir_ + "/text.h5") << "not an hdf5 file\n";
  CliRun text = run("data info " + dir_ + "/text.h5");
  EXPECT_EQ(text.code, 1);
  EXPECT_TRUE(has(text.out, "text.h5")) << text.out;
  CliRun task = run("data gen --task nosuchtask --n 5 -o " + dir_ + "/x.h5");
  EXPECT_EQ(task.code, 1);
  EXPECT_TRUE(has(task.out, "nosuchtask")) << task.out;
  EXPECT_TRUE(has(task.out, "add")) << "lists the known tasks: " << task.out;
}

TEST_F(Cli, ConfigPrintLoadsBackToTheSameConfig) {
  CliRun first = run("config print --set model.d_model=96 --set optim.lr=0.0003");
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_TRUE(has(first.out, "d_model: 96")) << first.out;
  std::string file = dir_ + "/effective.yaml";
  std::ofstream(file) << first.out;
  CliRun second = run("config print " + file);
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(first.out, second.out);
}

TEST_F(Cli, ConfigErrorsNameTheKey) {
  CliRun bad = run("config print --set model.d_modle=3");
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(has(bad.out, "model.d_modle")) << bad.out;
  std::ofstream(dir_ + "/bad.yaml") << "model:\n  n_layers: -4\n";
  CliRun range = run("config print " + dir_ + "/bad.yaml");
  EXPECT_EQ(range.code, 1);
  EXPECT_TRUE(has(range.out, "model.n_layers")) << range.out;
}

// A flow policy end to end through the command: train (a short flow2d run), then sample to HDF5.
TEST_F(Cli, TrainFlowThenSample) {
  std::string sets = " --set trainer.phases=flow_pretrain,flow_grpo --set flow.pretrain_steps=20 --set flow.hidden=16"
                     " --set tree.iterations=3 --set tree.eval_samples=8 --set run.threads=1 --set run.out_dir=" +
                     path("run");
  CliRun t = run("train" + sets);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_TRUE(has(t.out, "eval reward after flow_pretrain:")) << t.out;
  EXPECT_TRUE(has(t.out, "  flow_grpo")) << "the summary's line of each phase: " << t.out;
  CliRun s = run("sample " + path("run/ckpt.h5") + " -o " + path("s.h5") + " --n 16");
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_TRUE(has(s.out, "wrote 16 samples per condition")) << s.out;
  EXPECT_TRUE(std::filesystem::exists(path("s.h5")));
  CliRun m = run("sample " + path("missing.h5"));
  EXPECT_EQ(m.code, 1) << m.out;
  EXPECT_TRUE(has(m.out, "missing.h5")) << m.out;
  CliRun h = run("help sample");
  EXPECT_TRUE(has(h.out, "usage: dynrl sample")) << h.out;
}

// A policy dynrl trained on a built-in task: `dynrl generate` decodes it with the task's characters, `dynrl eval`
// scores a set of that task by exact match (a response is correct when its text is the answer's) and refuses a text
// set.
TEST_F(Cli, TaskPolicyGeneratesAndEvaluates) {
  std::string sets = " --set trainer.phases=[sft] --set sft.steps=150 --set model.d_model=32 --set model.n_layers=2"
                     " --set model.d_ff=64 --set data.n_train=2000 --set data.n_eval=16 --set data.task=add --set data.size=2"
                     " --set run.threads=2 --set run.out_dir=" + path("run");
  CliRun t = run("train --quiet" + sets);
  ASSERT_EQ(t.code, 0) << t.out;
  CliRun g = run("generate " + path("run/ckpt.h5") + " --prompt 12+34= --temperature 0 --max-new-tokens 8");
  ASSERT_EQ(g.code, 0) << g.out;
  std::string text = g.out.substr(0, g.out.find('\n'));
  ASSERT_FALSE(text.empty()) << g.out;
  for (char c : text) EXPECT_TRUE(has("0123456789+=.", std::string(1, c))) << g.out;
  EXPECT_TRUE(has(g.out, "\ndynrl generate: 6 prompt tokens, " + std::to_string(text.size()) + " new")) << g.out;
  ASSERT_EQ(run("data gen --task add --size 2 --n 40 --seed 9 -o " + path("set.h5")).code, 0);
  CliRun e = run("eval " + path("run/ckpt.h5") + " --data " + path("set.h5") + " --batch 7 -o " + path("eval.h5"));
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_TRUE(has(e.out, "(reward: exact match)")) << e.out;
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(path("set.h5").c_str(), &ds), DRL_OK);
  drl_h5_file f;
  ASSERT_EQ(drl_h5_open_read(path("eval.h5").c_str(), &f), DRL_OK);
  int64_t n[1] = {40}, nb[1] = {0}, no[1] = {41};
  std::vector<uint8_t> correct(40), bytes;
  std::vector<int64_t> offsets(41);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/eval/correct", DRL_H5_UINT8, 1, n, correct.data()), DRL_OK);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/eval/response_offsets", DRL_H5_INT64, 1, no, offsets.data()), DRL_OK);
  ASSERT_EQ(drl_h5_array_shape(&f, "/eval/response", DRL_H5_UINT8, 1, nb), DRL_OK);
  bytes.resize((size_t)nb[0]);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/eval/response", DRL_H5_UINT8, 1, nb, bytes.data()), DRL_OK);
  double accuracy = -1;
  ASSERT_EQ(drl_h5_read_attr_double(&f, "/eval", "accuracy", &accuracy), DRL_OK);
  drl_h5_close(&f);
  int right = 0;
  for (int i = 0; i < 40; ++i) {
    std::string response(bytes.begin() + offsets[i], bytes.begin() + offsets[i + 1]), answer;
    for (int64_t k = ds.answers.offsets[i]; k < ds.answers.offsets[i + 1]; ++k)
      answer += ds.vocab[ds.answers.tokens[k]];
    EXPECT_EQ(correct[i], response == answer ? 1 : 0) << i << ": " << response << " vs " << answer;
    right += correct[i];
  }
  drl_dataset_free(&ds);
  EXPECT_DOUBLE_EQ(accuracy, right / 40.0);
  EXPECT_GT(right, 0) << "150 SFT steps learn some 2-digit sums";
  EXPECT_TRUE(has(e.out, "accuracy " )) << e.out;
  CliRun bad = run("eval " + path("run/ckpt.h5") + " --data " + source_dir() + "/tests/fixtures/text/missing.h5");
  EXPECT_EQ(bad.code, 1) << bad.out;
  CliRun r = run("eval " + path("run/ckpt.h5") + " --data " + path("set.h5") + " --reward gsm8k");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r.out, "scored by exact match")) << r.out;
  // A checkpoint where a config or a dataset is expected: its configuration, or a message that says what it is.
  CliRun c = run("config print " + path("run/ckpt.h5") + " --set grpo.steps=7");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_TRUE(has(c.out, "  d_model: 32\n")) << c.out;
  EXPECT_TRUE(has(c.out, "  steps: 7\n")) << c.out;
  CliRun d = run("data info " + path("run/ckpt.h5"));
  EXPECT_EQ(d.code, 1) << d.out;
  EXPECT_TRUE(has(d.out, "is a checkpoint, not a dataset")) << d.out;
  // The same run directory again: refused, naming both ways on.
  CliRun again = run("train --quiet" + sets);
  EXPECT_EQ(again.code, 1) << again.out;
  EXPECT_TRUE(has(again.out, "already holds a run")) << again.out;
  EXPECT_TRUE(has(again.out, "--resume") && has(again.out, "--force")) << again.out;
}

// `dynrl train | head`: the reader going away does not end the run; it finishes and leaves readable files.
TEST_F(Cli, TrainIntoAClosedPipeFinishes) {
  std::string cmd = std::string(DRL_CLI_PATH) + " train --no-progress --set trainer.phases=[sft] --set sft.steps=30"
                    " --set run.log_every=1 --set model.d_model=32 --set model.n_layers=1 --set data.n_eval=8"
                    " --set run.out_dir=" + path("run") + " | head -c 20 > /dev/null";
  ASSERT_EQ(system(cmd.c_str()), 0);
  for (int i = 0; i < 100 && !std::filesystem::exists(path("run/ckpt.h5")); ++i) usleep(100000);
  CliRun info = run("config print " + path("run/ckpt.h5"));
  EXPECT_EQ(info.code, 0) << "the checkpoint is complete: " << info.out;
  drl_h5_file f;
  ASSERT_EQ(drl_h5_open_read(path("run/metrics.h5").c_str(), &f), DRL_OK) << drl_last_error();
  int64_t shape[1];
  EXPECT_EQ(drl_h5_array_shape(&f, "/metrics/loss", DRL_H5_FLOAT64, 1, shape), DRL_OK);
  EXPECT_EQ(shape[0], 31) << "every step's row and the evaluation before training";
  drl_h5_close(&f);
}

// Errors a user reads name no source file of dynrl (DYNRL_DEBUG=1 keeps them), and do not repeat the file name.
TEST_F(Cli, ErrorsNameNoSourceLocations) {
  std::string bad = path("bad.yaml");
  std::ofstream(bad) << "model: {d_model: 0}\n";
  CliRun e = run("config print " + bad);
  EXPECT_EQ(e.code, 1) << e.out;
  EXPECT_TRUE(has(e.out, "model.d_model")) << e.out;
  EXPECT_FALSE(has(e.out, ".c:")) << e.out;
  EXPECT_FALSE(has(e.out, bad + ": " + bad + ":")) << e.out;
  CliRun d = run_env("DYNRL_DEBUG=1", "config print " + bad);
  EXPECT_TRUE(has(d.out, ".c:")) << d.out;
  CliRun cuda = run("train --set run.device=cuda --set run.out_dir=" + path("gpu"));
  if (!has(cuda.out, "built without CUDA") && cuda.code == 0) GTEST_SKIP() << "a GPU is visible";
  EXPECT_EQ(cuda.code, 1) << cuda.out;
  EXPECT_TRUE(has(cuda.out, "set run.device=cpu, or auto")) << cuda.out;
}
