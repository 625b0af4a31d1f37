// The flow policy on the GPU against the CPU: the velocity network (forward and gradients) and the tree sampler. They
// go through GEMMs, which are cuBLAS on one side and OpenBLAS on the other (different blocking and summation order), so
// they are compared with tolerances; only the NFE count must be exact. The kernels underneath (bias, SiLU, the time
// embedding, the SDE step, its log-probability and backward) are bit for bit in the op table (test_gpu_ops).
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "models/flow.h"
#include "samplers/sde_tree.h"
}

namespace {

// max |a - b| over max |b| (the scale floored at 1e-12).
double rel_err(const float *a, const float *b, int64_t n) {
  double diff = 0, scale = 1e-12;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::fmax(diff, std::fabs((double)a[i] - b[i]));
    scale = std::fmax(scale, std::fabs((double)b[i]));
  }
  return diff / scale;
}

drl_flow_config flow_config() {
  drl_flow_config c = {};
  c.dim = 2;
  c.n_cond = 4;
  c.cond_dim = 8;
  c.time_features = 8;
  c.hidden = 32;
  c.layers = 2;
  c.init_std = 0.3f;
  c.max_freq = 16.0f;
  return c;
}

}  // namespace

TEST(GpuFlow, VelocityNetworkMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  const drl_flow_config c = flow_config();
  const int rows = 300;
  drl_flow mc, mg;
  ASSERT_EQ(drl_flow_create(&mc, &c, &cpu, rows, 1234), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_flow_create(&mg, &c, &gpu, rows, 1234), DRL_OK) << drl_last_error();
  const int64_t n = mc.ps.layout.total;
  std::vector<float> host(n);
  ASSERT_EQ(drl_copy_to_host(&gpu, host.data(), mg.ps.params, n * 4), DRL_OK);
  EXPECT_EQ(0, std::memcmp(host.data(), mc.ps.params, n * 4)) << "the same Philox init on both devices";

  auto x = random_normal((size_t)rows * c.dim, 1.0f, 81);
  auto t = random_uniform((size_t)rows, 82, 0.0f, 1.0f);
  t[0] = 1.0f;
  t[1] = 0.0f;
  std::vector<int32_t> cond(rows);
  for (int r = 0; r < rows; ++r) cond[r] = (r * 7 + r / 5) % c.n_cond;
  auto dv = random_normal((size_t)rows * c.dim, 1.0f, 83);
  std::vector<float> vc((size_t)rows * c.dim);
  ASSERT_EQ(drl_flow_forward(&mc, x.data(), t.data(), cond.data(), rows, vc.data()), DRL_OK) << drl_last_error();
  DevBuf dx(&gpu, x), dt(&gpu, t), dc(&gpu, cond), ddv(&gpu, dv), dvg(&gpu, vc.size() * 4);
  ASSERT_EQ(drl_flow_forward(&mg, dx.f(), dt.f(), dc.i(), rows, dvg.f()), DRL_OK) << drl_last_error();
  // cuBLAS and OpenBLAS sum the GEMMs in different orders: agreement to 1e-4 of the largest value, not bit for bit.
  auto vg = dvg.get();
  EXPECT_LT(rel_err(vg.data(), vc.data(), (int64_t)vc.size()), 1e-4) << "velocity";
  double vmax = 0;
  for (float e : vc) vmax = std::fmax(vmax, std::fabs(e));
  EXPECT_GT(vmax, 1e-2) << "a velocity this small would make the comparison vacuous";

  // Gradients of L = sum dv . v, twice (the second backward adds onto the first: 2x the single one).
  ASSERT_EQ(drl_params_zero_grads(&mc.ps), DRL_OK);
  ASSERT_EQ(drl_params_zero_grads(&mg.ps), DRL_OK);
  ASSERT_EQ(drl_flow_backward(&mc, dv.data()), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_flow_backward(&mg, ddv.f()), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_copy_to_host(&gpu, host.data(), mg.ps.grads, n * 4), DRL_OK);
  for (int k = 0; k < mc.ps.layout.count; ++k) {
    const drl_tensor_info &ti = mc.ps.layout.tensors[k];
    const int64_t len = ti.shape[0] * ti.shape[1];
    double gmax = 0;
    for (int64_t i = 0; i < len; ++i) gmax = std::fmax(gmax, std::fabs(mc.ps.grads[ti.offset + i]));
    EXPECT_GT(gmax, 0.0) << "gradient of " << ti.name << " is all zero: the comparison would prove nothing";
    EXPECT_LT(rel_err(host.data() + ti.offset, mc.ps.grads + ti.offset, len), 1e-4) << "gradient of " << ti.name;
  }
  std::vector<float> once(mc.ps.grads, mc.ps.grads + n);
  ASSERT_EQ(drl_flow_backward(&mc, dv.data()), DRL_OK);
  ASSERT_EQ(drl_flow_backward(&mg, ddv.f()), DRL_OK);
  ASSERT_EQ(drl_copy_to_host(&gpu, host.data(), mg.ps.grads, n * 4), DRL_OK);
  for (int64_t i = 0; i < n; ++i) once[i] *= 2.0f;
  EXPECT_LT(rel_err(mc.ps.grads, once.data(), n), 1e-6) << "the CPU backward accumulates";
  EXPECT_LT(rel_err(host.data(), once.data(), n), 1e-4) << "the GPU backward accumulates";
  drl_flow_free(&mc);
  drl_flow_free(&mg);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}

