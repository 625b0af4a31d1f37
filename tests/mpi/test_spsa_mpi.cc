// One-byte SPSA with shared seeds under mpirun -np 4: the scenario and acceptance criteria of research B.7.
// A student MLP 16 -> 64 -> 1 (tanh, 1153 parameters) learns a teacher sum_{a<8} +-tanh(A_a x) from minibatches of
// 32; the loss of contribution q depends only on (step, q). Criteria: (1) every rank's parameters are memcmp-equal
// after every step; (2) the loss falls far below the best constant, and the one-byte run tracks the fp32 one;
// (3) G bytes of payload per rank per step; (4) a rank that joins by copying the parameters stays equal, one that
// leaves changes S everywhere alike; (5) in-place perturbation, another order on one rank, and the sender applying
// its unquantised scalar all break equality and the hash check says so; (7) 4 ranks x 1 sample equal 1 rank x 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "mpi_main.h"

extern "C" {
#include "engine/spsa.h"
#include "engine/spsa_codec.h"
#include "kernels/philox.h"
}

drl_comm *g_comm = nullptr;

namespace {

constexpr int kIn = 16, kHidden = 64, kTeacher = 8, kBatch = 32, kTrain = 2048, kVal = 2048;
constexpr int64_t kParams = kHidden * kIn + kHidden + kHidden + 1;  // W1, b1, w2, b2
constexpr uint64_t kSeed = 20261201;

float unif(uint32_t purpose_uid, uint64_t i, float lo, float hi) {
  return lo + (hi - lo) * drl_rng_uniform(kSeed, 0, drl_rng_tag(DRL_RNG_TEST, purpose_uid, 0), i);
}

// The teacher and the data, the same on every rank.
struct Task {
  std::vector<float> x_train, y_train, x_val, y_val;
  double baseline = 0;  // validation MSE of the best constant
  Task() {
    std::vector<float> A(kTeacher * kIn), sign(kTeacher);
    for (size_t i = 0; i < A.size(); ++i) A[i] = unif(1, i, -0.5f, 0.5f);
    for (int a = 0; a < kTeacher; ++a) sign[a] = a % 2 ? -1.0f : 1.0f;
    auto make = [&](int n, uint32_t uid, std::vector<float> &x, std::vector<float> &y) {
      x.resize((size_t)n * kIn);
      y.resize(n);
      for (size_t i = 0; i < x.size(); ++i) x[i] = unif(uid, i, -1.0f, 1.0f);
      for (int e = 0; e < n; ++e) {
        double s = 0;
        for (int a = 0; a < kTeacher; ++a) {
          double d = 0;
          for (int k = 0; k < kIn; ++k) d += (double)A[a * kIn + k] * x[(size_t)e * kIn + k];
          s += sign[a] * std::tanh(d);
        }
        y[e] = (float)s;
      }
    };
    make(kTrain, 2, x_train, y_train);
    make(kVal, 3, x_val, y_val);
    double mean = 0;
    for (float v : y_val) mean += v;
    mean /= kVal;
    for (float v : y_val) baseline += (v - mean) * (v - mean);
    baseline /= kVal;
  }
};

const Task &task() {
  static Task t;
  return t;
}

double mse(const float *p, const float *x, const float *y, const int *idx, int n) {
  const float *W1 = p, *b1 = p + kHidden * kIn, *w2 = b1 + kHidden, *b2 = w2 + kHidden;
  double s = 0;
  for (int e = 0; e < n; ++e) {
    const float *xe = x + (size_t)(idx ? idx[e] : e) * kIn;
    double out = b2[0];
    for (int h = 0; h < kHidden; ++h) {
      double a = b1[h];
      for (int k = 0; k < kIn; ++k) a += (double)W1[h * kIn + k] * xe[k];
      out += w2[h] * std::tanh(a);
    }
    double d = out - y[idx ? idx[e] : e];
    s += d * d;
  }
  return s / n;
}

// Contribution q's loss at step t: a minibatch of the training quarter q % 4, drawn by (step, q).
drl_status mlp_loss(void *, const float *params, uint32_t step, uint32_t q, double *loss) {
  int idx[kBatch];
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, q, 0);
  for (int e = 0; e < kBatch; ++e)
    idx[e] = (int)(q % 4) * (kTrain / 4) + (int)(drl_rng_u32(kSeed, step, tag, (uint64_t)e) % (kTrain / 4));
  *loss = mse(params, task().x_train.data(), task().y_train.data(), idx, kBatch);
  return DRL_OK;
}

