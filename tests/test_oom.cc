// Out of memory on the CPU: `dynrl train` under an address-space limit (RLIMIT_AS) with a policy whose parameters
// need more fails with a message naming the buffer and its size, and exits; it does not crash.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRL_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DRL_TEST_ASAN 1
#endif

namespace {

class Oom : public TempDirTest {};

}  // namespace

TEST_F(Oom, TrainUnderAnAddressSpaceLimitNamesTheBuffer) {
#ifdef DRL_TEST_ASAN
  GTEST_SKIP() << "RLIMIT_AS cannot limit an AddressSanitizer build: its shadow memory alone reserves terabytes";
#else
  // 1.5 GiB: OpenBLAS and OpenMP start within it (OpenBLAS retries its start-up buffers forever below about 200 MiB);
  // the 8 blocks of d_model 2048 / d_ff 8192 are 2 GiB of parameters alone.
  const rlim_t limit = (rlim_t)3 << 29;
  std::vector<std::string> args = {
      "train", "--set", "model.d_model=2048", "--set", "model.n_layers=8", "--set", "model.n_heads=16", "--set",
      "model.n_kv_heads=16", "--set", "model.d_ff=8192", "--set", "model.max_seq=16", "--set", "data.n_train=20",
      "--set", "data.n_eval=0", "--set", "data.task=add", "--set", "data.size=2", "--set", "sft.batch_size=4", "--set", "sft.steps=1",
      "--set", "trainer.phases=sft", "--set", "trainer.eval_every=0", "--set", "run.threads=1", "--set",
      "run.out_dir=" + path("run")};
  setenv("OPENBLAS_NUM_THREADS", "1", 1);  // OpenBLAS sizes its start-up buffers by it, before dynrl runs
  CliExit e = run_dynrl(args, "", path("oom.log"), {0, limit, 120});
  unsetenv("OPENBLAS_NUM_THREADS");
  const std::string &log = e.log;
  ASSERT_EQ(e.signal, 0) << "ended by signal " << e.signal << "\n" << log;
  EXPECT_EQ(e.code, 1) << log;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      log, m, std::regex(R"(out of memory allocating ([a-zA-Z ()]+) \(([0-9.]+) GiB, ([0-9]+) bytes\) on cpu)")))
      << log;
  EXPECT_EQ(m[1].str(), "parameters") << log;
  double bytes = std::stod(m[3].str());
  EXPECT_GT(bytes, (double)limit) << "the buffer that failed does not need more than the limit: " << log;
  EXPECT_NEAR(std::stod(m[2].str()), bytes / (1 << 30), 0.05) << log;
#endif
}
