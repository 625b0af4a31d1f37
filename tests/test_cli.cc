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

namespace {

struct CliRun {
  int code;
  std::string out;  // stdout and stderr together
};

CliRun run(const std::string &args) {
  std::string cmd = std::string(DRL_CLI_PATH) + " " + args + " 2>&1";
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
                           "sample a.h5 --bogus"}) {
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
  EXPECT_TRUE(has(t.out, "eval reward:")) << t.out;
  EXPECT_TRUE(has(t.out, "after flow_pretrain")) << t.out;
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
