// NCCL on one rank, the GPU suite's smoke test: a nonblocking communicator, an all-reduce, an exchange with itself, a
// broadcast and the timed completion wait, and a planted timeout that must abort the communicator rather than hang.
// (A job of one never creates a communicator, so the test builds one directly; docs/distributed.md has the two-GPU
// check.)
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

// comm_internal.h includes mpi.h: its C API only, and outside the C block below.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#ifdef DRL_HAVE_MPI
#include <mpi.h>
#endif
extern "C" {
#include "distributed/comm_internal.h"
}

namespace {

// A job of one whose device collectives run through an NCCL communicator of one rank on gpu.
void nccl_job(drl_comm *c, const drl_device *gpu, double timeout_s) {
  ASSERT_EQ(drl_comm_init(c, timeout_s), DRL_OK) << drl_last_error();
  c->dev = *gpu;
  unsigned char id[DRL_NCCL_ID_BYTES];
  ASSERT_EQ(drl_comm_nccl_unique_id(id), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_comm_nccl_create(c, id), DRL_OK) << drl_last_error();
  ASSERT_NE(c->impl->nccl, nullptr);
}

#ifndef DRL_HAVE_NCCL
#define DRL_REQUIRE_NCCL() GTEST_SKIP() << "this dynrl was built without NCCL"
#else
#define DRL_REQUIRE_NCCL() (void)0
#endif

}  // namespace

TEST(GpuNccl, OneRankCollectivesKeepTheRanksValues) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  DRL_REQUIRE_NCCL();
  drl_comm c;
  nccl_job(&c, &gpu, 60.0);
  const int64_t n = (1 << 20) + 3;
  const std::vector<float> x = random_normal((size_t)n, 1.0f, 11);
  DevBuf a(&gpu, x), b(&gpu, (size_t)n * sizeof(float));

  ASSERT_EQ(drl_comm_nccl_allreduce(&c, a.f(), n), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_comm_nccl_sync(&c), DRL_OK) << drl_last_error();
  EXPECT_EQ(0, memcmp(a.get().data(), x.data(), x.size() * sizeof(float))) << "a sum over one rank is its values";

  const int64_t count[1] = {n}, displ[1] = {0};
  const drl_comm_pieces pieces = {count, displ};
  ASSERT_EQ(drl_memset(&gpu, b.p, 0, b.bytes), DRL_OK);
  ASSERT_EQ(drl_comm_nccl_exchange(&c, a.f(), &pieces, b.f(), &pieces), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_comm_nccl_sync(&c), DRL_OK) << drl_last_error();
  EXPECT_EQ(0, memcmp(b.get().data(), x.data(), x.size() * sizeof(float))) << "the exchange with itself";

  ASSERT_EQ(drl_comm_nccl_bcast(&c, b.p, b.bytes, 0), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_comm_sync(&c), DRL_OK) << drl_last_error();
  EXPECT_EQ(0, memcmp(b.get().data(), x.data(), x.size() * sizeof(float))) << "a broadcast from rank 0 of 1";

  drl_comm_nccl_destroy(&c);
  EXPECT_EQ(c.impl->nccl, nullptr);
  drl_comm_finalize(&c);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK) << drl_last_error();
  drl_device_close(&gpu);
}

TEST(GpuNccl, APlantedTimeoutAbortsTheCommunicator) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  DRL_REQUIRE_NCCL();
  drl_comm c;
  nccl_job(&c, &gpu, 0.002);  // 2 ms: far less than the queue below takes
  const size_t big = (size_t)1 << 28;
  DevBuf src(&gpu, big), dst(&gpu, big), a(&gpu, std::vector<float>(1024, 1.0f));
  // Tens of milliseconds of copies ahead of the collective on the same stream: its completion cannot be seen in time.
  for (int i = 0; i < 32; ++i) ASSERT_EQ(drl_copy_on_device(&gpu, dst.p, src.p, big), DRL_OK);
  drl_status st = drl_comm_nccl_allreduce(&c, a.f(), 1024);
  if (st == DRL_OK) st = drl_comm_nccl_sync(&c);
  EXPECT_EQ(st, DRL_ERR_NCCL);
  EXPECT_NE(std::string(drl_last_error()).find("dist.timeout_s"), std::string::npos) << drl_last_error();
  EXPECT_EQ(c.impl->nccl, nullptr) << "the communicator is aborted";
  EXPECT_EQ(drl_comm_nccl_allreduce(&c, a.f(), 1024), DRL_ERR_NCCL) << "nothing runs on an aborted communicator";
  EXPECT_NE(std::string(drl_last_error()).find("no NCCL communicator"), std::string::npos) << drl_last_error();
  drl_comm_finalize(&c);
  EXPECT_EQ(drl_device_sync(&gpu), DRL_OK) << "the device outlives its aborted communicator: " << drl_last_error();
  drl_device_close(&gpu);
}
