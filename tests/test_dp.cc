// Data parallelism and SPSA in one process (the mpi suites run the same code across ranks): a job of one, shard
// sums in the documented tree, the backward's gradient hook, the SFT shards of a batch, the SPSA step, and resume.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "run_compare.h"
#include "test_util.h"

extern "C" {
#include "data/task.h"
#include "distributed/dp.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/run.h"
#include "engine/sft.h"
#include "engine/spsa.h"
#include "engine/trainer.h"
#include "kernels/rank_sum.h"
#include "models/transformer.h"
}

TEST(Comm, AProcessWithoutALauncherIsAJobOfOne) {
  unsetenv("DYNRL_MPI");
  if (drl_comm_launched()) GTEST_SKIP() << "started by an MPI launcher";
  drl_comm c;
  ASSERT_EQ(drl_comm_init(&c, 1.0), DRL_OK) << last_error();
  EXPECT_EQ(c.rank, 0);
  EXPECT_EQ(c.size, 1);
  int32_t x = 7, y = 0;
  EXPECT_EQ(drl_comm_allgather(&c, &x, sizeof x, &y), DRL_OK);
  EXPECT_EQ(y, 7);
  double d[2] = {1.5, 2.5};
  EXPECT_EQ(drl_comm_sum_f64(&c, d, d, 2), DRL_OK);
  EXPECT_EQ(d[1], 2.5);
  std::vector<float> buf = {1, 2, 3};
  int64_t bounds[2] = {0, 3};
  float scratch[4];
  EXPECT_EQ(drl_comm_reduce_scatter(&c, buf.data(), 0, 3, bounds, scratch, 4), DRL_OK);
  EXPECT_EQ(buf[2], 3.0f);
  EXPECT_EQ(drl_comm_barrier(&c), DRL_OK);
  drl_comm_abort(&c, 1);  // a job of one has no peers to end: returns
  drl_comm_finalize(&c);
  EXPECT_EQ(drl_comm_init(&c, 0.0), DRL_ERR_INVALID_ARG);
  setenv("DYNRL_MPI", "0", 1);
  EXPECT_EQ(drl_comm_launched(), 0);
  unsetenv("DYNRL_MPI");
}

TEST(Comm, EvenBoundsAreWholeChunks) {
  int64_t b[5];
  drl_comm_even_bounds(10 * 4096 + 5, 4, 4096, b);
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(b[4], 10 * 4096 + 5);
  for (int r = 1; r < 4; ++r) {
    EXPECT_EQ(b[r] % 4096, 0);
    EXPECT_LE(b[r - 1], b[r]);
  }
  drl_comm_even_bounds(100, 3, 4096, b);  // fewer chunks than parts: the first part takes them
  EXPECT_EQ(b[1], 0);
  EXPECT_EQ(b[3], 100);
}

TEST(DataParallel, LocalShardsSumInTheShardTree) {
  drl_device dev = cpu_device();
  const int64_t n = 1000;
  for (int S : {1, 2, 3, 5, 8, 13}) {
    drl_dp dp;
    drl_dp_options o = {S, 0, 1, 0};
    ASSERT_EQ(drl_dp_create(&dp, nullptr, &dev, n, &o), DRL_OK) << last_error();
    EXPECT_EQ(drl_dp_local(&dp), S);
    std::vector<std::vector<float>> leaves;
    std::vector<float> g(n);
    for (int s = 0; s < S; ++s) {
      leaves.push_back(random_normal(n, std::ldexp(1.0f, 10 * (s % 3)), 100 + s));
      g = leaves.back();
      ASSERT_EQ(drl_dp_grads_push(&dp, g.data()), DRL_OK);
    }
    ASSERT_EQ(drl_dp_grads_reduce(&dp, g.data()), DRL_OK);
    std::vector<float> x(S);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int s = 0; s < S; ++s) x[s] = leaves[s][i];
      float want = drl_tree_sum_elem(x.data(), 1, S);
      bad += std::memcmp(&want, &g[i], 4) != 0;
    }
    EXPECT_EQ(bad, 0) << S << " shards";
    // Pushing more shards than the rank has is a bug, not a silent extra term.
    for (int s = 0; s < S; ++s) ASSERT_EQ(drl_dp_grads_push(&dp, g.data()), DRL_OK);
    if (S > 1) {
      EXPECT_EQ(drl_dp_grads_push(&dp, g.data()), DRL_ERR_INTERNAL);
    }
    drl_dp_free(&dp);
  }
}

