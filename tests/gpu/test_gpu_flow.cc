// The flow policy on the GPU against the CPU (whose kernels tests/test_flow_kernels.cc checks against references).
// Kernels, BIT-IDENTICAL by construction (every float op of the shared per-element math is rounded once, e^x / log /
// sin / cos are engine-owned, and every reduction runs in a fixed order), each in one test over edge shapes (1 row or
// column, sizes just off the CUDA blocks and tiles, tails that are no multiple of a block) and the sizes of a training
// step (65536 rows; hidden 256; the SDE at D = 2 and 64, where one thread per row walks 64 dims with 64 Philox draws:
// the shape of an 8x8 image policy): bias add and backward, SiLU forward and backward (with the clamp of e^x and other
// special values), the time embedding (negative, huge and NaN times), the SDE step (with log-probabilities, ODE and SDE
// rows mixed, mean and sum over dims, in place), the SDE log-probability and its backward, and the on-policy ratio of
// exactly 1 across the backends. NaN payloads may legitimately differ between the backends (CUDA returns its canonical
// NaN), so NaN results are compared by class, everything else by bits. The velocity network and the tree sampler go
// through GEMMs, which are cuBLAS on one side and OpenBLAS on the other (different blocking and summation order), so
// those are compared with tolerances; only the NFE count must be exact.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/bias.h"
#include "kernels/sde.h"
#include "kernels/silu.h"
#include "kernels/time_embed.h"
#include "models/flow.h"
#include "samplers/sde_tree.h"
}

namespace {

// Rows of a training step and the hidden width of the velocity network at scale.
const int64_t kRows = 65536;
const int kHidden = 256;

// Floats of widely mixed magnitude and sign (normal times 2^[-12, 12]): a different summation order shows in the bits.
std::vector<float> mixed(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> e(-12, 12);
  std::vector<float> v(n);
  for (float &x : v) x = std::ldexp(nd(g), e(g));
  return v;
}

// Pre-activations of a hidden layer, with the tails and special values a kernel must treat alike on both backends:
// the clamp of e^x (|x| around 87.3 and 88.7 and beyond), +-0, subnormals, the extremes, SiLU's minimum at -1.278.
std::vector<float> activations(size_t n, uint32_t seed) {
  auto v = random_normal(n, 4.0f, seed);
  const float special[] = {0.0f,    -0.0f,    100.0f,  -100.0f, 87.3f,  -87.3f,  88.7f,   -88.7f,     -87.0f,
                           -90.0f,  17.0f,    90.0f,   1e30f,   -1e30f, FLT_MAX, -FLT_MAX, FLT_MIN,   -FLT_MIN,
                           1e-30f,  -1e-30f,  1e-40f,  -1e-40f, -1.278f, -1.2784645f};
  for (size_t i = 0; i < sizeof special / sizeof *special && i < n; ++i) v[i * 7919 % n] = special[i];
  return v;
}

// The index of the first element where gpu and cpu differ, NaN matching NaN whatever its payload; -1 if none.
int64_t first_diff_nan_as_class(const std::vector<float> &gpu, const std::vector<float> &cpu) {
  if (gpu.size() != cpu.size()) return 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (std::isnan(gpu[i]) && std::isnan(cpu[i])) continue;
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(float)) != 0) return (int64_t)i;
  }
  return -1;
}

// max |a - b| over max |b| (the scale floored at 1e-12).
double rel_err(const float *a, const float *b, int64_t n) {
  double diff = 0, scale = 1e-12;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::fmax(diff, std::fabs((double)a[i] - b[i]));
    scale = std::fmax(scale, std::fabs((double)b[i]));
  }
  return diff / scale;
}

// SDE rows as the sampler makes them: steps of a T = 20, shift 3 grid (t = 1 included), sigma from the Flow-GRPO
// formula with noise a in [0.3, 1.2] and growth in [1, 2], every ode_every-th row an ODE row (sigma 0), scattered
// noise indices above 2^34, and an upstream gradient per row.
struct Rows {
  std::vector<float> x, v, t, dt, sigma, dlogp;
  std::vector<uint64_t> noise;
};

