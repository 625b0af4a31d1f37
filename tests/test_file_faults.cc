// What `dynrl train` does when its files fail: killed (SIGKILL) at each point of a checkpoint write and of a metrics
// flush, then resumed; damaged, truncated or mismatched checkpoints and datasets; a file-size limit (RLIMIT_FSIZE)
// reached while writing a checkpoint or the metrics. The previous checkpoint survives, a resume equals the
// uninterrupted run bit for bit, and a refused input is a message naming the file that leaves the run directory as
// it was.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "run_compare.h"
#include "test_util.h"

extern "C" {
#include "data/dataset.h"
#include "data/task.h"
}

namespace {

namespace fs = std::filesystem;

using Exit = CliExit;

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

// Every regular file of dir and its bytes.
std::map<std::string, std::string> snapshot(const std::string &dir) {
  std::map<std::string, std::string> files;
  for (const auto &e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files[e.path().filename().string()] = ss.str();
  }
  return files;
}

// Names of the temp files of the atomic writer in dir ("ckpt.h5.tmp.<pid>").
std::vector<std::string> temp_files(const std::string &dir) {
  std::vector<std::string> t;
  for (const auto &e : fs::directory_iterator(dir))
    if (has(e.path().filename().string(), ".tmp.")) t.push_back(e.path().filename().string());
  return t;
}

const std::vector<std::string> kTiny = {
    "model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=32",
    "model.max_seq=16", "data.n_train=200", "data.n_eval=0", "data.task=add", "data.size=2", "sft.batch_size=4",
    "optim.warmup_steps=3", "grpo.prompts_per_step=2", "grpo.group_size=4", "grpo.max_new_tokens=4",
    "grpo.reward=partial", "d3s.n_init=2", "d3s.n_final=4", "grpo.lr=0.001", "trainer.eval_every=0",
    "trainer.ckpt_every=2", "run.threads=1"};

// A run whose checkpoints (every 2 steps) are written in order; kill_at-th write is the one killed.
struct Case {
  const char *name;
  std::vector<std::string> sets;
  size_t rows;                      // metrics rows of the whole run
  int kill_at;                      // which checkpoint write (from 1) is killed
  const char *before_phase;         // the checkpoint on disk when the kill lands before the rename
  int before_step;
  const char *after_phase;          // ... and after it
  int after_step;
  std::vector<const char *> series;  // compared row by row (wall-clock series are not)
};

const std::vector<Case> &cases() {
  static const std::vector<Case> all = {
      {"sft", with(kTiny, {"trainer.phases=sft", "sft.steps=6"}), 6, 2, "sft", 2, "sft", 4,
       {"/metrics/loss", "/metrics/grad_norm", "/metrics/lr"}},
      // The second write is the first of grpo: the one before it ends sft.
      {"grpo", with(kTiny, {"trainer.phases=sft,grpo", "sft.steps=2", "grpo.steps=4"}), 6, 2, "sft", 2, "grpo", 2,
       {"/metrics/phase", "/metrics/loss", "/metrics/reward_mean", "/metrics/kept_tokens", "/metrics/grad_norm"}},
      {"flow",
       {"trainer.phases=flow_pretrain", "flow.pretrain_steps=6", "flow.batch_size=32", "flow.hidden=16",
        "flow.layers=2", "trainer.eval_every=0", "tree.eval_samples=8", "trainer.ckpt_every=2", "run.threads=1"},
       6, 2, "flow_pretrain", 2, "flow_pretrain", 4, {"/metrics/phase", "/metrics/loss", "/metrics/grad_norm"}},
  };
  return all;
}

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

class KillDuringWrite : public TempDirTest, public ::testing::WithParamInterface<Case> {};

}  // namespace

