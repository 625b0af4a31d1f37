// CUDA RoPE and attention against the CPU backend. RoPE: bit-identical (same tables, same explicitly rounded math).
// Attention: cuBLAS orders its sums differently (and CUDA's expf is not glibc's), so the forward and backward agree
// with the CPU within a stated tolerance, with TF32 off: att within 1e-5 absolute, out/dq/dk/dv within 1e-4 of the
// tensor's largest magnitude; masked and padded entries are exact zeros on both.
#include <gtest/gtest.h>

#include <cmath>  // before the C headers: they include <math.h> inside extern "C"
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/attention.h"
#include "kernels/rope.h"
}

namespace {

TEST(GpuRope, BitIdenticalToCpu) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  drl_device host;
  ASSERT_EQ(drl_device_open(&host, DRL_BACKEND_CPU, 0), DRL_OK);
  const int N = 4 * 128, max_pos = 4096;
  for (int heads : {8, 4})
    for (int D : {64, 6}) {
      SCOPED_TRACE(testing::Message() << "heads=" << heads << " D=" << D);
      std::vector<float> c((size_t)max_pos * D / 2), s(c.size());
      drl_rope_tables(c.data(), s.data(), max_pos, D, 10000.0);
      std::vector<int32_t> pos(N);
      std::mt19937 rng(5);
      for (auto &p : pos) p = (int32_t)(rng() % max_pos);
      std::vector<float> x = random_uniform((size_t)N * heads * D, 6, -3, 3);
      DevBuf dx(&dev, x), dpos(&dev, pos), dc(&dev, c), ds(&dev, s);
      ASSERT_EQ(drl_rope_forward(&dev, dx.f(), (const int32_t *)dpos.p, dc.f(), ds.f(), N, heads, D), DRL_OK)
          << drl_last_error();
      std::vector<float> cpu = x;
      ASSERT_EQ(drl_rope_forward(&host, cpu.data(), pos.data(), c.data(), s.data(), N, heads, D), DRL_OK);
      std::vector<float> gpu = dx.get<float>();
      ASSERT_NE(cpu, x);
      EXPECT_EQ(std::memcmp(gpu.data(), cpu.data(), cpu.size() * sizeof(float)), 0) << "forward differs";
      ASSERT_EQ(drl_rope_backward(&dev, dx.f(), (const int32_t *)dpos.p, dc.f(), ds.f(), N, heads, D), DRL_OK);
      ASSERT_EQ(drl_rope_backward(&host, cpu.data(), pos.data(), c.data(), s.data(), N, heads, D), DRL_OK);
      gpu = dx.get<float>();
      EXPECT_EQ(std::memcmp(gpu.data(), cpu.data(), cpu.size() * sizeof(float)), 0) << "backward differs";
    }
  drl_device_close(&dev);
}

struct Shape {
  int B, T, H, KV, D;
  std::vector<int32_t> rs;  // empty: no padding
  int start(int b) const { return rs.empty() ? 0 : rs[b]; }
  size_t nq() const { return (size_t)B * T * H * D; }
  size_t nkv() const { return (size_t)B * T * KV * D; }
  size_t natt() const { return (size_t)B * H * T * T; }
};

struct Result {
  std::vector<float> out, att, dq, dk, dv;
};

struct Inputs {
  std::vector<float> q, k, v, dout;
  Inputs(const Shape &s, uint32_t seed)
      : q(random_uniform(s.nq(), seed, -2, 2)), k(random_uniform(s.nkv(), seed + 1, -2, 2)),
        v(random_uniform(s.nkv(), seed + 2)), dout(random_uniform(s.nq(), seed + 3)) {}
};