double val_mse(const std::vector<float> &p) {
  return mse(p.data(), task().x_val.data(), task().y_val.data(), nullptr, kVal);
}

std::vector<float> init_params() {
  std::vector<float> p(kParams, 0.0f);
  for (int i = 0; i < kHidden * kIn; ++i) p[i] = unif(4, i, -0.25f, 0.25f);
  for (int h = 0; h < kHidden; ++h) p[kHidden * kIn + kHidden + h] = unif(5, h, -0.125f, 0.125f);
  return p;
}

drl_spsa_config spsa_config(int samples, drl_spsa_codec codec = DRL_SPSA_LOG8) {
  drl_spsa_config c = {kSeed, 2e-3f, 1e-3f, samples, DRL_SPSA_RADEMACHER, codec, 0};
  return c;
}

drl_device cpu() {
  drl_device d;
  EXPECT_EQ(drl_device_open(&d, DRL_BACKEND_CPU, 0), DRL_OK);
  return d;
}

// Rank r's parameters are memcmp-equal to every other active rank's (gathered); active = this rank contributes.
bool replicas_equal(const std::vector<float> &p, bool active) {
  int R = g_comm->size;
  std::vector<float> mine(p);
  mine.push_back(active ? 1.0f : 0.0f);
  std::vector<float> all((size_t)R * mine.size());
  EXPECT_EQ(drl_comm_allgather(g_comm, mine.data(), mine.size() * 4, all.data()), DRL_OK);
  int ref = -1;
  for (int r = 0; r < R; ++r) {
    const float *q = all.data() + (size_t)r * mine.size();
    if (q[kParams] == 0.0f) continue;
    if (ref < 0) ref = r;
    if (std::memcmp(q, all.data() + (size_t)ref * mine.size(), kParams * 4) != 0) return false;
  }
  return true;
}

// Runs `steps` module steps from `p`, checking equality after every step when check_every > 0.
double train(drl_spsa *s, std::vector<float> &p, int first, int steps, bool check_every, int *unequal_step) {
  for (int t = first; t < first + steps; ++t) {
    drl_spsa_stats st;
    EXPECT_EQ(drl_spsa_step(s, p.data(), (uint32_t)t, mlp_loss, nullptr, &st), DRL_OK) << drl_last_error();
    EXPECT_EQ(st.payload_bytes, s->status == DRL_SPSA_ACTIVE ? (int64_t)(s->cfg.codec == DRL_SPSA_LOG8 ? 1 : 4) *
                                                                   s->cfg.samples
                                                             : 0);
    if (check_every && !replicas_equal(p, s->status == DRL_SPSA_ACTIVE) && *unequal_step < 0) *unequal_step = t;
  }
  return val_mse(p);
}

}  // namespace

TEST(Spsa, ReplicasStayIdenticalAndLearnWithOneBytePerStep) {
  REQUIRE_RANKS(4);
  drl_device dev = cpu();
  drl_spsa s;
  drl_spsa_config c = spsa_config(1);
  ASSERT_EQ(drl_spsa_create(&s, &c, g_comm, &dev, kParams), DRL_OK);
  std::vector<float> p = init_params();
  double before = val_mse(p);
  int unequal = -1;
  double after = train(&s, p, 0, 3000, true, &unequal);
  EXPECT_EQ(unequal, -1) << "replicas differ after step " << unequal;
  EXPECT_EQ(s.payload_total, 3000u) << "one byte per step";
  EXPECT_LT(after, 0.15 * task().baseline) << "validation MSE " << before << " -> " << after << ", best constant "
                                           << task().baseline;
  if (g_comm->rank == 0)
    std::printf("one-byte SPSA, 4 ranks, 3000 steps: validation MSE %.4f -> %.4f (best constant %.4f)\n", before,
                after, task().baseline);
  // The same job with fp32 scalars (4 bytes each) lands within noise of it.
  drl_spsa f;
  drl_spsa_config cf = spsa_config(1, DRL_SPSA_FP32);
  ASSERT_EQ(drl_spsa_create(&f, &cf, g_comm, &dev, kParams), DRL_OK);
  std::vector<float> pf = init_params();
  double after_fp32 = train(&f, pf, 0, 3000, false, &unequal);
  EXPECT_EQ(f.payload_total, 4u * 3000u);
  EXPECT_LT(std::fabs(after - after_fp32), 0.25 * after_fp32) << "one byte " << after << " vs fp32 " << after_fp32;
  if (g_comm->rank == 0) std::printf("fp32 scalars: validation MSE %.4f\n", after_fp32);
  drl_spsa_free(&f);
  drl_spsa_free(&s);
}

