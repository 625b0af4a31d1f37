// The device side of data parallelism on one GPU (a job of one; NCCL needs several ranks): the local shard tree, the
// sharded norm partials and the data-parallel AdamW step give the CPU's bits, and a side stream waits for the
// compute stream's work.
#include <cmath>
#include <cstring>
#include <vector>

#include <cuda_runtime.h>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "distributed/dp.h"
#include "engine/optim.h"
#include "kernels/reduce.h"
}

namespace {

// Sums S shard gradients through a dp of one process on dev; returns the result on the host.
std::vector<float> shard_sum(const drl_device *dev, int S, int64_t n) {
  drl_dp dp;
  drl_dp_options o = {S, 0, 1, 0};
  EXPECT_EQ(drl_dp_create(&dp, nullptr, dev, n, &o), DRL_OK) << drl_last_error();
  DevBuf g(dev, (size_t)n * sizeof(float));
  for (int s = 0; s < S; ++s) {
    std::vector<float> leaf = random_normal((size_t)n, std::ldexp(1.0f, 8 * (s % 3)), 40 + s);
    EXPECT_EQ(drl_copy_to_device(dev, g.p, leaf.data(), g.bytes), DRL_OK);
    EXPECT_EQ(drl_dp_grads_push(&dp, g.f()), DRL_OK) << drl_last_error();
  }
  EXPECT_EQ(drl_dp_grads_reduce(&dp, g.f()), DRL_OK) << drl_last_error();
  std::vector<float> out = g.get();
  drl_dp_free(&dp);
  return out;
}

}  // namespace

TEST(GpuDataParallel, ShardTreeBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  const int64_t n = 3 * 4096 * 100 + 11;
  for (int S : {2, 5, 8}) EXPECT_SAME_BITS(shard_sum(&gpu, S, n), shard_sum(&cpu, S, n), "shards " << S);
  drl_device_close(&gpu);
}

TEST(GpuDataParallel, NormPartialsAndAdamwStepBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  drl_layout lay;
  ASSERT_EQ(drl_layout_init(&lay, 2), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "w", 3000, 300, 1), DRL_OK);
  ASSERT_EQ(drl_layout_add(&lay, "g", 777, 1, 0), DRL_OK);
  const int64_t n = lay.total;
  std::vector<float> g = random_normal((size_t)n, 0.1f, 3), p = random_normal((size_t)n, 1.0f, 4);
  // Partials of two chunk-aligned parts, on each backend.
  const int64_t cut = 50 * DRL_REDUCE_CHUNK;
  std::vector<double> pc(drl_reduce_chunks(n)), pg(drl_reduce_chunks(n)), scratch(drl_reduce_chunks(n) + 1);
  DevBuf dg(&gpu, g), dscratch(&gpu, (size_t)drl_reduce_scratch_bytes(&gpu, n));
  for (int part = 0; part < 2; ++part) {
    int64_t lo = part ? cut : 0, len = part ? n - cut : cut;
    ASSERT_EQ(drl_sum_squares_partials(&cpu, pc.data() + lo / DRL_REDUCE_CHUNK, g.data() + lo, len, scratch.data()),
              DRL_OK);
    ASSERT_EQ(drl_sum_squares_partials(&gpu, pg.data() + lo / DRL_REDUCE_CHUNK, dg.f() + lo, len, dscratch.p),
              DRL_OK)
        << drl_last_error();
  }
  EXPECT_EQ(0, memcmp(pc.data(), pg.data(), pc.size() * sizeof(double)));
  // Three data-parallel AdamW steps (one process: the norm, clipping and the step over the layout).
  drl_dp dc, dgp;
  drl_dp_options o = {1, 0, 1, 0};
  ASSERT_EQ(drl_dp_create(&dc, nullptr, &cpu, n, &o), DRL_OK);
  ASSERT_EQ(drl_dp_create(&dgp, nullptr, &gpu, n, &o), DRL_OK);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  DevBuf dp_(&gpu, p), dm(&gpu, m), dv(&gpu, v);
  for (int step = 1; step <= 3; ++step) {
    drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, step};
    float nc = 0, ng = 0;
    char bad[DRL_TENSOR_NAME_CAP];
    drl_params pc_ = {cpu, lay, p.data(), g.data(), m.data(), v.data(), 0, n, scratch.data()};
    drl_params pg_ = {gpu, lay, dp_.f(), dg.f(), dm.f(), dv.f(), 0, n, dscratch.p};
    ASSERT_EQ(drl_optim_step(&dc, &pc_, &hp, 0.0, &nc, bad), DRL_OK);
    ASSERT_EQ(drl_optim_step(&dgp, &pg_, &hp, 0.0, &ng, bad), DRL_OK) << drl_last_error();
    EXPECT_EQ(0, memcmp(&nc, &ng, sizeof nc)) << "norm at step " << step;
  }
  EXPECT_SAME_BITS(dp_.get(), p, "parameters after 3 steps");
  EXPECT_SAME_BITS(dv.get(), v, "second moments after 3 steps");
  drl_dp_free(&dc);
  drl_dp_free(&dgp);
  drl_layout_free(&lay);
  drl_device_close(&gpu);
}

TEST(GpuDataParallel, ASideStreamWaitsForTheComputeStream) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device side;
  ASSERT_EQ(drl_device_fork(&gpu, &side), DRL_OK) << drl_last_error();
  const size_t n = 1 << 24, big = (size_t)1 << 28;  // 64 MiB checked, 1 GiB of busy work
  DevBuf a(&gpu, n * sizeof(float)), b(&gpu, n * sizeof(float)), ones(&gpu, std::vector<float>(n, 1.0f));
  DevBuf busy_src(&gpu, big), busy_dst(&gpu, big);
  ASSERT_EQ(drl_memset(&gpu, a.p, 0, a.bytes), DRL_OK);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  // A long queue on the compute stream (tens of milliseconds of copies), and only then the write the side stream must
  // see: without the wait, the side's copy would start at once and read the zeros.
  for (int i = 0; i < 32; ++i) ASSERT_EQ(drl_copy_on_device(&gpu, busy_dst.p, busy_src.p, big), DRL_OK);
  ASSERT_EQ(drl_copy_on_device(&gpu, a.p, ones.p, a.bytes), DRL_OK);
  ASSERT_EQ(drl_device_wait(&side, &gpu), DRL_OK);
  ASSERT_EQ(drl_copy_on_device(&side, b.p, a.p, a.bytes), DRL_OK);  // must see the copy above
  // The test means something only if the compute stream was still busy when the side's copy was queued.
  EXPECT_EQ(cudaStreamQuery((cudaStream_t)gpu.stream), cudaErrorNotReady)
      << "the compute stream drained before the side stream's copy was queued: the queue is too short to show a race";
  ASSERT_EQ(drl_device_sync(&side), DRL_OK);
  std::vector<float> got = b.get();
  EXPECT_EQ(0, memcmp(got.data(), std::vector<float>(n, 1.0f).data(), b.bytes));
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&side);
  drl_device_close(&gpu);
}