Result run_cpu(const Shape &s, const Inputs &in) {
  drl_device host;
  EXPECT_EQ(drl_device_open(&host, DRL_BACKEND_CPU, 0), DRL_OK);
  Result r;
  r.out.resize(s.nq());
  r.att.resize(s.natt());
  r.dq.resize(s.nq());
  r.dk.resize(s.nkv());
  r.dv.resize(s.nkv());
  std::vector<float> scratch(drl_attention_scratch_floats(&host, s.B, s.T, s.H, s.KV, s.D));
  const int32_t *rs = s.rs.empty() ? nullptr : s.rs.data();
  EXPECT_EQ(drl_attention_forward(&host, r.out.data(), r.att.data(), in.q.data(), in.k.data(), in.v.data(), rs, s.B,
                                  s.T, s.H, s.KV, s.D, nullptr),
            DRL_OK)
      << drl_last_error();
  EXPECT_EQ(drl_attention_backward(&host, r.dq.data(), r.dk.data(), r.dv.data(), in.dout.data(), in.q.data(),
                                   in.k.data(), in.v.data(), r.att.data(), rs, s.B, s.T, s.H, s.KV, s.D,
                                   scratch.data()),
            DRL_OK)
      << drl_last_error();
  return r;
}

// Outputs start as NaN (all-ones bytes) so every element must be written; the scratch carries a guard band behind it
// that must come back untouched.
Result run_gpu(const drl_device *dev, const Shape &s, const Inputs &in) {
  Result r;
  const int64_t need = drl_attention_scratch_floats(dev, s.B, s.T, s.H, s.KV, s.D);
  EXPECT_EQ(need, (int64_t)s.B * s.T * s.D * (2 * s.H + 3 * s.KV) + (int64_t)s.natt());
  const size_t guard = 4096;
  std::vector<float> scratch_host((size_t)need + guard, 1234.5f);
  DevBuf q(dev, in.q), k(dev, in.k), v(dev, in.v), dout(dev, in.dout), scratch(dev, scratch_host);
  DevBuf out(dev, s.nq() * 4), att(dev, s.natt() * 4), dq(dev, s.nq() * 4), dk(dev, s.nkv() * 4),
      dv(dev, s.nkv() * 4), rs(dev, s.rs);
  for (const DevBuf *b : {&out, &att, &dq, &dk, &dv}) EXPECT_EQ(drl_memset(dev, b->p, 0xff, b->bytes), DRL_OK);
  const int32_t *rsp = s.rs.empty() ? nullptr : (const int32_t *)rs.p;
  EXPECT_EQ(drl_attention_forward(dev, out.f(), att.f(), q.f(), k.f(), v.f(), rsp, s.B, s.T, s.H, s.KV, s.D,
                                  scratch.f()),
            DRL_OK)
      << drl_last_error();
  EXPECT_EQ(drl_attention_backward(dev, dq.f(), dk.f(), dv.f(), dout.f(), q.f(), k.f(), v.f(), att.f(), rsp, s.B, s.T,
                                   s.H, s.KV, s.D, scratch.f()),
            DRL_OK)
      << drl_last_error();
  EXPECT_EQ(drl_device_sync(dev), DRL_OK) << drl_last_error();
  r.out = out.get<float>();
  r.att = att.get<float>();
  r.dq = dq.get<float>();
  r.dk = dk.get<float>();
  r.dv = dv.get<float>();
  std::vector<float> back = scratch.get<float>();
  for (size_t e = (size_t)need; e < back.size(); ++e) {
    EXPECT_EQ(back[e], 1234.5f) << "wrote past the scratch, float " << e - need;
    if (back[e] != 1234.5f) break;
  }
  return r;
}

// |gpu - cpu| <= tol_rel * max|cpu|, elementwise.
void expect_close(const char *name, const std::vector<float> &gpu, const std::vector<float> &cpu, double tol_rel) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double scale = 0, worst = 0;
  for (float c : cpu) scale = std::max(scale, (double)std::fabs(c));
  for (size_t e = 0; e < cpu.size(); ++e) {
    ASSERT_TRUE(std::isfinite(gpu[e])) << name << " element " << e << " not written";
    double err = std::fabs((double)gpu[e] - cpu[e]);
    worst = std::max(worst, err);
    ASSERT_LE(err, tol_rel * scale) << name << " element " << e << ": gpu " << gpu[e] << " cpu " << cpu[e];
  }
  testing::Test::RecordProperty(std::string(name) + "_max_abs_err", std::to_string(worst));
  testing::Test::RecordProperty(std::string(name) + "_max_abs", std::to_string(scale));
}

