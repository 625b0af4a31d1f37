// Parity with an independent PyTorch implementation, in the manner of llm.c's test_gpt2: the fixture
// tests/fixtures/transformer_parity.h5 holds our initial weights (tests/parity_init.c), the batch, and what
// bench/reference/transformer_ref.py computed from them in float32 (log-probs, SFT loss, every gradient, the losses
// and parameters of 5 AdamW steps with clipping). The regeneration command is at the top of that script.
// DRL_PARITY_FIXTURE=path points the test at another file (used to check that a corrupted fixture is caught).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "data/h5.h"
#include "engine/sft.h"
#include "models/transformer.h"
}

namespace {

// ---- tolerances ----
// Both sides compute in float32 with different summation orders (OpenBLAS vs PyTorch's GEMMs, our 32-lane RMSNorm
// sums, our online log-sum-exp), so they agree to rounding noise, not to the bit. How large that noise is, tensor by
// tensor, the fixture says: /parity/fp32_vs_fp64 holds the gap between the reference's float32 results and a float64
// run of the same script. Two independent float32 computations differ by about sqrt(2) times that gap (measured:
// ours vs the reference is 1-2x it for every tensor). So each tensor's tolerance is
//     tol = max(floor, kNoiseFactor * its float32 noise):
// 25x the measured noise, and never below a floor that stays ~100x above the typical gradient noise (3e-7 .. 7e-7),
// so a different BLAS kernel or thread count on another machine cannot fail the test. A real bug (a wrong RoPE
// pairing, mask, scale, GQA head map or a missing term) moves a tensor by 1e-2 or more; one element off by 1e-4 of
// its tensor's norm is already flagged (CheckerFlagsExactlyThePerturbedGradientTensor).
constexpr double kGradFloor = 1e-4;  // gradients, per tensor, relative L2 ||ours - ref|| / ||ref||
// After the steps we compare the update (params - initial params) per tensor, not the parameters, whose relative
// error would be diluted by the identical initial values. Adam divides by sqrt(v), which amplifies the rounding noise
// of elements with small gradients: the float32 noise of the update is 2e-6 .. 4e-5 depending on the tensor (the
// largest in layers.1.w_gate), which the noise-proportional term covers.
constexpr double kUpdateFloor = 1e-4;
constexpr double kNoiseFactor = 25.0;
// Whatever the fixture's noise says, no tensor gets a tolerance above this: a broken reference cannot buy a loose test.
constexpr double kTolCeiling = 2e-3;
constexpr double kLogprobAbsTol = 1e-5;  // per position; log-probs are O(1) (~ -log 13), fp32 ulp there ~2.4e-7
constexpr double kLossRelTol = 1e-5;     // the SFT loss and each step's loss (measured: < 1e-6)
constexpr double kNormRelTol = 1e-4;     // the global gradient norm of each step (measured: ~1e-6)

std::string fixture_path() {
  const char *env = std::getenv("DRL_PARITY_FIXTURE");
  return env && *env ? std::string(env) : std::string(DRL_SOURCE_DIR) + "/tests/fixtures/transformer_parity.h5";
}

// Everything the fixture holds, on the host.
struct Fixture {
  drl_transformer_config cfg{};
  uint64_t seed = 0;
  int B = 0, T = 0;
  std::vector<int32_t> tokens, targets;
  drl_checkpoint ck{};  // the layout and the initial parameters
  std::vector<float> logprob, grads, final_params;
  double loss = 0.0;
  std::vector<double> losses, grad_norms, noise_grad, noise_update;
  drl_optim_hparams hp{};
  int steps = 0;

