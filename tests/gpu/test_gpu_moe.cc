// MoE kernels on the GPU give the same bits as their CPU twins (which the unit tests check against naive references):
// routing and its backward (with an auxiliary loss and a row mask), dispatch (order, slot, offsets), gather, combine
// and combine_backward, at realistic sizes. Bit-identical by construction: every float op of the shared math in
// kernels/moe.h is rounded once, e^x is engine-owned, and the dispatch sort is stable.
#include <cstring>
#include <random>
#include <vector>

#include "gpu_skip.h"
#include "../test_util.h"

extern "C" {
#include "kernels/moe.h"
}

namespace {

template <class T>
int64_t first_diff_of(const std::vector<T> &a, const std::vector<T> &b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return (int64_t)i;
  return -1;
}

struct Shape {
  int64_t R;
  int E, K, C;
};

const Shape kShapes[] = {{4096, 8, 2, 256}, {4096, 64, 6, 256}, {4096, 64, 2, 256}, {4096, 8, 6, 256}};

// Logits of a trained-looking router: a few hot experts, plus ties every so often (equal logits in a row).
std::vector<float> router_logits(int64_t R, int E, uint32_t seed) {
  auto v = random_normal((size_t)R * E, 2.0f, seed);
  for (int e = 0; e < E; e += 3)
    for (int64_t r = 0; r < R; ++r) v[r * E + e] += 0.5f;
  for (int64_t r = 0; r < R; r += 7) v[r * E + (E - 1)] = v[r * E];
  return v;
}

}  // namespace

TEST(GpuMoe, RouteAndBackwardBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  for (const Shape &s : kShapes) {
    const int64_t R = s.R;
    const int E = s.E, K = s.K;
    auto logits = router_logits(R, E, 10 + E + K);
    auto bias = random_uniform(E, 11, -0.1f, 0.1f);
    auto dgates = random_normal((size_t)R * K, 1.0f, 12);
    auto aux = random_uniform(E, 13, -1.0f, 1.0f);
    std::vector<uint8_t> mask(R);
    for (int64_t r = 0; r < R; ++r) mask[r] = (uint8_t)(r % 5 != 2);
    DevBuf dlog(&gpu, logits), dbias(&gpu, bias), ddg(&gpu, dgates), daux(&gpu, aux), dmask(&gpu, mask);
    DevBuf dscores(&gpu, (size_t)R * E * 4), dsel(&gpu, (size_t)R * K * 4), dgt(&gpu, (size_t)R * K * 4),
        ddl(&gpu, (size_t)R * E * 4);
    for (int normalize : {0, 1})
      for (int with_bias : {0, 1}) {
        const float scale = 2.5f;
        std::vector<float> scores((size_t)R * E), gates((size_t)R * K);
        std::vector<int32_t> sel((size_t)R * K);
        ASSERT_EQ(drl_moe_route_cpu(scores.data(), sel.data(), gates.data(), logits.data(),
                                    with_bias ? bias.data() : nullptr, R, E, K, normalize, scale),
                  DRL_OK);
        ASSERT_EQ(drl_moe_route(&gpu, dscores.f(), dsel.i(), dgt.f(), dlog.f(), with_bias ? dbias.f() : nullptr, R, E,
                                K, normalize, scale),
                  DRL_OK)
            << drl_last_error();
        EXPECT_SAME_BITS(dscores.get(), scores, "scores E " << E << " K " << K);
        EXPECT_EQ(first_diff_of(dsel.get<int32_t>(), sel), -1) << "sel E " << E << " K " << K << " bias " << with_bias;
        EXPECT_SAME_BITS(dgt.get(), gates, "gates E " << E << " K " << K << " normalize " << normalize);
        // Backward on the CPU's route (the GPU's is the same bits): without aux, aux on all rows, aux on the mask.
        for (int aux_mode : {0, 1, 2}) {
          const float *a = aux_mode ? aux.data() : nullptr;
          const uint8_t *m = aux_mode == 2 ? mask.data() : nullptr;
          std::vector<float> dl((size_t)R * E);
          ASSERT_EQ(drl_moe_route_backward_cpu(dl.data(), dgates.data(), scores.data(), sel.data(), R, E, K, normalize,
                                               scale, a, m),
                    DRL_OK);
          ASSERT_EQ(drl_moe_route_backward(&gpu, ddl.f(), ddg.f(), dscores.f(), dsel.i(), R, E, K, normalize, scale,
                                           aux_mode ? daux.f() : nullptr, aux_mode == 2 ? (const uint8_t *)dmask.p
                                                                                        : nullptr),
                    DRL_OK)
              << drl_last_error();
          EXPECT_SAME_BITS(ddl.get(), dl, "dlogits E " << E << " K " << K << " normalize " << normalize << " aux "
                                                       << aux_mode);
        }
      }
  }
  drl_device_close(&gpu);
}