// For each point of a checkpoint write (and the metrics flush before it), a run killed there keeps a loadable
// checkpoint (the previous one, or the new one once renamed), and --resume then finishes equal to the run never
// killed: parameters, AdamW moments and metrics rows, bit for bit. The dead writer's temp file stays (another live
// process could own such a name) and does not disturb the resumed run.
TEST_P(KillDuringWrite, PreviousCheckpointSurvivesAndResumeEqualsTheUninterruptedRun) {
  const Case &c = GetParam();
  const std::string whole = path("whole");
  Exit w = run_dynrl(train_args(c.sets, whole), "", path("whole.log"));
  ASSERT_EQ(w.code, 0) << w.log;
  struct Point {
    const char *name;
    bool renamed;  // the new checkpoint is in place when the kill lands
    bool temp;     // the killed writer leaves its temp file
  };
  for (Point p : {Point{"h5_created", false, true}, Point{"ckpt_params", false, true},
                  Point{"h5_written", false, true}, Point{"h5_closed", false, true}, Point{"h5_synced", false, true},
                  Point{"h5_renamed", true, false}, Point{"metrics_flush", false, false}}) {
    SCOPED_TRACE(std::string(c.name) + ", kill at " + p.name + ":" + std::to_string(c.kill_at));
    const std::string dir = path(p.name);
    Exit k = run_dynrl(train_args(c.sets, dir), std::string("kill@") + p.name + ":" + std::to_string(c.kill_at),
                       path(std::string(p.name) + ".log"));
    ASSERT_EQ(k.signal, SIGKILL) << "the run was not killed\n" << k.log;
    EXPECT_TRUE(has(k.log, std::string("injected fault 'kill' at ") + p.name)) << k.log;
    EXPECT_EQ(temp_files(dir).size(), p.temp ? 1u : 0u) << "temp files after the kill";
    drl_checkpoint ck;
    ASSERT_EQ(drl_checkpoint_read((dir + "/ckpt.h5").c_str(), nullptr, &ck), DRL_OK) << last_error();
    EXPECT_STREQ(ck.phase, p.renamed ? c.after_phase : c.before_phase);
    EXPECT_EQ(ck.trainer_step, p.renamed ? c.after_step : c.before_step);
    drl_checkpoint_free(&ck);
    Exit r = run_dynrl(train_args(c.sets, dir, {}, true), "", path(std::string(p.name) + "_resume.log"));
    ASSERT_EQ(r.code, 0) << r.log;
    EXPECT_TRUE(temp_files(dir).empty()) << "the next writer removes the temp files of dead writers";
    expect_same_runs(whole, dir, c.rows, c.series);
  }
}

INSTANTIATE_TEST_SUITE_P(Phases, KillDuringWrite, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case> &i) { return std::string(i.param.name); });

namespace {

class FileFaults : public TempDirTest {
 protected:
  const std::vector<std::string> sft_ = with(kTiny, {"trainer.phases=sft", "sft.steps=6"});

  // A run directory stopped (and checkpointed) after 4 of its 6 steps: what a --resume would continue.
  std::string stopped_run(const std::string &name, const std::vector<std::string> &sets) {
    const std::string dir = path(name);
    Exit e = run_dynrl(train_args(sets, dir, {"trainer.stop_after=4"}), "", path(name + ".log"));
    EXPECT_EQ(e.code, 0) << e.log;
    return dir;
  }