  Fixture() = default;
  Fixture(const Fixture &) = delete;
  Fixture &operator=(const Fixture &) = delete;
  ~Fixture() { drl_checkpoint_free(&ck); }
};

#define OK(call) ASSERT_EQ((call), DRL_OK) << drl_last_error()

template <typename T>
void read_vec(const drl_h5_file &f, const char *name, drl_h5_type type, int rank, int64_t expect_elems,
              std::vector<T> *out) {
  int64_t shape[2] = {0, 0};
  void *data = nullptr;
  OK(drl_h5_read_array(&f, name, type, rank, shape, expect_elems, &data));
  int64_t n = rank == 2 ? shape[0] * shape[1] : shape[0];
  out->assign((const T *)data, (const T *)data + n);
  std::free(data);
  ASSERT_EQ(n, expect_elems) << name;
}

void load(Fixture *fx) {
  std::string path = fixture_path();
  OK(drl_checkpoint_read(path.c_str(), nullptr, &fx->ck));
  drl_h5_file f;
  OK(drl_h5_open_read(path.c_str(), &f));
  const char *g = "/parity/config";
  struct {
    const char *name;
    int *field;
  } ints[] = {{"vocab", &fx->cfg.vocab},     {"d_model", &fx->cfg.d_model},
              {"n_layers", &fx->cfg.n_layers}, {"n_heads", &fx->cfg.n_heads},
              {"n_kv_heads", &fx->cfg.n_kv_heads}, {"d_ff", &fx->cfg.d_ff},
              {"max_seq", &fx->cfg.max_seq}, {"tied_embeddings", &fx->cfg.tied_embeddings}};
  for (auto &i : ints) {
    int64_t v = 0;
    OK(drl_h5_read_attr_int64(&f, g, i.name, &v));
    *i.field = (int)v;
  }
  int64_t seed = 0, steps = 0;
  double theta = 0, std_ = 0, eps = 0;
  OK(drl_h5_read_attr_int64(&f, g, "seed", &seed));
  OK(drl_h5_read_attr_double(&f, g, "rope_theta", &theta));
  OK(drl_h5_read_attr_double(&f, g, "init_std", &std_));
  OK(drl_h5_read_attr_double(&f, g, "norm_eps", &eps));
  fx->seed = (uint64_t)seed;
  fx->cfg.rope_theta = (float)theta;
  fx->cfg.init_std = (float)std_;
  fx->cfg.norm_eps = (float)eps;

  int64_t bshape[2];
  OK(drl_h5_array_shape(&f, "/parity/batch/tokens", DRL_H5_INT32, 2, bshape));
  fx->B = (int)bshape[0];
  fx->T = (int)bshape[1];
  int64_t R = bshape[0] * bshape[1], total = fx->ck.layout.total;
  read_vec(f, "/parity/batch/tokens", DRL_H5_INT32, 2, R, &fx->tokens);
  read_vec(f, "/parity/batch/targets", DRL_H5_INT32, 2, R, &fx->targets);
  read_vec(f, "/parity/forward/logprob", DRL_H5_FLOAT32, 2, R, &fx->logprob);
  OK(drl_h5_read_attr_double(&f, "/parity/forward", "loss", &fx->loss));
  read_vec(f, "/parity/grads", DRL_H5_FLOAT32, 1, total, &fx->grads);
  read_vec(f, "/parity/train/params", DRL_H5_FLOAT32, 1, total, &fx->final_params);

  const char *o = "/parity/optim";
  double lr, b1, b2, aeps, wd, clip;
  OK(drl_h5_read_attr_double(&f, o, "lr", &lr));
  OK(drl_h5_read_attr_double(&f, o, "beta1", &b1));
  OK(drl_h5_read_attr_double(&f, o, "beta2", &b2));
  OK(drl_h5_read_attr_double(&f, o, "eps", &aeps));
  OK(drl_h5_read_attr_double(&f, o, "weight_decay", &wd));
  OK(drl_h5_read_attr_double(&f, o, "grad_clip", &clip));
  OK(drl_h5_read_attr_int64(&f, o, "steps", &steps));
  fx->hp = {(float)lr, (float)b1, (float)b2, (float)aeps, (float)wd, (float)clip, 0};
  fx->steps = (int)steps;
  read_vec(f, "/parity/train/losses", DRL_H5_FLOAT64, 1, steps, &fx->losses);
  read_vec(f, "/parity/train/grad_norms", DRL_H5_FLOAT64, 1, steps, &fx->grad_norms);
  read_vec(f, "/parity/fp32_vs_fp64/grad_rel_l2", DRL_H5_FLOAT64, 1, fx->ck.layout.count, &fx->noise_grad);
  read_vec(f, "/parity/fp32_vs_fp64/update_rel_l2", DRL_H5_FLOAT64, 1, fx->ck.layout.count, &fx->noise_update);
  drl_h5_close(&f);
}

// ---- the per-tensor checker ----

struct TensorError {
  std::string name;
  double rel_l2, max_abs, ref_norm;
};

// ||ours - ref|| / ||ref|| for each tensor of the layout; with base, both sides are compared as (x - base).
std::vector<TensorError> tensor_errors(const drl_layout &lay, const float *ours, const float *ref,
                                       const float *base = nullptr) {
  std::vector<TensorError> out;
  for (int i = 0; i < lay.count; ++i) {
    const drl_tensor_info &t = lay.tensors[i];
    double num = 0, den = 0, mx = 0;
    for (int64_t j = t.offset; j < t.offset + t.shape[0] * t.shape[1]; ++j) {
      double b = base ? (double)base[j] : 0.0;
      double a = (double)ours[j] - b, r = (double)ref[j] - b;
      num += (a - r) * (a - r);
      den += r * r;
      mx = std::fmax(mx, std::fabs(a - r));
    }
    double rel = !std::isfinite(num + den) ? NAN : den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    out.push_back({t.name, rel, mx, std::sqrt(den)});
  }
  return out;
}

// Per-tensor tolerances: max(floor, kNoiseFactor * the tensor's float32 noise), at most kTolCeiling.
std::vector<double> tolerances(const std::vector<double> &noise, double floor) {
  std::vector<double> tol;
  for (double n : noise) tol.push_back(std::fmin(std::fmax(floor, kNoiseFactor * n), kTolCeiling));
  return tol;
}

// The names of the tensors whose relative error exceeds their tolerance (NaN counts as exceeding).
std::vector<std::string> flagged(const std::vector<TensorError> &errs, const std::vector<double> &tol) {
  std::vector<std::string> names;
  for (size_t i = 0; i < errs.size(); ++i)
    if (!(errs[i].rel_l2 <= tol.at(i))) names.push_back(errs[i].name);
  return names;
}

std::string join(const std::vector<std::string> &v) {
  std::string s;
  for (const auto &x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Prints the comparison so a reader can judge it (llm.c prints its tensors' errors the same way).
void print_errors(const char *what, const std::vector<TensorError> &errs, const std::vector<double> &noise,
                  const std::vector<double> &tol) {
  std::printf("%s (fp32 noise = the reference's own float32 vs float64 gap)\n", what);
  std::printf("  %-20s %11s %11s %11s %11s %11s\n", "tensor", "||ref||", "rel L2", "max abs", "fp32 noise",
              "tolerance");
  for (size_t i = 0; i < errs.size(); ++i)
    std::printf("  %-20s %11.4e %11.3e %11.3e %11.3e %11.1e\n", errs[i].name.c_str(), errs[i].ref_norm,
                errs[i].rel_l2, errs[i].max_abs, noise.at(i), tol.at(i));
}

// ---- running our model on the fixture's batch ----

class Parity : public ::testing::Test {
 protected:
  Fixture fx_;
  drl_device dev_{};
  drl_transformer model_{};
  drl_sft_batch batch_{};

  void SetUp() override {
    drl_clear_error();
    ASSERT_NO_FATAL_FAILURE(load(&fx_));
    OK(drl_device_open(&dev_, DRL_BACKEND_CPU, 0));
    OK(drl_transformer_create(&model_, &fx_.cfg, &dev_, fx_.B, fx_.T, fx_.seed));
    // The per-tensor comparisons walk our layout over the fixture's flat buffers: they must be the same table.
    OK(drl_layout_compare(&model_.ps.layout, &fx_.ck.layout, "our model", "the fixture"));
    // The SFT batch of engine/sft.c: dlogprob = -1/scored on scored positions, loss = drl_sft_loss.
    OK(drl_sft_batch_alloc(&batch_, fx_.B, fx_.T));
    std::memcpy(batch_.tokens, fx_.tokens.data(), fx_.tokens.size() * sizeof(int32_t));
    std::memcpy(batch_.targets, fx_.targets.data(), fx_.targets.size() * sizeof(int32_t));
    batch_.scored = 0;
    for (int32_t t : fx_.targets) batch_.scored += t >= 0;
    for (size_t n = 0; n < fx_.targets.size(); ++n)
      batch_.dlogprob[n] = fx_.targets[n] >= 0 ? -1.0f / (float)batch_.scored : 0.0f;
  }
  void TearDown() override {
    drl_sft_batch_free(&batch_);
    drl_transformer_free(&model_);
    drl_device_close(&dev_);
  }

  // One forward and backward (fresh gradients), as the SFT trainer makes a step; returns the loss.
  double forward_backward(std::vector<float> *logprob) {
    logprob->assign(fx_.tokens.size(), 0.0f);
    EXPECT_EQ(drl_transformer_forward(&model_, batch_.tokens, batch_.targets, nullptr, fx_.B, fx_.T, 1.0f,
                                      logprob->data(), nullptr),
              DRL_OK)
        << drl_last_error();
    EXPECT_EQ(drl_params_zero_grads(&model_.ps), DRL_OK);
    EXPECT_EQ(drl_transformer_backward(&model_, batch_.dlogprob), DRL_OK) << drl_last_error();
    return drl_sft_loss(&batch_, logprob->data());
  }
};

TEST_F(Parity, InitialParametersAreBitIdentical) {
  // Same config and seed => the same Philox streams => the weights the reference started from, to the bit.
  ASSERT_EQ(model_.ps.layout.total, fx_.ck.layout.total);
  int64_t differ = 0;
  for (int64_t i = 0; i < model_.ps.layout.total; ++i) differ += std::memcmp(&model_.ps.params[i], &fx_.ck.params[i], 4) != 0;
  EXPECT_EQ(differ, 0) << "of " << model_.ps.layout.total << " parameters";
}

TEST_F(Parity, ForwardLogProbsAndLoss) {
  std::vector<float> lp;
  double loss = forward_backward(&lp);
  double worst = 0;
  int worst_at = -1;
  for (size_t n = 0; n < lp.size(); ++n) {
    if (fx_.targets[n] < 0) {
      EXPECT_EQ(lp[n], 0.0f) << "unscored position " << n;
      continue;
    }
    double d = std::fabs((double)lp[n] - (double)fx_.logprob[n]);
    if (!(d <= worst)) worst = d, worst_at = (int)n;
  }
  std::printf("logprob: max abs diff %.3e at position %d; loss ours %.8f ref %.8f (rel %.2e)\n", worst, worst_at,
              loss, fx_.loss, std::fabs(loss - fx_.loss) / std::fabs(fx_.loss));
  EXPECT_LE(worst, kLogprobAbsTol) << "position " << worst_at;
  EXPECT_LE(std::fabs(loss - fx_.loss), kLossRelTol * std::fabs(fx_.loss));
}

TEST_F(Parity, GradientsPerTensor) {
  std::vector<float> lp;
  forward_backward(&lp);
  auto errs = tensor_errors(model_.ps.layout, model_.ps.grads, fx_.grads.data());
  auto tol = tolerances(fx_.noise_grad, kGradFloor);
  print_errors("gradients", errs, fx_.noise_grad, tol);
  auto bad = flagged(errs, tol);
  EXPECT_TRUE(bad.empty()) << "gradient tensors off: " << join(bad);
  // The fixture must exercise every tensor: a zero reference gradient would make the check vacuous.
  for (const auto &e : errs) EXPECT_GT(e.ref_norm, 1e-4) << e.name;
}

TEST_F(Parity, AdamWStepsLossesAndParameters) {
  ASSERT_GE(fx_.steps, 1);
  std::vector<float> lp;
  int clipped = 0;
  for (int s = 1; s <= fx_.steps; ++s) {
    double loss = forward_backward(&lp);
    drl_optim_hparams hp = fx_.hp;
    hp.step = s;
    float norm = 0;
    OK(optim_step(&model_.ps, hp, &norm));
    clipped += norm > hp.grad_clip;
    std::printf("step %d: loss ours %.8f ref %.8f (rel %.2e); grad norm ours %.6f ref %.6f\n", s, loss,
                fx_.losses[s - 1], std::fabs(loss - fx_.losses[s - 1]) / fx_.losses[s - 1], norm,
                fx_.grad_norms[s - 1]);
    EXPECT_LE(std::fabs(loss - fx_.losses[s - 1]), kLossRelTol * std::fabs(fx_.losses[s - 1])) << "step " << s;
    EXPECT_LE(std::fabs(norm - fx_.grad_norms[s - 1]), kNormRelTol * fx_.grad_norms[s - 1]) << "step " << s;
  }
  // The clip rule is part of what is compared: the fixture's hyperparameters make it bite.
  EXPECT_GT(clipped, 0);
  auto upd = tensor_errors(model_.ps.layout, model_.ps.params, fx_.final_params.data(), fx_.ck.params);
  auto tol = tolerances(fx_.noise_update, kUpdateFloor);
  print_errors("update after the steps (params - initial)", upd, fx_.noise_update, tol);
  auto bad = flagged(upd, tol);
  EXPECT_TRUE(bad.empty()) << "parameter updates off: " << join(bad);
}

// The checker itself: corrupt one tensor of the reference gradients in memory; exactly that tensor must be flagged,
// for every tensor in turn. One element is moved by 10x the tensor's tolerance times its norm (so the tensor's
// relative error becomes ~10x its tolerance); a move of a tenth of the tolerance must pass.
TEST_F(Parity, CheckerFlagsExactlyThePerturbedGradientTensor) {
  std::vector<float> lp;
  forward_backward(&lp);
  const drl_layout &lay = model_.ps.layout;
  auto tol = tolerances(fx_.noise_grad, kGradFloor);
  ASSERT_TRUE(flagged(tensor_errors(lay, model_.ps.grads, fx_.grads.data()), tol).empty());
  for (int i = 0; i < lay.count; ++i) {
    const drl_tensor_info &t = lay.tensors[i];
    int64_t n = t.shape[0] * t.shape[1];
    double norm = 0;
    for (int64_t j = 0; j < n; ++j) norm += (double)fx_.grads[t.offset + j] * fx_.grads[t.offset + j];
    norm = std::sqrt(norm);
    int64_t at = t.offset + n / 2;  // any element will do; the middle one
    for (double factor : {10.0, 0.1}) {
      std::vector<float> ref = fx_.grads;
      ref[at] += (float)(factor * tol[i] * norm);
      auto bad = flagged(tensor_errors(lay, model_.ps.grads, ref.data()), tol);
      if (factor > 1)
        EXPECT_EQ(bad, std::vector<std::string>{t.name}) << "perturbing " << t.name << " flagged: " << join(bad);
      else
        EXPECT_TRUE(bad.empty()) << "a perturbation below tolerance of " << t.name << " flagged: " << join(bad);
    }
  }
  // A NaN anywhere is flagged too.
  std::vector<float> ref = fx_.grads;
  ref[lay.tensors[3].offset] = NAN;
  EXPECT_EQ(flagged(tensor_errors(lay, model_.ps.grads, ref.data()), tol),
            std::vector<std::string>{lay.tensors[3].name});
}

}  // namespace
