// `mpirun -np N dynrl train` end to end on the CPU backend: data-parallel SFT and GRPO equal one process running the
// same shards bit for bit, ZeRO-1 equals the unsharded optimizer and resumes on another rank count, one-byte SPSA on
// 4 ranks equals one rank with 4 samples, and a rank that hangs or dies ends the job with a message in time.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "../run_compare.h"
#include "../test_util.h"

namespace {

struct Result {
  int code;
  std::string out;
  double seconds;
};

Result run(const std::string &cmd) {
  auto t0 = std::chrono::steady_clock::now();
  Result r{-1, "", 0};
  FILE *p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) r.out += buf;
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// A policy of 19k parameters (five reduce chunks, so ZeRO gives every one of 4 ranks a part), a 2-digit add task,
// one CPU thread per rank (OpenBLAS's bits depend on the thread count).
const char *const kTiny =
    " --set model.d_model=32 --set model.n_layers=2 --set model.n_heads=2 --set model.n_kv_heads=1"
    " --set model.d_ff=64 --set model.max_seq=16 --set data.n_train=200 --set data.n_eval=0 --set data.size=2"
    " --set sft.steps=6 --set sft.batch_size=8 --set optim.warmup_steps=3 --set trainer.eval_every=0"
    " --set trainer.ckpt_every=0 --set grpo.steps=4 --set grpo.prompts_per_step=4 --set grpo.group_size=4"
    " --set grpo.max_new_tokens=4 --set d3s.n_init=2 --set d3s.n_final=4 --set grpo.lr=0.001 --set run.threads=1";

class Dist : public TempDirTest {
 protected:
  // `dynrl train` with the tiny config into dir `out` (under mpirun -np np when np > 0).
  Result train(int np, const std::string &out, const std::string &extra, const std::string &env = "") {
    // Open MPI refuses root and more ranks than cores unless told (other MPIs ignore these variables).
    std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 " +
                      env + " ";
    if (np > 0) cmd += std::string(DRL_MPIEXEC) + " -np " + std::to_string(np) + " ";
    cmd += std::string(DRL_CLI_PATH) + " train" + kTiny + " --set run.out_dir=" + path(out) + " " + extra;
    return run(cmd);
  }
};

const std::vector<const char *> kSeries = {"/metrics/loss",        "/metrics/grad_norm",  "/metrics/reward_mean",
                                           "/metrics/kept_tokens", "/metrics/usefulness", "/metrics/entropy",
                                           "/metrics/clip_frac",   "/metrics/phase"};

}  // namespace