TEST(GpuMoe, DispatchBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  for (const Shape &s : kShapes) {
    const int64_t R = s.R;
    const int E = s.E, K = s.K;
    std::vector<float> scores((size_t)R * E), gates((size_t)R * K);
    std::vector<int32_t> sel((size_t)R * K);
    ASSERT_EQ(drl_moe_route_cpu(scores.data(), sel.data(), gates.data(), router_logits(R, E, 20 + E).data(), nullptr,
                                R, E, K, 1, 1.0f),
              DRL_OK);
    // Leave one expert empty, so offsets has a zero-length run.
    for (auto &e : sel)
      if (e == 1) e = 0;
    std::vector<int32_t> order((size_t)R * K), slot((size_t)R * K);
    std::vector<int64_t> off(E + 1), goff(E + 1, -1);
    ASSERT_EQ(drl_moe_dispatch_cpu(order.data(), slot.data(), off.data(), sel.data(), R, K, E), DRL_OK);
    int64_t bytes = drl_moe_dispatch_scratch_bytes(&gpu, R, K, E);
    ASSERT_GT(bytes, 0);
    DevBuf dsel(&gpu, sel), dorder(&gpu, order.size() * 4), dslot(&gpu, slot.size() * 4), scratch(&gpu, (size_t)bytes);
    ASSERT_EQ(drl_moe_dispatch(&gpu, dorder.i(), dslot.i(), goff.data(), dsel.i(), R, K, E, scratch.p), DRL_OK)
        << drl_last_error();
    EXPECT_EQ(first_diff_of(dorder.get<int32_t>(), order), -1) << "order E " << E << " K " << K;
    EXPECT_EQ(first_diff_of(dslot.get<int32_t>(), slot), -1) << "slot E " << E << " K " << K;
    EXPECT_EQ(goff, off) << "offsets E " << E << " K " << K;
    EXPECT_EQ(goff[2] - goff[1], 0);
  }
  // E = 1 and no tokens.
  {
    const int64_t R = 1000;
    std::vector<int32_t> sel(R * 2, 0);
    DevBuf dsel(&gpu, sel), dorder(&gpu, sel.size() * 4), dslot(&gpu, sel.size() * 4),
        scratch(&gpu, (size_t)drl_moe_dispatch_scratch_bytes(&gpu, R, 2, 1));
    std::vector<int64_t> off(2);
    ASSERT_EQ(drl_moe_dispatch(&gpu, dorder.i(), dslot.i(), off.data(), dsel.i(), R, 2, 1, scratch.p), DRL_OK)
        << drl_last_error();
    EXPECT_EQ(off, (std::vector<int64_t>{0, 2 * R}));
    auto o = dorder.get<int32_t>();
    for (int64_t p = 0; p < 2 * R; ++p) ASSERT_EQ(o[p], p);
    std::vector<int64_t> off0(5, -1);
    ASSERT_EQ(drl_moe_dispatch(&gpu, nullptr, nullptr, off0.data(), nullptr, 0, 2, 4, nullptr), DRL_OK);
    EXPECT_EQ(off0, std::vector<int64_t>(5, 0));
  }
  // A bad expert id is reported after the sort (the call synchronises for offsets anyway).
  {
    std::vector<int32_t> sel = {0, 3, 1, 7, 2, 2};
    DevBuf dsel(&gpu, sel), dorder(&gpu, 24), dslot(&gpu, 24),
        scratch(&gpu, (size_t)drl_moe_dispatch_scratch_bytes(&gpu, 3, 2, 4));
    std::vector<int64_t> off(5);
    EXPECT_EQ(drl_moe_dispatch(&gpu, dorder.i(), dslot.i(), off.data(), dsel.i(), 3, 2, 4, scratch.p),
              DRL_ERR_INVALID_ARG);
  }
  drl_device_close(&gpu);
}