Rows make_rows(int64_t rows, int D, uint32_t seed, int ode_every) {
  Rows b;
  b.x = random_normal((size_t)rows * D, 1.0f, seed);
  b.v = random_normal((size_t)rows * D, 1.5f, seed + 1);
  b.dlogp = random_uniform((size_t)rows, seed + 4, -2.0f, 2.0f);
  auto a = random_uniform((size_t)rows, seed + 2, 0.3f, 1.2f);
  auto g = random_uniform((size_t)rows, seed + 3, 1.0f, 2.0f);
  const int T = 20;
  std::vector<float> grid(T + 1);
  drl_time_grid(grid.data(), T, 3.0f);
  b.t.resize(rows);
  b.dt.resize(rows);
  b.sigma.resize(rows);
  b.noise.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    int k = (int)(r % T);
    b.t[r] = grid[k];
    b.dt[r] = grid[k + 1] - grid[k];
    b.sigma[r] = (ode_every > 0 && r % ode_every == 0) ? 0.0f : drl_sde_sigma(a[r], g[r], grid[k], grid[1]);
    b.noise[r] = 77ull + 13ull * (uint64_t)((r * 101) % (rows + 3)) + ((uint64_t)1 << 34);
  }
  return b;
}

// The SDE shapes: (D, rows) with row counts off the 128-thread blocks, and the training step's (D = 2 and 64 at 65536
// rows).
const std::pair<int, int64_t> kSdeShapes[] = {{1, 30001}, {2, kRows}, {3, 10000}, {5, 4001}, {8, 3750}, {64, kRows}};

const drl_rng_stream kStream = {0xD1CEull, 11, drl_rng_tag(DRL_RNG_SDE, 21, 0)};

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

// ================================================================ kernels: bit for bit

TEST(GpuFlow, BiasAddAndBackwardBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  // Columns below, at and above the 32-column blocks, rows below, at and above the 128-row tiles, a long tail of rows
  // (100000 = 781 tiles + 32), a wide short matrix; then the training step's hidden layer and a partial column block.
  const std::pair<int64_t, int> shapes[] = {{1, 1},      {7, 3},     {128, 32},    {129, 33},   {1000, 65},
                                            {4097, 256}, {3, 1000},  {100000, 2},  {kRows, 67}, {kRows, kHidden}};
  uint32_t seed = 1;
  for (auto [rows, cols] : shapes) {
    auto y = random_uniform((size_t)rows * cols, seed++, -4.0f, 4.0f);
    auto b = random_uniform((size_t)cols, seed++, -2.0f, 2.0f);
    auto dy = mixed((size_t)rows * cols, seed++);
    auto db = random_uniform((size_t)cols, seed++, -3.0f, 3.0f);  // nonzero: the backward adds into db
    DevBuf y_d(&gpu, y), b_d(&gpu, b), dy_d(&gpu, dy), db_d(&gpu, db);
    ASSERT_EQ(drl_bias_add(&gpu, y_d.f(), b_d.f(), rows, cols), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_bias_backward(&gpu, db_d.f(), dy_d.f(), rows, cols), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_bias_add(&cpu, y.data(), b.data(), rows, cols), DRL_OK);
    ASSERT_EQ(drl_bias_backward(&cpu, db.data(), dy.data(), rows, cols), DRL_OK);
    EXPECT_SAME_BITS(y_d.get(), y, "bias add rows " << rows << " cols " << cols);
    EXPECT_SAME_BITS(db_d.get(), db, "bias backward rows " << rows << " cols " << cols);
  }
  drl_device_close(&gpu);
}

TEST(GpuFlow, SiluForwardBackwardBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  const int64_t n = kRows * kHidden + 7;  // a training step's hidden layer, plus a tail off every block size
  auto x = activations((size_t)n, 10), dout = random_normal((size_t)n, 1.0f, 11);
  std::vector<float> out(n), dx(n);
  ASSERT_EQ(drl_silu_forward(&cpu, out.data(), x.data(), n), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, dx.data(), dout.data(), x.data(), n), DRL_OK);
  DevBuf x_d(&gpu, x), dout_d(&gpu, dout), out_d(&gpu, (size_t)n * 4), dx_d(&gpu, (size_t)n * 4);
  ASSERT_EQ(drl_silu_forward(&gpu, out_d.f(), x_d.f(), n), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_silu_backward(&gpu, dx_d.f(), dout_d.f(), x_d.f(), n), DRL_OK) << drl_last_error();
  EXPECT_SAME_BITS(out_d.get(), out, "silu forward");
  EXPECT_SAME_BITS(dx_d.get(), dx, "silu backward");
  // In place on the GPU (dx = dout, then out = x): the same bits.
  ASSERT_EQ(drl_silu_backward(&gpu, dout_d.f(), dout_d.f(), x_d.f(), n), DRL_OK);
  ASSERT_EQ(drl_silu_forward(&gpu, x_d.f(), x_d.f(), n), DRL_OK);
  EXPECT_SAME_BITS(x_d.get(), out, "silu forward in place");
  EXPECT_SAME_BITS(dout_d.get(), dx, "silu backward in place");
  // Non-finite inputs: the same class of result on both backends (and the same value unless NaN).
  std::vector<float> bad = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}, ones(3, 1.0f);
  std::vector<float> fc(3), gc(3);
  ASSERT_EQ(drl_silu_forward(&cpu, fc.data(), bad.data(), 3), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&cpu, gc.data(), ones.data(), bad.data(), 3), DRL_OK);
  DevBuf bad_d(&gpu, bad), ones_d(&gpu, ones), fo_d(&gpu, 12), go_d(&gpu, 12);
  ASSERT_EQ(drl_silu_forward(&gpu, fo_d.f(), bad_d.f(), 3), DRL_OK);
  ASSERT_EQ(drl_silu_backward(&gpu, go_d.f(), ones_d.f(), bad_d.f(), 3), DRL_OK);
  auto fg = fo_d.get(), gg = go_d.get();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(std::fpclassify(fg[i]), std::fpclassify(fc[i])) << "silu(" << bad[i] << ")";
    if (!std::isnan(fc[i])) {
      EXPECT_EQ(fg[i], fc[i]) << "silu(" << bad[i] << ")";
    }
    EXPECT_EQ(std::fpclassify(gg[i]), std::fpclassify(gc[i])) << "silu'(" << bad[i] << ")";
  }
  drl_device_close(&gpu);
}