TEST(Spsa, FourRanksOneSampleEqualOneRankFourSamples) {
  REQUIRE_RANKS(4);
  if (g_comm->size != 4) GTEST_SKIP() << "the parity run is set up for exactly 4 ranks";
  drl_device dev = cpu();
  drl_spsa s, one;
  drl_spsa_config c1 = spsa_config(1), c4 = spsa_config(4);
  ASSERT_EQ(drl_spsa_create(&s, &c1, g_comm, &dev, kParams), DRL_OK);
  ASSERT_EQ(drl_spsa_create(&one, &c4, nullptr, &dev, kParams), DRL_OK);  // every rank runs it alone too
  std::vector<float> p = init_params(), q = init_params();
  int unequal = -1;
  train(&s, p, 0, 300, false, &unequal);
  train(&one, q, 0, 300, false, &unequal);
  EXPECT_EQ(std::memcmp(p.data(), q.data(), kParams * 4), 0) << "R ranks x G samples must be n-SPSA with n = R G";
  drl_spsa_free(&s);
  drl_spsa_free(&one);
}

TEST(Spsa, AJoiningRankCopiesTheParametersAndALeavingOneChangesSEverywhere) {
  REQUIRE_RANKS(4);
  drl_device dev = cpu();
  int me = g_comm->rank, last = g_comm->size - 1;
  drl_spsa s;
  drl_spsa_config c = spsa_config(1);
  ASSERT_EQ(drl_spsa_create(&s, &c, g_comm, &dev, kParams), DRL_OK);
  std::vector<float> p = init_params();
  if (me == last) {  // starts with other parameters and sits out
    drl_spsa_set_observer(&s);
    std::fill(p.begin(), p.end(), 0.5f);
  }
  int unequal = -1;
  train(&s, p, 0, 1499, true, &unequal);
  EXPECT_EQ(unequal, -1);
  if (me == last) drl_spsa_join(&s);
  drl_spsa_stats st;
  ASSERT_EQ(drl_spsa_step(&s, p.data(), 1499, mlp_loss, nullptr, &st), DRL_OK) << drl_last_error();
  EXPECT_EQ(st.contributions, g_comm->size - 1) << "the joiner contributes from the next step";
  EXPECT_EQ(s.status, DRL_SPSA_ACTIVE);
  EXPECT_TRUE(replicas_equal(p, true)) << "the joiner holds the peers' parameters at the join";
  double mid = train(&s, p, 1500, 500, true, &unequal);
  EXPECT_EQ(unequal, -1) << "replicas differ after step " << unequal;
  ASSERT_EQ(drl_spsa_step(&s, p.data(), 2000, mlp_loss, nullptr, &st), DRL_OK);
  EXPECT_EQ(st.contributions, g_comm->size);
  if (me == 1) drl_spsa_set_observer(&s);  // leaves
  ASSERT_EQ(drl_spsa_step(&s, p.data(), 2001, mlp_loss, nullptr, &st), DRL_OK);
  EXPECT_EQ(st.contributions, g_comm->size - 1) << "every rank sees the same S after a rank leaves";
  double end = train(&s, p, 2002, 1000, true, &unequal);
  EXPECT_EQ(unequal, -1);
  EXPECT_LT(end, 0.15 * task().baseline) << "after the join " << mid << ", at the end " << end;
  drl_spsa_free(&s);
}

