// Shared by the unit tests: a fresh temporary directory per test, a check on drl_last_error()'s text, the CPU
// device and seeded random vectors.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include "engine/optim.h"
#include "kernels/device.h"
#include "kernels/status.h"
}

inline std::string last_error() { return drl_last_error(); }

// The source tree: DYNRL_SOURCE_DIR when set (scripts/gpu-suite.sh sets it: the test binaries travel to another
// machine), else the tree they were built from.
inline std::string source_dir() {
  const char *e = getenv("DYNRL_SOURCE_DIR");
  return e && *e ? std::string(e) : std::string(DRL_SOURCE_DIR);
}

// Runs f with the given OpenMP thread count, restoring the previous one.
template <class F>
inline void with_threads(int t, F f) {
  int prev = omp_get_max_threads();
  omp_set_num_threads(t);
  f();
  omp_set_num_threads(prev);
}


// Whether long double carries more bits than double at run time. Under valgrind it does not (x87 arithmetic is
// emulated in 64 bits), and a reference that needs the extra bits would fail the code it checks.
inline bool long_double_is_extended() {
  volatile long double one = 1.0L, tiny = 0x1p-60L;
  return one + tiny != one;
}
#define SKIP_UNLESS_EXTENDED_LONG_DOUBLE()                                                                      \
  if (!long_double_is_extended())                                                                             \
  GTEST_SKIP() << "long double is no wider than double here (valgrind computes it in 64 bits); this test's "  \
                  "reference needs the extra bits"

#define EXPECT_ERROR_HAS(sub) EXPECT_NE(last_error().find(sub), std::string::npos) << "message: " << last_error()

// The CPU backend, opened (a failure to open is a test failure).
inline drl_device cpu_device() {
  drl_device dev;
  EXPECT_EQ(drl_device_open(&dev, DRL_BACKEND_CPU, 0), DRL_OK);
  return dev;
}

// The bits of a float, for bit-for-bit comparisons.
inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Floats of widely mixed magnitude and sign (normal times 2^[-spread, spread]), so that the order and precision of
// float additions shows in the bits.
inline std::vector<float> mixed_values(size_t n, uint32_t seed, int spread = 12) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> e(-spread, spread);
  std::vector<float> v(n);
  for (float &x : v) x = std::ldexp(nd(g), e(g));
  return v;
}

// n floats uniform in [lo, hi): std::mt19937 seeded with seed, one draw per element in order.
inline std::vector<float> random_uniform(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float &x : v) x = u(rng);
  return v;
}

// n floats normal with mean 0 and standard deviation scale: std::mt19937 seeded with seed, in order.
inline std::vector<float> random_normal(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float &x : v) x = nd(rng);
  return v;
}

// A fixture whose tests each get their own directory under /tmp, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  std::string dir_;

  void SetUp() override {
    char tmpl[] = "/tmp/dynrl_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    drl_clear_error();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string &name) const { return dir_ + "/" + name; }
};

// Every element within tol (default 1e-3) relative of the finite difference (floored at 1% of the largest, so a
// component that cancels to almost nothing is not judged on its float rounding alone).
inline void expect_grad_close(const std::vector<float> &got, const std::vector<double> &fd, const char *what,
                              double tol = 1e-3) {
  ASSERT_EQ(got.size(), fd.size());
  double scale = 0.0;
  for (double v : fd) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.0) << what << ": finite differences are all zero; the test would prove nothing";
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::fabs((double)got[i] - fd[i]) / std::max(std::fabs(fd[i]), 1e-2 * scale);
    EXPECT_LT(err, tol) << what << "[" << i << "]: analytic " << got[i] << " vs finite difference " << fd[i];
  }
}

// One optimizer step of a single process (engine/optim.h), DRL_ERR_NUMERIC when it was refused as not finite.
static inline drl_status optim_step(drl_params *ps, const drl_optim_hparams &hp, float *norm = nullptr) {
  float n = 0.0f;
  char bad[DRL_TENSOR_NAME_CAP];
  drl_status st = drl_optim_step(nullptr, ps, &hp, 0.0, &n, bad);
  if (norm) *norm = n;
  if (st == DRL_OK && bad[0]) return DRL_FAIL(DRL_ERR_NUMERIC, "step %d refused: non-finite %s", hp.step, bad);
  return st;
}