TEST(GpuMoe, GatherCombineAndBackwardBitIdenticalToCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  for (const Shape &s : kShapes) {
    const int64_t R = s.R;
    const int E = s.E, K = s.K, C = s.C;
    const int64_t n = R * K;
    std::vector<float> scores((size_t)R * E), gates((size_t)R * K);
    std::vector<int32_t> sel((size_t)R * K), order(n), slot(n);
    std::vector<int64_t> off(E + 1);
    ASSERT_EQ(drl_moe_route_cpu(scores.data(), sel.data(), gates.data(), router_logits(R, E, 30 + E).data(), nullptr,
                                R, E, K, 1, 2.5f),
              DRL_OK);
    ASSERT_EQ(drl_moe_dispatch_cpu(order.data(), slot.data(), off.data(), sel.data(), R, K, E), DRL_OK);
    auto x = random_normal((size_t)R * C, 1.0f, 31);
    auto y = random_normal((size_t)n * C, 1.0f, 32);
    auto out0 = random_normal((size_t)R * C, 1.0f, 33);
    auto dout = random_normal((size_t)R * C, 1.0f, 34);
    DevBuf dx(&gpu, x), dy_in(&gpu, y), dorder(&gpu, order), dslot(&gpu, slot), dgates(&gpu, gates),
        ddout(&gpu, dout), dgather(&gpu, (size_t)n * C * 4), ddy(&gpu, (size_t)n * C * 4), ddw(&gpu, (size_t)n * 4);

    std::vector<float> gather((size_t)n * C);
    ASSERT_EQ(drl_moe_gather_cpu(gather.data(), x.data(), order.data(), R, K, C), DRL_OK);
    ASSERT_EQ(drl_moe_gather(&gpu, dgather.f(), dx.f(), dorder.i(), R, K, C), DRL_OK) << drl_last_error();
    EXPECT_SAME_BITS(dgather.get(), gather, "gather E " << E << " K " << K);

    for (int weighted : {1, 0}) {
      auto out = out0;
      DevBuf dout_buf(&gpu, out0);
      const float *w = weighted ? gates.data() : nullptr;
      ASSERT_EQ(drl_moe_combine_cpu(out.data(), y.data(), slot.data(), w, R, K, C), DRL_OK);
      ASSERT_EQ(drl_moe_combine(&gpu, dout_buf.f(), dy_in.f(), dslot.i(), weighted ? dgates.f() : nullptr, R, K, C),
                DRL_OK)
          << drl_last_error();
      EXPECT_SAME_BITS(dout_buf.get(), out, "combine E " << E << " K " << K << " weighted " << weighted);
    }

    std::vector<float> dyv((size_t)n * C), dwv(n);
    ASSERT_EQ(drl_moe_combine_backward_cpu(dyv.data(), dwv.data(), dout.data(), y.data(), slot.data(), gates.data(), R,
                                           K, C),
              DRL_OK);
    ASSERT_EQ(drl_moe_combine_backward(&gpu, ddy.f(), ddw.f(), ddout.f(), dy_in.f(), dslot.i(), dgates.f(), R, K, C),
              DRL_OK)
        << drl_last_error();
    EXPECT_SAME_BITS(ddy.get(), dyv, "combine_backward dy E " << E << " K " << K);
    EXPECT_SAME_BITS(ddw.get(), dwv, "combine_backward dw E " << E << " K " << K);
  }
  drl_device_close(&gpu);
}
