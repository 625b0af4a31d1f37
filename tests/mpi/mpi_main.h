// The main of a GoogleTest binary that runs under mpirun: every rank runs every test in the same order (the tests
// call collectives), rank 0 prints the usual report, the other ranks print only their failures, and the exit code
// is non-zero when any rank failed. Started without a launcher it is a job of one.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>

extern "C" {
#include "distributed/comm.h"
}

// The job every test of the binary runs in.
extern drl_comm *g_comm;

// Skips a test that needs more ranks than the job has.
#define REQUIRE_RANKS(n)                                                                                      \
  do {                                                                                                        \
    if (g_comm->size < (n)) GTEST_SKIP() << "needs " << (n) << " ranks (run under mpirun -np " << (n) << ")"; \
  } while (0)

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult &r) override {
    if (r.failed())
      std::fprintf(stderr, "rank %d: %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};

inline int mpi_test_main(int argc, char **argv, double timeout_s) {
  ::testing::InitGoogleTest(&argc, argv);
  static drl_comm comm;
  if (drl_comm_init(&comm, timeout_s) != DRL_OK) {
    std::fprintf(stderr, "cannot join the job: %s\n", drl_last_error());
    return 1;
  }
  g_comm = &comm;
  if (comm.rank != 0) {
    ::testing::TestEventListeners &l = ::testing::UnitTest::GetInstance()->listeners();
    delete l.Release(l.default_result_printer());
    l.Append(new RankFailurePrinter(comm.rank));
  }
  int rc = RUN_ALL_TESTS();
  double failed = rc != 0;
  if (drl_comm_sum_f64(&comm, &failed, &failed, 1) != DRL_OK) failed = 1;
  drl_comm_finalize(&comm);
  return failed > 0 ? 1 : 0;
}