TEST(GpuFlow, TimeEmbedBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  for (auto [half, maxf] : std::vector<std::pair<int, double>>{{1, 16.0}, {4, 16.0}, {8, 1000.0}, {64, 1e4}}) {
    std::vector<float> freq(half);
    drl_time_embed_freqs(freq.data(), half, maxf);
    auto t = random_uniform((size_t)kRows, 40 + half, -1.0f, 2.0f);
    // +-0, tiny and negative times (the fraction of a negative product rounds to 1), the one inexact reduction of
    // drl_rng_sincos2pi, no fraction bits left (2^24, 5e5 times large frequencies), NaN.
    const float special[] = {0.0f,  -0.0f, 1.0f,  0.5f, 1e-8f, -1e-8f,  1e-7f, -0x1p-30f, -0.3f, 0.125f - 0x1p-27f,
                             0x1p24f, 5e5f, NAN};
    for (size_t i = 0; i < sizeof special / sizeof *special; ++i) t[i * 101] = special[i];
    DevBuf t_d(&gpu, t), f_d(&gpu, freq), out_d(&gpu, (size_t)kRows * 2 * half * 4);
    ASSERT_EQ(drl_time_embed(&gpu, out_d.f(), t_d.f(), f_d.f(), kRows, half), DRL_OK) << drl_last_error();
    std::vector<float> out((size_t)kRows * 2 * half);
    ASSERT_EQ(drl_time_embed(&cpu, out.data(), t.data(), freq.data(), kRows, half), DRL_OK);
    auto got = out_d.get();
    int64_t d = first_diff_nan_as_class(got, out);
    EXPECT_EQ(d, -1) << "time embed half " << half << ": first differing element " << d << " gpu "
                     << (d >= 0 ? got[d] : 0.0f) << " cpu " << (d >= 0 ? out[d] : 0.0f);
    const size_t nan_row = (sizeof special / sizeof *special - 1) * 101;
    for (int k = 0; k < 2 * half; ++k) {
      EXPECT_TRUE(std::isnan(got[nan_row * 2 * half + k])) << "a NaN time gives NaN features, half " << half;
    }
  }
  drl_device_close(&gpu);
}