TEST(Transformer, GradientHookSeesFinalRangesLastToFirst) {
  drl_device dev = cpu_device();
  drl_transformer_config tc = {11, 16, 3, 2, 1, 32, 8, 0, 10000.0f, 0.05f, 1e-5f, {}, 0, 0, 0, 0, {}};  // untied LM head
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &tc, &dev, 2, 8, 1), DRL_OK);
  struct Seen {
    std::vector<int64_t> from;
    std::vector<float> snapshot;
    const drl_transformer *m;
  } seen{{}, {}, &m};
  auto hook = [](void *user, float *grads, int64_t from) -> drl_status {
    Seen *s = (Seen *)user;
    s->from.push_back(from);
    if (from == 0) s->snapshot.assign(grads, grads + s->m->ps.layout.total);
    return DRL_OK;
  };
  drl_transformer_set_grad_hook(&m, hook, &seen);
  std::vector<int32_t> tok = {1, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7, 8, 9}, tg(16);
  for (int i = 0; i < 16; ++i) tg[i] = (i % 8) < 7 ? tok[i + 1] : -1;
  std::vector<float> dlp(16, -0.1f);
  ASSERT_EQ(drl_transformer_forward(&m, tok.data(), tg.data(), nullptr, 2, 8, 1.0f, nullptr, nullptr), DRL_OK);
  ASSERT_EQ(drl_params_zero_grads(&m.ps), DRL_OK);
  ASSERT_EQ(drl_transformer_backward(&m, dlp.data()), DRL_OK);
  // final_norm (with the LM head after it), then each block from the last, then the embedding.
  ASSERT_EQ(seen.from.size(), 5u);
  EXPECT_EQ(seen.from[0], drl_layout_find(&m.ps.layout, "final_norm")->offset);
  EXPECT_EQ(seen.from[1], drl_layout_find(&m.ps.layout, "layers.2.attn_norm")->offset);
  EXPECT_EQ(seen.from[3], drl_layout_find(&m.ps.layout, "layers.0.attn_norm")->offset);
  EXPECT_EQ(seen.from[4], 0);
  EXPECT_EQ(0, memcmp(seen.snapshot.data(), m.ps.grads, m.ps.layout.total * sizeof(float)));
  // A sharded optimizer state refuses the single-process step.
  ASSERT_EQ(drl_params_shard_optimizer(&m.ps, 100, 200), DRL_OK);
  drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1};
  EXPECT_EQ(optim_step(&m.ps, hp), DRL_ERR_INVALID_ARG);
  drl_transformer_free(&m);
}

TEST(SftBatch, ShardsOfABatchAreItsRowsWithTheWholeNormaliser) {
  drl_dataset ds;
  ASSERT_EQ(drl_task_generate("add", 64, 5, 2, &ds), DRL_OK);
  int T = 0;
  ASSERT_EQ(drl_sft_max_len(&ds, 0, 64, &T), DRL_OK);
  drl_sft_batch whole, half;
  ASSERT_EQ(drl_sft_batch_alloc(&whole, 8, T), DRL_OK);
  ASSERT_EQ(drl_sft_batch_alloc(&half, 4, T), DRL_OK);
  ASSERT_EQ(drl_sft_batch_fill(&whole, &ds, 64, 9, 3, 0, 0), DRL_OK);
  int64_t norm = drl_sft_scored(&ds, 64, 9, 3, 0, 8);
  EXPECT_EQ(norm, whole.scored);
  for (int h = 0; h < 2; ++h) {
    ASSERT_EQ(drl_sft_batch_fill(&half, &ds, 64, 9, 3, 4 * h, norm), DRL_OK);
    EXPECT_EQ(0, memcmp(half.tokens, whole.tokens + 4 * h * T, 4 * T * sizeof(int32_t)));
    EXPECT_EQ(0, memcmp(half.dlogprob, whole.dlogprob + 4 * h * T, 4 * T * sizeof(float)));
  }
  drl_sft_batch_free(&whole);
  drl_sft_batch_free(&half);
  drl_dataset_free(&ds);
}

namespace {

// A quadratic bowl sum_i (p_i - i / n)^2 / n: its minimum is known.
drl_status bowl(void *user, const float *p, uint32_t, uint32_t, double *loss) {
  int64_t n = *(int64_t *)user;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (p[i] - (double)i / n) * (p[i] - (double)i / n);
  *loss = s / n;
  return DRL_OK;
}

}  // namespace

