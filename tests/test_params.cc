// The parameter set (models/params.h) and the one optimizer step over it (engine/optim.h).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"

extern "C" {
#include "engine/optim.h"
#include "kernels/reduce.h"
#include "models/params.h"
}

namespace {

drl_layout two_tensors(int64_t rows) {
  drl_layout lay;
  EXPECT_EQ(drl_layout_init(&lay, 2), DRL_OK);
  EXPECT_EQ(drl_layout_add(&lay, "w", rows, 3, 1), DRL_OK);
  EXPECT_EQ(drl_layout_add(&lay, "gain", 7, 1, 0), DRL_OK);
  return lay;
}

}  // namespace

// The gradient norm's scratch belongs to the parameter set and is sized for all of it: a policy far larger than its
// activations (the norm once ran in the activations' kernel scratch, too small for 33.6M parameters) steps cleanly,
// which AddressSanitizer checks in CI, and its norm is the naive one.
TEST(Params, TheNormScratchCoversTheWholeSet) {
  drl_device dev = cpu_device();
  const int64_t rows = 1 << 20; // 3M + 7 parameters: 733 reduction chunks
  drl_layout lay = two_tensors(rows);
  drl_params ps;
  ASSERT_EQ(drl_params_create(&ps, &dev, &lay, ""), DRL_OK) << drl_last_error();
  const int64_t n = ps.layout.total;
  EXPECT_EQ(lay.tensors, nullptr) << "the set owns the layout";
  EXPECT_GE(drl_reduce_scratch_bytes(&dev, n), (drl_reduce_chunks(n) + 1) * (int64_t)sizeof(double));
  double naive = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    ps.grads[i] = (float)((i % 17) - 8) * 1e-3f;
    naive += (double)ps.grads[i] * ps.grads[i];
  }
  drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.0f, 1};
  float norm = 0.0f;
  char bad[DRL_TENSOR_NAME_CAP];
  ASSERT_EQ(drl_optim_step(nullptr, &ps, &hp, 0.0, &norm, bad), DRL_OK) << drl_last_error();
  EXPECT_STREQ(bad, "");
  EXPECT_NEAR(norm, std::sqrt(naive), 1e-6 * std::sqrt(naive));
  // AdamW's first step moves a weight by lr g / (|g| + eps) against its gradient (weights start at 0: no decay).
  EXPECT_NEAR(ps.params[1], -1e-3 * ps.grads[1] / (std::fabs(ps.grads[1]) + 1e-8), 1e-9);
  drl_params_free(&ps);
}

// A non-finite loss or gradient changes nothing and names what was not finite.
TEST(Params, ABadStepChangesNothing) {
  drl_device dev = cpu_device();
  drl_layout lay = two_tensors(5);
  drl_params ps;
  ASSERT_EQ(drl_params_create(&ps, &dev, &lay, ""), DRL_OK);
  for (int64_t i = 0; i < ps.layout.total; ++i) ps.grads[i] = 0.5f;
  drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1};
  float norm = 0.0f;
  char bad[DRL_TENSOR_NAME_CAP];
  ASSERT_EQ(drl_optim_step(nullptr, &ps, &hp, NAN, &norm, bad), DRL_OK);
  EXPECT_STREQ(bad, "loss");
  EXPECT_TRUE(std::isnan(norm));
  ps.grads[ps.layout.total - 1] = INFINITY;
  ASSERT_EQ(drl_optim_step(nullptr, &ps, &hp, 0.0, &norm, bad), DRL_OK);
  EXPECT_STREQ(bad, "gain");
  for (int64_t i = 0; i < ps.layout.total; ++i) {
    EXPECT_EQ(ps.params[i], 0.0f);
    EXPECT_EQ(ps.m[i], 0.0f);
    EXPECT_EQ(ps.v[i], 0.0f);
  }
  // A sharded optimizer state steps only through the data-parallel state.
  ASSERT_EQ(drl_params_shard_optimizer(&ps, 3, 10), DRL_OK);
  ps.grads[ps.layout.total - 1] = 0.5f;
  EXPECT_EQ(drl_optim_step(nullptr, &ps, &hp, 0.0, &norm, bad), DRL_ERR_INVALID_ARG);
  drl_params_free(&ps);
}