void compare(const Shape &s, const Result &g, const Result &c) {
  SCOPED_TRACE(testing::Message() << "B=" << s.B << " T=" << s.T << " H=" << s.H << " KV=" << s.KV << " D=" << s.D);
  for (size_t e = 0; e < c.att.size(); ++e) {
    ASSERT_NEAR(g.att[e], c.att[e], 1e-5) << "att element " << e;
    if (c.att[e] == 0.0f) {
      ASSERT_EQ(g.att[e], 0.0f) << "att element " << e << " is masked";
    }
  }
  expect_close("out", g.out, c.out, 1e-4);
  expect_close("dq", g.dq, c.dq, 1e-4);
  expect_close("dk", g.dk, c.dk, 1e-4);
  expect_close("dv", g.dv, c.dv, 1e-4);
  // padded query rows (out, dq) and padded keys (dk, dv) are exact zeros
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.start(b) && t < s.T; ++t) {
      for (int e = 0; e < s.H * s.D; ++e) {
        size_t i = ((size_t)b * s.T + t) * s.H * s.D + e;
        ASSERT_EQ(g.out[i], 0.0f);
        ASSERT_EQ(g.dq[i], 0.0f);
      }
      for (int e = 0; e < s.KV * s.D; ++e) {
        size_t i = ((size_t)b * s.T + t) * s.KV * s.D + e;
        ASSERT_EQ(g.dk[i], 0.0f);
        ASSERT_EQ(g.dv[i], 0.0f);
      }
    }
}

TEST(GpuAttention, RealisticSizeMatchesCpu) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  dev.allow_tf32 = 0;
  Shape s{4, 128, 8, 4, 64, {0, 17, 64, 127}};
  Inputs in(s, 100);
  Result g = run_gpu(&dev, s, in);
  Result c = run_cpu(s, in);
  compare(s, g, c);
  drl_device_close(&dev);
}

TEST(GpuAttention, EdgeShapesMatchCpu) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  dev.allow_tf32 = 0;
  const std::vector<Shape> shapes = {
      {2, 7, 4, 2, 8, {0, 3}},     // GQA with padding
      {1, 5, 3, 3, 4, {}},         // KV = H, no padding
      {3, 1, 2, 1, 4, {0, 1, 0}},  // T = 1, one batch row all padding
      {2, 6, 4, 1, 6, {6, 2}},     // one kv head, one batch row all padding
      {2, 70, 4, 2, 16, {40, 0}},  // rows longer than two warps
      {1, 33, 8, 8, 32, {}},
  };
  uint32_t seed = 200;
  for (const Shape &s : shapes) {
    Inputs in(s, seed);
    seed += 10;
    compare(s, run_gpu(&dev, s, in), run_cpu(s, in));
  }
  drl_device_close(&dev);
}

TEST(GpuAttention, RepeatRunsAreBitIdentical) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  dev.allow_tf32 = 0;
  Shape s{4, 128, 8, 2, 64, {0, 5, 0, 90}};
  Inputs in(s, 300);
  Result a = run_gpu(&dev, s, in), b = run_gpu(&dev, s, in);
  EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.att.data(), b.att.data(), a.att.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.dq.data(), b.dq.data(), a.dq.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.dk.data(), b.dk.data(), a.dk.size() * 4), 0) << "dk sums over the group must not race";
  EXPECT_EQ(std::memcmp(a.dv.data(), b.dv.data(), a.dv.size() * 4), 0) << "dv sums over the group must not race";
  drl_device_close(&dev);
}

TEST(GpuAttention, Errors) {
  drl_device dev;
  DRL_REQUIRE_GPU(dev);
  float dummy = 0.0f;
  EXPECT_EQ(drl_attention_forward(&dev, &dummy, &dummy, &dummy, &dummy, &dummy, nullptr, 1, 4, 6, 4, 8, &dummy),
            DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_attention_forward(&dev, &dummy, &dummy, &dummy, &dummy, &dummy, nullptr, 1, 4, 4, 2, 8, nullptr),
            DRL_ERR_INVALID_ARG)
      << "the CUDA forward needs scratch";
  EXPECT_EQ(drl_rope_forward(&dev, &dummy, nullptr, &dummy, &dummy, 1, 1, 5), DRL_ERR_INVALID_ARG);
  drl_device_close(&dev);
}

}  // namespace