  // Runs `dynrl train` on dir (a copy of `from` damaged by damage()), expecting a refusal whose message holds each
  // of parts, and no file of dir changed.
  void expect_refused(const std::string &from, const std::string &name, const std::function<void(const std::string &)> &damage,
                      const std::vector<std::string> &extra, bool resume, const std::vector<std::string> &parts) {
    SCOPED_TRACE(name);
    const std::string dir = path(name);
    fs::copy(from, dir);
    damage(dir);
    const auto before = snapshot(dir);
    Exit e = run_dynrl(train_args(sft_, dir, extra, resume), "", path(name + ".log"));
    EXPECT_EQ(e.code, 1) << e.log;
    EXPECT_TRUE(has(e.log, "dynrl: error:")) << e.log;
    for (const std::string &p : parts) EXPECT_TRUE(has(e.log, p)) << "missing '" << p << "' in\n" << e.log;
    EXPECT_LT(e.log.size(), 1500u) << "a short message, not an HDF5 error stack:\n" << e.log;
    const auto after = snapshot(dir);
    EXPECT_EQ(before.size(), after.size());
    for (const auto &[file, bytes] : before) {
      auto it = after.find(file);
      ASSERT_NE(it, after.end()) << file << " was removed";
      EXPECT_TRUE(it->second == bytes) << file << " changed";
    }
  }
};

void truncate_to_half(const std::string &file) { fs::resize_file(file, fs::file_size(file) / 2); }

void overwrite(const std::string &file, uintmax_t at, size_t n) {
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp((std::streamoff)at);
  f.write(std::string(n, 'X').data(), (std::streamsize)n);
}

// Sets the int64 attribute format_version of the root of file to v, in place.
void set_format_version(const std::string &file, int64_t v) {
  drl_h5_quiet();
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  hid_t a = H5Aopen_by_name(f, "/", "format_version", H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(a, 0) << file;
  EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
  H5Aclose(a);
  H5Fclose(f);
}

}  // namespace

// A damaged or mismatched checkpoint: --resume refuses it, naming the file and what differs, and changes no file of
// the run directory (the metrics file is not opened before the checkpoint has been read).
TEST_F(FileFaults, BadCheckpointIsRefusedAndNothingChanges) {
  const std::string good = stopped_run("good", sft_);
  const uintmax_t size = fs::file_size(good + "/ckpt.h5");
  auto ckpt = [](const std::string &dir) { return dir + "/ckpt.h5"; };
  expect_refused(good, "truncated", [&](const std::string &d) { truncate_to_half(ckpt(d)); }, {}, true,
                 {path("truncated/ckpt.h5"), "truncated"});
  // Bytes overwritten in metadata (first) and in the parameters and moments: a checksum tells.
  for (uintmax_t at : {(uintmax_t)1000, size / 4, size / 2, 3 * size / 4}) {
    const std::string name = "overwritten_at_" + std::to_string(at);
    expect_refused(good, name, [&](const std::string &d) { overwrite(ckpt(d), at, 256); }, {}, true,
                   {path(name + "/ckpt.h5"), "checksum"});
  }
  expect_refused(good, "other_shape", [](const std::string &) {}, {"model.d_ff=48"}, true,
                 {"tensor 'layers.0.w_gate' has shape [32, 16] in " + path("other_shape/ckpt.h5") +
                  " but [48, 16] in the model"});
  // The sort task's vocabulary has 12 tokens, add's 13.
  expect_refused(good, "other_task", [](const std::string &) {}, {"data.task=sort", "data.size=3"}, true,
                 {"tensor 'tok_emb' has shape [13, 16] in " + path("other_task/ckpt.h5") + " but [12, 16]"});
  expect_refused(good, "other_version", [&](const std::string &d) { set_format_version(ckpt(d), 2); }, {}, true,
                 {path("other_version/ckpt.h5") + ": checkpoint format version 2, this dynrl reads version 1"});
  // The intact copy resumes (the refusals above were about the damage).
  Exit e = run_dynrl(train_args(sft_, good, {}, true), "", path("good_resume.log"));
  EXPECT_EQ(e.code, 0) << e.log;
}

// A damaged or mismatched dataset (data.path): `dynrl train` refuses it, naming the file and what differs, and
// leaves the run directory of an earlier run as it was.
TEST_F(FileFaults, BadDatasetIsRefusedAndNothingChanges) {
  const std::string good = stopped_run("good", sft_);
  const std::string add = path("add.h5"), sort = path("sort.h5");
  for (auto [task, file] : {std::pair<const char *, std::string>{"add", add}, {"sort", sort}}) {
    Exit g = run_dynrl({"data", "gen", "--task", task, "--n", "200", "--seed", "3", "-o", file}, "", path("gen.log"));
    ASSERT_EQ(g.code, 0) << g.log;
  }
  const std::string cut = path("cut.h5"), newer = path("newer.h5");
  fs::copy_file(add, cut);
  truncate_to_half(cut);
  fs::copy_file(add, newer);
  set_format_version(newer, 2);
  auto none = [](const std::string &) {};
  expect_refused(good, "truncated_data", none, {"data.path=" + cut}, false, {cut, "truncated"});
  expect_refused(good, "newer_data", none, {"data.path=" + newer}, false,
                 {newer + ": dataset format_version 2 found, this build reads format_version 1"});
  // A dataset whose vocabulary is not its task's (the rewards would decode garbage).
  const std::string mixed = path("mixed.h5");
  drl_dataset ds;
  ASSERT_EQ(drl_task_generate("sort", 50, 3, 2, &ds), DRL_OK) << drl_last_error();
  snprintf(ds.task, sizeof ds.task, "add");
  ASSERT_EQ(drl_dataset_write(mixed.c_str(), &ds), DRL_OK) << drl_last_error();
  drl_dataset_free(&ds);
  expect_refused(good, "mixed_data", none, {"data.path=" + mixed}, false,
                 {mixed + ": task 'add' has the vocabulary \"0123456789+=.\""});
  // A dataset of another vocabulary for this run's checkpoint.
  expect_refused(good, "other_vocab", none, {"data.path=" + sort}, true,
                 {"tensor 'tok_emb' has shape [13, 16] in " + path("other_vocab/ckpt.h5") + " but [12, 16]"});
}

namespace {

// Tiny enough that a checkpoint (about 24 KB) is smaller than the metrics file (about 68 KB for the first 256 rows,
// 122 KB past them: the next chunk of each of its 24 series).
const std::vector<std::string> kSmall = {
    "model.d_model=8", "model.n_layers=1", "model.n_heads=1", "model.n_kv_heads=1", "model.d_ff=16",
    "model.max_seq=16", "data.n_train=200", "data.n_eval=0", "data.task=add", "data.size=2", "sft.batch_size=1",
    "optim.warmup_steps=3", "trainer.eval_every=0", "trainer.phases=sft", "sft.steps=300",
    "trainer.ckpt_every=100", "run.threads=1"};

}  // namespace

// A checkpoint write past RLIMIT_FSIZE fails with a message (not SIGXFSZ): the previous checkpoint stays as it was,
// no temp file is left, and a resume without the limit equals the uninterrupted run.
TEST_F(FileFaults, FileSizeLimitDuringACheckpointWrite) {
  // A policy of 19k parameters: its checkpoint (230 KB) is larger than the metrics file (70 KB).
  const std::vector<std::string> sets = with(sft_, {"model.d_model=32", "model.d_ff=64"});
  const std::string whole = path("whole"), dir = stopped_run("limited", sets);
  Exit w = run_dynrl(train_args(sets, whole), "", path("whole.log"));
  ASSERT_EQ(w.code, 0) << w.log;
  const uintmax_t ckpt = fs::file_size(dir + "/ckpt.h5"), metrics = fs::file_size(dir + "/metrics.h5");
  ASSERT_LT(metrics + 4096, ckpt) << "the limit must fall between the two files";
  const auto before = snapshot(dir);
  Exit e = run_dynrl(train_args(sets, dir, {}, true), "", path("limited.log"), {(rlim_t)(metrics + ckpt) / 2});
  EXPECT_EQ(e.signal, 0) << e.log;
  EXPECT_EQ(e.code, 1) << e.log;
  EXPECT_TRUE(has(e.log, dir + "/ckpt.h5")) << e.log;
  EXPECT_TRUE(has(e.log, "write failed: File too large")) << e.log;
  EXPECT_LT(e.log.size(), 1500u) << e.log;
  EXPECT_TRUE(temp_files(dir).empty());
  EXPECT_TRUE(snapshot(dir)["ckpt.h5"] == before.at("ckpt.h5")) << "the previous checkpoint changed";
  Exit r = run_dynrl(train_args(sets, dir, {}, true), "", path("resume.log"));
  ASSERT_EQ(r.code, 0) << r.log;
  expect_same_runs(whole, dir, 6, {"/metrics/loss", "/metrics/grad_norm", "/metrics/lr"});
}

// A metrics flush past RLIMIT_FSIZE fails with a message naming metrics.h5. HDF5 has by then recorded the new end of
// file in the superblock, so the file reads as truncated; the resume recovers the rows flushed before (up to the
// checkpoint) and equals the uninterrupted run.
TEST_F(FileFaults, FileSizeLimitDuringAMetricsFlush) {
  const std::string whole = path("whole"), dir = path("limited");
  Exit w = run_dynrl(train_args(kSmall, whole), "", path("whole.log"));
  ASSERT_EQ(w.code, 0) << w.log;
  const uintmax_t full = fs::file_size(whole + "/metrics.h5");
  ASSERT_LT(fs::file_size(whole + "/ckpt.h5"), full - 30000);
  // Below the 300-row file, above the 256-row one (and the checkpoint).
  Exit e = run_dynrl(train_args(kSmall, dir), "", path("limited.log"), {(rlim_t)(full - 20000)});
  EXPECT_EQ(e.signal, 0) << e.log;
  EXPECT_EQ(e.code, 1) << e.log;
  EXPECT_TRUE(has(e.log, dir + "/metrics.h5: H5Fflush")) << e.log;
  EXPECT_TRUE(has(e.log, "write failed: File too large")) << e.log;
  EXPECT_LT(e.log.size(), 1500u) << e.log;
  drl_checkpoint ck;
  ASSERT_EQ(drl_checkpoint_read((dir + "/ckpt.h5").c_str(), nullptr, &ck), DRL_OK) << last_error();
  EXPECT_EQ(ck.trainer_step, 200);
  drl_checkpoint_free(&ck);
  Exit r = run_dynrl(train_args(kSmall, dir, {}, true), "", path("resume.log"));
  ASSERT_EQ(r.code, 0) << r.log;
  expect_same_runs(whole, dir, 300, {"/metrics/loss", "/metrics/grad_norm", "/metrics/lr"});
}