TEST(GpuSde, StepBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  for (auto [D, rows] : kSdeShapes)
    for (int mean : {1, 0}) {
      Rows b = make_rows(rows, D, 50 + D, 5);
      std::vector<float> xn((size_t)rows * D), lp(rows);
      ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                             b.sigma.data(), b.noise.data(), kStream, rows, D, mean),
                DRL_OK);
      DevBuf dx(&gpu, b.x), dv(&gpu, b.v), dtt(&gpu, b.t), ddt(&gpu, b.dt), ds(&gpu, b.sigma), dq(&gpu, b.noise),
          dxn(&gpu, xn.size() * 4), dlp(&gpu, lp.size() * 4);
      ASSERT_EQ(drl_sde_step(&gpu, dxn.f(), dlp.f(), dx.f(), dv.f(), dtt.f(), ddt.f(), ds.f(), (const uint64_t *)dq.p,
                             kStream, rows, D, mean),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(dxn.get(), xn, "sde sample D " << D << " rows " << rows << " mean " << mean);
      EXPECT_SAME_BITS(dlp.get(), lp, "sde step logp D " << D << " rows " << rows << " mean " << mean);
      // In place (x_next == x) with log-probabilities, and in place of v (x_next == v) without: the same bits.
      DevBuf dlp2(&gpu, lp.size() * 4), dx2(&gpu, b.x);
      ASSERT_EQ(drl_sde_step(&gpu, dx.f(), dlp2.f(), dx.f(), dv.f(), dtt.f(), ddt.f(), ds.f(), (const uint64_t *)dq.p,
                             kStream, rows, D, mean),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(dx.get(), xn, "sde sample in place of x, D " << D << " mean " << mean);
      EXPECT_SAME_BITS(dlp2.get(), lp, "sde step logp in place of x, D " << D << " mean " << mean);
      ASSERT_EQ(drl_sde_step(&gpu, dv.f(), nullptr, dx2.f(), dv.f(), dtt.f(), ddt.f(), ds.f(), (const uint64_t *)dq.p,
                             kStream, rows, D, mean),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(dv.get(), xn, "sde sample in place of v without logp, D " << D << " mean " << mean);
    }
  drl_device_close(&gpu);
}

TEST(GpuSde, LogprobAndBackwardBitIdentical) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu = cpu_device();
  for (auto [D, rows] : kSdeShapes)
    for (int mean : {1, 0}) {
      Rows b = make_rows(rows, D, 70 + D, 7);
      std::vector<float> xn((size_t)rows * D), lp_step(rows);
      ASSERT_EQ(drl_sde_step(&cpu, xn.data(), lp_step.data(), b.x.data(), b.v.data(), b.t.data(), b.dt.data(),
                             b.sigma.data(), b.noise.data(), kStream, rows, D, mean),
                DRL_OK);
      // Evaluate under a moved policy, so the residuals are not only the sampled noise.
      auto v2 = b.v;
      auto shift = random_uniform(v2.size(), 71 + D, -0.3f, 0.3f);
      for (size_t i = 0; i < v2.size(); ++i) v2[i] += shift[i];
      auto dv0 = random_uniform(v2.size(), 73 + D, -1.0f, 1.0f);  // nonzero: the backward adds into dv
      std::vector<float> lp(rows), dv = dv0;
      ASSERT_EQ(drl_sde_logprob(&cpu, lp.data(), xn.data(), b.x.data(), v2.data(), b.t.data(), b.dt.data(),
                                b.sigma.data(), rows, D, mean),
                DRL_OK);
      ASSERT_EQ(drl_sde_logprob_backward(&cpu, dv.data(), b.dlogp.data(), xn.data(), b.x.data(), v2.data(),
                                         b.t.data(), b.dt.data(), b.sigma.data(), rows, D, mean),
                DRL_OK);
      DevBuf dxn(&gpu, xn), dx(&gpu, b.x), dv1(&gpu, b.v), dv2(&gpu, v2), dtt(&gpu, b.t), ddt(&gpu, b.dt),
          ds(&gpu, b.sigma), ddl(&gpu, b.dlogp), ddv(&gpu, dv0), dlp(&gpu, lp.size() * 4);
      ASSERT_EQ(drl_sde_logprob(&gpu, dlp.f(), dxn.f(), dx.f(), dv2.f(), dtt.f(), ddt.f(), ds.f(), rows, D, mean),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(dlp.get(), lp, "sde logprob D " << D << " rows " << rows << " mean " << mean);
      ASSERT_EQ(drl_sde_logprob_backward(&gpu, ddv.f(), ddl.f(), dxn.f(), dx.f(), dv2.f(), dtt.f(), ddt.f(), ds.f(),
                                         rows, D, mean),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(ddv.get(), dv, "sde logprob backward D " << D << " rows " << rows << " mean " << mean);
      // The GPU's training-side log-probability of the CPU's sample under the sampling velocity is the step's: the
      // on-policy ratio is exactly 1 across the backends too.
      ASSERT_EQ(drl_sde_logprob(&gpu, dlp.f(), dxn.f(), dx.f(), dv1.f(), dtt.f(), ddt.f(), ds.f(), rows, D, mean),
                DRL_OK);
      EXPECT_SAME_BITS(dlp.get(), lp_step, "on-policy logprob D " << D << " rows " << rows << " mean " << mean);
    }
  drl_device_close(&gpu);
}

// ================================================================ the velocity network and the tree sampler
// GEMMs differ (cuBLAS vs OpenBLAS), so tolerances.

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