TEST(GpuFlow, TreeSamplerMatchesCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  const drl_flow_config c = flow_config();
  drl_sde_tree_params p = {};
  p.steps = 10;
  p.shift = 3.0f;
  p.noise = 0.7f;
  p.growth = 0.5f;
  p.depth = 3;
  p.branch = 2;
  p.window = 2;
  p.roots = 2;
  p.mean_over_dims = 1;
  p.seed = 99;
  p.iteration = 0;
  ASSERT_EQ(drl_sde_tree_params_check(&p), DRL_OK) << drl_last_error();
  const int groups = 3;
  const int rows = (int)drl_sde_tree_rows_needed(&p, groups);
  drl_flow mc, mg;
  ASSERT_EQ(drl_flow_create(&mc, &c, &cpu, rows, 555), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_flow_create(&mg, &c, &gpu, rows, 777), DRL_OK) << drl_last_error();
  // The CPU model's parameters into the GPU model (another seed first, so the copy is what makes them equal).
  ASSERT_EQ(drl_copy_to_device(&gpu, mg.ps.params, mc.ps.params, (size_t)mc.ps.layout.total * 4), DRL_OK);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_sde_tree tc, tg;
  ASSERT_EQ(drl_sde_tree_create(&tc, &p, groups, c.dim, &cpu), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_sde_tree_create(&tg, &p, groups, c.dim, &gpu), DRL_OK) << drl_last_error();
  const int32_t cond[groups] = {0, 3, 1};
  for (uint32_t iteration : {5u, 6u}) {
    ASSERT_EQ(drl_sde_tree_sample(&tc, &mc, cond, iteration), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_sde_tree_sample(&tg, &mg, cond, iteration), DRL_OK) << drl_last_error();
    ASSERT_EQ(tc.nodes, tg.nodes);
    ASSERT_EQ(tc.leaves, tg.leaves);
    EXPECT_EQ(tg.nfe, tc.nfe) << "iteration " << iteration;
    EXPECT_EQ(tc.nfe, (int64_t)groups * p.roots * drl_sde_tree_sample_nfe(&p)) << "iteration " << iteration;
    // The same noise on both devices: the trees differ only by the GEMMs' rounding, carried through the steps.
    for (int i = 0; i < tc.leaves * c.dim; ++i)
      EXPECT_NEAR(tg.leaf_x[i], tc.leaf_x[i], 1e-3 * std::fmax(1.0f, std::fabs(tc.leaf_x[i])))
          << "leaf_x[" << i << "] iteration " << iteration;
    for (int i = 0; i < tc.nodes * c.dim; ++i)
      EXPECT_NEAR(tg.x[i], tc.x[i], 1e-3 * std::fmax(1.0f, std::fabs(tc.x[i]))) << "x[" << i << "]";
    for (int i = 0; i < tc.nodes; ++i)
      EXPECT_NEAR(tg.logp_old[i], tc.logp_old[i], 1e-3 * std::fmax(1.0f, std::fabs(tc.logp_old[i])))
          << "logp_old[" << i << "] iteration " << iteration;
    for (int j = 0; j < p.depth; ++j) {
      EXPECT_EQ(tg.t[j], tc.t[j]);
      EXPECT_EQ(tg.sigma[j], tc.sigma[j]);
    }
    // Siblings (children q, q + 1 of one parent) differ: the comparison is of real SDE samples, not of ODE copies.
    int differ = 0;
    for (int q = tc.layer_first[1]; q + 1 < tc.layer_first[2]; q += p.branch)
      differ += tc.x[(size_t)q * c.dim] != tc.x[(size_t)(q + 1) * c.dim];
    EXPECT_EQ(differ, (tc.layer_first[2] - tc.layer_first[1]) / p.branch);
  }
  drl_sde_tree_free(&tc);
  drl_sde_tree_free(&tg);
  drl_flow_free(&mc);
  drl_flow_free(&mg);
  ASSERT_EQ(drl_device_sync(&gpu), DRL_OK);
  drl_device_close(&gpu);
}