TEST_F(Dist, TwoRanksEqualOneProcessWithTwoShards) {
  Result a = train(2, "two_ranks", "--quiet");
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = train(0, "one_process", "--quiet --set dist.shards=2");
  ASSERT_EQ(b.code, 0) << b.out;
  expect_same_runs(path("two_ranks"), path("one_process"), 10, kSeries);
  // One shard is a different computation (other sums, other GEMM shapes): the comparison can tell.
  Result c = train(0, "one_shard", "--quiet");
  ASSERT_EQ(c.code, 0) << c.out;
  drl_checkpoint x, y;
  ASSERT_EQ(drl_checkpoint_read((path("two_ranks") + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK);
  ASSERT_EQ(drl_checkpoint_read((path("one_shard") + "/ckpt.h5").c_str(), &x.layout, &y), DRL_OK);
  EXPECT_NE(0, memcmp(x.params, y.params, x.layout.total * sizeof(float)));
  drl_checkpoint_free(&x);
  drl_checkpoint_free(&y);
}

// A NaN in rank 1's gradient only (before the reduction): both ranks see it in the reduced gradient and skip the
// step alike, with and without ZeRO (under ZeRO final_norm lies in rank 1's part). A rank that had applied it would
// turn every later gradient NaN: the run would not end with one skipped step and finite weights.
TEST_F(Dist, NonFiniteGradientOnOneRankIsSkippedOnBoth) {
  for (const char *zero : {"false", "true"}) {
    std::string dir = std::string("nan_zero_") + zero, sets = std::string("--quiet --set trainer.phases=sft --set dist.zero=") + zero;
    Result a = train(2, dir, sets + " --set trainer.stop_after=2");
    ASSERT_EQ(a.code, 0) << a.out;
    Result b = train(2, dir, sets + " --resume --set trainer.stop_after=1", "DYNRL_FAULT=nan_grad@1:3:final_norm");
    ASSERT_EQ(b.code, 0) << b.out;
    EXPECT_NE(b.out.find("sft step 3: non-finite gradient (in final_norm): the step is skipped"), std::string::npos)
        << b.out;
    drl_checkpoint x;
    ASSERT_EQ(drl_checkpoint_read((path(dir) + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK) << drl_last_error();
    EXPECT_EQ(x.trainer_step, 3);
    EXPECT_EQ(x.optim_step, 2) << "step 3 made no AdamW step";
    EXPECT_EQ(x.bad_steps, 1);
    drl_checkpoint_free(&x);
    Result c = train(2, dir, sets + " --resume");
    ASSERT_EQ(c.code, 0) << c.out;
    std::vector<double> bad = read_series(path(dir) + "/metrics.h5", "/metrics/bad_steps");
    ASSERT_EQ(bad.size(), 6u) << zero;
    EXPECT_EQ(bad.back(), 1.0) << zero;
    ASSERT_EQ(drl_checkpoint_read((path(dir) + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK) << drl_last_error();
    EXPECT_EQ(x.optim_step, 5) << "every other step of the 6 trained";
    for (int64_t i = 0; i < x.layout.total; ++i) ASSERT_TRUE(std::isfinite(x.params[i])) << zero << " element " << i;
    drl_checkpoint_free(&x);
  }
}

// Reads "optimizer state X bytes per rank" from a run's log.
double optimizer_mib(const std::string &log) {
  size_t at = log.find("optimizer state ");
  return at == std::string::npos ? -1.0 : std::stod(log.substr(at + 16));
}

TEST_F(Dist, ZeroOnFourRanksEqualsOneProcessAndResumesOnTwo) {
  Result z = train(4, "zero4", "--set dist.zero=true");
  ASSERT_EQ(z.code, 0) << z.out;
  Result full = train(4, "full4", "");
  ASSERT_EQ(full.code, 0) << full.out;
  Result one = train(0, "one", "--quiet --set dist.shards=4");
  ASSERT_EQ(one.code, 0) << one.out;
  expect_same_runs(path("zero4"), path("one"), 10, kSeries);
  expect_same_runs(path("full4"), path("one"), 10, kSeries);
  double mz = optimizer_mib(z.out), mf = optimizer_mib(full.out);
  ASSERT_GT(mz, 0) << z.out;
  EXPECT_LT(mz, 0.5 * mf) << "ZeRO-1 optimizer state per rank " << mz << " bytes vs " << mf << " unsharded";
  // Stopped after 5 steps on 4 ranks, resumed on 2 (2 shards each): the whole optimizer state is in the checkpoint.
  Result part = train(4, "moved", "--quiet --set dist.zero=true --set trainer.stop_after=5");
  ASSERT_EQ(part.code, 0) << part.out;
  Result rest = train(2, "moved", "--quiet --set dist.zero=true --set dist.shards=4 --resume");
  ASSERT_EQ(rest.code, 0) << rest.out;
  expect_same_runs(path("moved"), path("one"), 10, {"/metrics/loss", "/metrics/grad_norm", "/metrics/phase"});
}

TEST_F(Dist, OneByteSpsaOnFourRanksEqualsOneRankWithFourSamples) {
  const std::string spsa = "--quiet --set optim.name=spsa --set spsa.lr=0.001 --set spsa.hash_every=5";
  Result a = train(4, "spsa4", spsa);
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = train(0, "spsa1", spsa + " --set spsa.samples=4");
  ASSERT_EQ(b.code, 0) << b.out;
  // (The loss metrics are rank 0's own contributions', so only the parameters compare.)
  expect_same_runs(path("spsa4"), path("spsa1"), 10, {"/metrics/phase"});
  // One byte per sample: rank 0 of the 4-rank job sent 1 per step, the single rank 4.
  for (double v : read_series(path("spsa4") + "/metrics.h5", "/metrics/payload_bytes")) EXPECT_EQ(v, 1.0);
  for (double v : read_series(path("spsa1") + "/metrics.h5", "/metrics/payload_bytes")) EXPECT_EQ(v, 4.0);
  // The loss of the 6 SFT steps and the surrogate of the 4 GRPO ones are finite, and the run moved the weights.
  for (double v : read_series(path("spsa4") + "/metrics.h5", "/metrics/loss")) EXPECT_TRUE(std::isfinite(v));
}

// An MoE policy: the bias steps on counts summed over the job, the auxiliary loss is per shard: both independent of
// how the shards are spread.
TEST_F(Dist, MoePolicyTwoRanksEqualOneProcessWithTwoShards) {
  for (const char *balance : {"aux_free", "aux_loss"}) {
    std::string moe = std::string("--quiet --set model.ffn=moe --set moe.experts=4 --set moe.bias_rate=0.01 ") +
                      "--set moe.rl_bias_rate=0.01 --set moe.balance=" + balance;
    Result a = train(2, std::string("moe2_") + balance, moe);
    ASSERT_EQ(a.code, 0) << a.out;
    Result b = train(0, std::string("moe1_") + balance, moe + " --set dist.shards=2");
    ASSERT_EQ(b.code, 0) << b.out;
    expect_same_runs(path(std::string("moe2_") + balance), path(std::string("moe1_") + balance), 10,
                     {"/metrics/loss", "/metrics/moe_maxvio_batch", "/metrics/moe_aux_loss", "/metrics/phase"});
    drl_checkpoint x, y;
    ASSERT_EQ(drl_checkpoint_read((path(std::string("moe2_") + balance) + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK);
    ASSERT_EQ(drl_checkpoint_read((path(std::string("moe1_") + balance) + "/ckpt.h5").c_str(), &x.layout, &y),
              DRL_OK);
    ASSERT_EQ(x.moe_bias_n, y.moe_bias_n);
    EXPECT_EQ(0, memcmp(x.moe_bias, y.moe_bias, x.moe_bias_n * sizeof(float))) << balance;
    drl_checkpoint_free(&x);
    drl_checkpoint_free(&y);
  }
}

TEST_F(Dist, AHungRankEndsTheJobWithAMessage) {
  Result r = train(3, "hang", "--quiet --set trainer.phases=sft --set sft.batch_size=6 --set dist.timeout_s=2",
                   "DYNRL_FAULT=hang@1:3");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("injected fault 'hang'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("got no answer from its peers for 2 s"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 20.0) << "the job took " << r.seconds << " s to end";
}

TEST_F(Dist, AKilledRankEndsTheJobWithAMessage) {
  Result r = train(3, "kill", "--quiet --set trainer.phases=sft --set sft.batch_size=6 --set dist.timeout_s=5",
                   "DYNRL_FAULT=kill@1:3");
  EXPECT_NE(r.code, 0) << r.out;
  bool told = r.out.find("terminated by the launcher") != std::string::npos ||
              r.out.find("got no answer from its peers") != std::string::npos;
  EXPECT_TRUE(told) << r.out;
  // Each surviving rank says why it ends: the launcher ended it, or its peers went silent.
  for (int rank : {0, 2}) {
    bool said = r.out.find("rank " + std::to_string(rank) + ": terminated by the launcher") != std::string::npos ||
                r.out.find("rank " + std::to_string(rank) + " of 3: ") != std::string::npos;
    EXPECT_TRUE(said) << "rank " << rank << " ended without a message:\n" << r.out;
  }
  EXPECT_LT(r.seconds, 20.0) << "the job took " << r.seconds << " s to end";
}

// Rank 0 killed in the middle of a checkpoint write: the job ends with a message, the previous checkpoint (step 2)
// loads, and the job resumes from it.
TEST_F(Dist, RankZeroKilledDuringACheckpointWrite) {
  const std::string sets = "--quiet --set trainer.phases=sft --set sft.batch_size=6 --set dist.timeout_s=5 "
                           "--set trainer.ckpt_every=2";
  Result r = train(3, "ckpt_kill", sets, "DYNRL_FAULT=kill@h5_synced:2");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("injected fault 'kill' at h5_synced"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 20.0) << "the job took " << r.seconds << " s to end";
  drl_checkpoint ck;
  ASSERT_EQ(drl_checkpoint_read(path("ckpt_kill/ckpt.h5").c_str(), nullptr, &ck), DRL_OK) << last_error();
  EXPECT_EQ(ck.trainer_step, 2);
  drl_checkpoint_free(&ck);
  Result rest = train(3, "ckpt_kill", sets + " --resume");
  EXPECT_EQ(rest.code, 0) << rest.out;
}

// A configuration every rank finds bad: each rank prints the error itself, none is cut short by the launcher.
TEST_F(Dist, EveryRankPrintsAnErrorTheyAllMeet) {
  Result r = train(2, "missing", "--set data.path=" + path("missing.h5"));
  EXPECT_EQ(r.code, 1) << r.out;
  for (int rank : {0, 1})
    EXPECT_NE(r.out.find("(rank " + std::to_string(rank) + " of 2): cannot open"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("terminated by the launcher"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing.h5"), std::string::npos) << r.out;
}

TEST_F(Dist, ShardsMustDivideTheBatch) {
  Result r = train(0, "bad", "--set dist.shards=3");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("sft.batch_size (8) must be a multiple of the 3 data-parallel shards"), std::string::npos)
      << r.out;
}