TEST(Spsa, OneProcessDescendsAndTheHashIsFnv1a) {
  drl_device dev = cpu_device();
  int64_t n = 64;
  std::vector<float> p(n, 0.0f);
  double start = 0;
  bowl(&n, p.data(), 0, 0, &start);
  for (drl_spsa_dist dist : {DRL_SPSA_RADEMACHER, DRL_SPSA_NORMAL}) {
    drl_spsa s;
    drl_spsa_config c = {3, 0.5f, 1e-3f, 2, dist, DRL_SPSA_LOG8, 10};
    ASSERT_EQ(drl_spsa_create(&s, &c, nullptr, &dev, n), DRL_OK) << last_error();
    std::fill(p.begin(), p.end(), 0.0f);
    drl_spsa_stats st;
    for (uint32_t t = 0; t < 400; ++t) ASSERT_EQ(drl_spsa_step(&s, p.data(), t, bowl, &n, &st), DRL_OK);
    double end = 0;
    bowl(&n, p.data(), 0, 0, &end);
    EXPECT_LT(end, 0.2 * start) << "dist " << dist;
    EXPECT_EQ(st.contributions, 2);
    EXPECT_EQ(st.payload_bytes, 2);
    drl_spsa_free(&s);
  }
  // FNV-1a 64 of the bytes of 0.0f (four zero bytes).
  float zero = 0.0f;
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 4; ++i) h = (h ^ 0) * 1099511628211ull;
  EXPECT_EQ(drl_spsa_params_hash(&zero, 1), h);
  drl_spsa s;
  drl_spsa_config bad = {3, 0.5f, 0.0f, 1, DRL_SPSA_RADEMACHER, DRL_SPSA_LOG8, 0};
  EXPECT_EQ(drl_spsa_create(&s, &bad, nullptr, &dev, n), DRL_ERR_INVALID_ARG);
}

class SpsaTrainer : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    drl_log_setup(DRL_LOG_ERROR, 1, 0);
  }
  drl_config config(const std::string &dir) {
    drl_config c;
    EXPECT_EQ(drl_config_load_default(&c), DRL_OK);
    for (const char *kv : {"model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1",
                           "model.d_ff=32", "model.max_seq=16", "data.n_train=200", "data.n_eval=0", "data.task=add", "data.size=2",
                           "sft.steps=8", "sft.batch_size=4", "trainer.eval_every=0", "trainer.ckpt_every=0",
                           "run.threads=2", "run.quiet=true", "grpo.steps=4", "grpo.prompts_per_step=2",
                           "grpo.group_size=4", "grpo.max_new_tokens=4", "d3s.n_init=2", "d3s.n_final=4",
                           "optim.name=spsa", "spsa.samples=2", "spsa.lr=0.01"})
      EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv << ": " << last_error();
    snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s", dir.c_str());
    return c;
  }
};

// SPSA through SFT and GRPO, stopped inside GRPO and resumed: the parameters of the uninterrupted run.
TEST_F(SpsaTrainer, ResumeIsBitExactAndTheWeightsMove) {
  drl_train_summary whole, part, rest;
  drl_config a = config(path("whole"));
  ASSERT_EQ(drl_train(&a, nullptr, &whole), DRL_OK) << last_error();
  EXPECT_EQ(whole.steps, 12);
  drl_config b = config(path("split"));
  b.trainer.stop_after = 10;
  ASSERT_EQ(drl_train(&b, nullptr, &part), DRL_OK) << last_error();
  b.trainer.stop_after = 0;
  b.trainer.resume = true;
  ASSERT_EQ(drl_train(&b, nullptr, &rest), DRL_OK) << last_error();
  EXPECT_EQ(rest.steps, 2);
  expect_same_runs(path("whole"), path("split"), 12, {"/metrics/loss", "/metrics/payload_bytes", "/metrics/phase"});
  // The weights moved from the seeded start.
  drl_config c = config(path("fresh"));
  drl_run r;
  ASSERT_EQ(drl_run_open(&r, &c, nullptr, 4), DRL_OK) << last_error();
  std::vector<float> init(r.model.ps.params, r.model.ps.params + r.model.ps.layout.total);
  drl_run_close(&r);
  drl_checkpoint x;
  ASSERT_EQ(drl_checkpoint_read((path("whole") + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK);
  ASSERT_EQ((size_t)x.layout.total, init.size());
  EXPECT_NE(0, memcmp(x.params, init.data(), init.size() * sizeof(float)));
  drl_checkpoint_free(&x);
  for (double v : read_series(path("whole") + "/metrics.h5", "/metrics/payload_bytes")) EXPECT_EQ(v, 2.0);
}