namespace {

enum Fault { kNone, kInPlace, kReversedOnRank2, kSenderUnquantised };

// The step written out from the building blocks, with one fault switched on; kNone must equal drl_spsa_step.
void manual_step(std::vector<float> &p, std::vector<float> &scratch, uint32_t t, Fault fault) {
  drl_device dev = cpu();
  const float eps = 1e-3f, lr = 2e-3f;
  int R = g_comm->size, me = g_comm->rank;
  uint32_t q = (uint32_t)me;
  drl_spsa_stream zs = {kSeed, t, DRL_SPSA_RADEMACHER};
  double lp = 0, lm = 0;
  if (fault == kInPlace) {  // the MeZO trick: +eps z, -2 eps z, +eps z on the master weights
    drl_spsa_contrib up = {q, eps}, down = {q, -2 * eps};
    ASSERT_EQ(drl_spsa_apply(&dev, p.data(), kParams, 0, zs, &up, 1), DRL_OK);
    mlp_loss(nullptr, p.data(), t, q, &lp);
    ASSERT_EQ(drl_spsa_apply(&dev, p.data(), kParams, 0, zs, &down, 1), DRL_OK);
    mlp_loss(nullptr, p.data(), t, q, &lm);
    ASSERT_EQ(drl_spsa_apply(&dev, p.data(), kParams, 0, zs, &up, 1), DRL_OK);
  } else {
    ASSERT_EQ(drl_spsa_perturb(&dev, scratch.data(), p.data(), kParams, 0, zs, q, eps), DRL_OK);
    mlp_loss(nullptr, scratch.data(), t, q, &lp);
    ASSERT_EQ(drl_spsa_perturb(&dev, scratch.data(), p.data(), kParams, 0, zs, q, -eps), DRL_OK);
    mlp_loss(nullptr, scratch.data(), t, q, &lm);
  }
  float g = (float)((lp - lm) / (2.0 * (double)eps));
  float u = drl_rng_uniform(kSeed, t, drl_rng_tag(DRL_RNG_ROUNDING, q >> 12, q & 0xFFFu), 0);
  uint8_t rec[2] = {DRL_SPSA_ACTIVE, drl_spsa_codec_encode(g, u)};
  std::vector<uint8_t> all(2 * R);
  ASSERT_EQ(drl_comm_allgather(g_comm, rec, 2, all.data()), DRL_OK);
  float scale = (float)(-(double)lr / (double)R);
  std::vector<drl_spsa_contrib> cs;
  for (int r = 0; r < R; ++r) {
    float v = drl_spsa_codec_decode(all[2 * r + 1]);
    if (fault == kSenderUnquantised && r == me) v = g;
    if (v == 0.0f) continue;
    cs.push_back({(uint32_t)r, drl_fmul(scale, v)});
  }
  if (fault == kReversedOnRank2 && me == 2) std::reverse(cs.begin(), cs.end());
  ASSERT_EQ(drl_spsa_apply(&dev, p.data(), kParams, 0, zs, cs.data(), (int)cs.size()), DRL_OK);
}

}  // namespace

TEST(Spsa, TheWrittenOutStepIsTheModulesStep) {
  REQUIRE_RANKS(4);
  drl_device dev = cpu();
  drl_spsa s;
  drl_spsa_config c = spsa_config(1);
  ASSERT_EQ(drl_spsa_create(&s, &c, g_comm, &dev, kParams), DRL_OK);
  std::vector<float> p = init_params(), q = init_params(), scratch(kParams);
  for (uint32_t t = 0; t < 50; ++t) {
    ASSERT_EQ(drl_spsa_step(&s, p.data(), t, mlp_loss, nullptr, nullptr), DRL_OK);
    manual_step(q, scratch, t, kNone);
  }
  EXPECT_EQ(std::memcmp(p.data(), q.data(), kParams * 4), 0);
  drl_spsa_free(&s);
}

TEST(Spsa, BrokenContractsAreCaughtByTheHashCheck) {
  REQUIRE_RANKS(4);
  drl_device dev = cpu();
  drl_spsa checker;
  drl_spsa_config c = spsa_config(1);
  ASSERT_EQ(drl_spsa_create(&checker, &c, g_comm, &dev, kParams), DRL_OK);
  for (Fault f : {kInPlace, kReversedOnRank2, kSenderUnquantised}) {
    std::vector<float> p = init_params(), scratch(kParams);
    int diverged = -1;
    for (uint32_t t = 0; t < 20 && diverged < 0; ++t) {
      manual_step(p, scratch, t, f);
      if (drl_spsa_check(&checker, p.data(), t) != DRL_OK) {
        diverged = (int)t;
        EXPECT_EQ(std::string(drl_last_error()).find("SPSA replicas diverged at step") != std::string::npos, true)
            << drl_last_error();
      }
    }
    EXPECT_GE(diverged, 0) << "fault " << f << " went unnoticed for 20 steps";
    EXPECT_FALSE(replicas_equal(p, true)) << "fault " << f;
    if (g_comm->rank == 0) std::printf("fault %d: replicas diverged at step %d\n", (int)f, diverged);
  }
  drl_spsa_free(&checker);
}

int main(int argc, char **argv) { return mpi_test_main(argc, argv, 120.0); }
