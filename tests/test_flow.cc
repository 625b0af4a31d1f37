// The flow policy on the CPU: the velocity MLP's gradients, the tree SDE sampler (structure, sigma, NFEs, the
// on-policy ratio), flow GRPO (values, the three advantage options, dynamic clipping, the training pass's gradient),
// the flow trainer (learning, bit-exact resume, errors) and the samples file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "run_compare.h"
#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "data/flow2d.h"
#include "data/h5.h"
#include "engine/config.h"
#include "engine/flow_grpo.h"
#include "engine/flow_policy.h"
#include "engine/log.h"
#include "engine/trainer.h"
#include "kernels/sde.h"
#include "models/flow.h"
#include "samplers/sde_tree.h"
}

namespace {

// One flow GRPO update: the gradient of the forest's loss, then the optimizer step.
drl_status grpo_update(drl_sde_tree *tree, drl_flow *m, const drl_flow_grpo_cfg &gc, const drl_optim_hparams &hp,
                       drl_flow_grpo_stats *st) {
  drl_status s = drl_flow_grpo_grad(tree, m, &gc, st);
  return s == DRL_OK ? optim_step(&m->ps, hp, &st->grad_norm) : s;
}

const drl_flow_config kSmall = {2, 3, 4, 4, 8, 2, 0.5f, 8.0f};

struct Flow {
  drl_device dev = cpu_device();
  drl_flow m;
  Flow(const drl_flow_config &c, int rows, uint64_t seed = 7) {
    EXPECT_EQ(drl_flow_create(&m, &c, &dev, rows, seed), DRL_OK) << last_error();
  }
  ~Flow() { drl_flow_free(&m); }
  std::vector<float> forward(const std::vector<float> &x, const std::vector<float> &t, const std::vector<int32_t> &c) {
    std::vector<float> v(x.size());
    EXPECT_EQ(drl_flow_forward(&m, x.data(), t.data(), c.data(), (int)t.size(), v.data()), DRL_OK) << last_error();
    return v;
  }
};

drl_sde_tree_params tree_params(int steps, int window, int depth, int branch, int roots) {
  drl_sde_tree_params p = {steps, 1.0f, 0.7f, 1.0f, depth, branch, window, roots, 0, 1, 42, 0};
  return p;
}

double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}

// Central differences of loss() over every parameter of m (step h).
template <class F>
std::vector<double> finite_differences(drl_flow *m, F loss, float h) {
  std::vector<double> fd(m->ps.layout.total);
  for (int64_t i = 0; i < m->ps.layout.total; ++i) {
    float keep = m->ps.params[i];
    m->ps.params[i] = keep + h;
    double up = loss();
    m->ps.params[i] = keep - h;
    double down = loss();
    m->ps.params[i] = keep;
    fd[i] = (up - down) / (2.0 * h);
  }
  return fd;
}

// A sampled forest on the CPU with a small random network (groups conditions 0, 1, ...).
struct Forest {
  Flow f;
  drl_sde_tree tree;
  Forest(const drl_sde_tree_params &p, int groups, const drl_flow_config &c = kSmall)
      : f(c, (int)drl_sde_tree_rows_needed(&p, groups)) {
    EXPECT_EQ(drl_sde_tree_create(&tree, &p, groups, 2, &f.dev), DRL_OK) << last_error();
    std::vector<int32_t> cond(groups);
    for (int g = 0; g < groups; ++g) cond[g] = g % c.n_cond;
    EXPECT_EQ(drl_sde_tree_sample(&tree, &f.m, cond.data(), 3), DRL_OK) << last_error();
  }
  ~Forest() { drl_sde_tree_free(&tree); }
};

}  // namespace

// ---------------- models/flow ----------------

TEST(FlowModel, LayoutAndInitialisation) {
  Flow f(kSmall, 4);
  const drl_layout &l = f.m.ps.layout;
  ASSERT_EQ(l.count, 9);  // cond_emb, l0.{w_x, w_t, w_c, b}, l1.{w, b}, out.{w, b}
  EXPECT_STREQ(l.tensors[0].name, "cond_emb");
  EXPECT_STREQ(l.tensors[8].name, "out.b");
  EXPECT_EQ(l.total, 3 * 4 + 8 * (2 + 4 + 4) + 8 + 8 * 8 + 8 + 2 * 8 + 2);
  std::vector<float> p(f.m.ps.params, f.m.ps.params + l.total);
  for (int i = 0; i < l.count; ++i) {
    const drl_tensor_info &t = l.tensors[i];
    double ss = 0;
    for (int64_t j = 0; j < t.shape[0] * t.shape[1]; ++j) ss += (double)p[t.offset + j] * p[t.offset + j];
    if (t.shape[1] == 1)
      EXPECT_EQ(ss, 0.0) << t.name << ": biases start at zero";
    else
      EXPECT_GT(ss, 0.0) << t.name;
  }
  // The same seed gives the same network, another seed another one.
  Flow g(kSmall, 4), h(kSmall, 4, 8);
  EXPECT_EQ(0, memcmp(f.m.ps.params, g.m.ps.params, l.total * sizeof(float)));
  EXPECT_NE(0, memcmp(f.m.ps.params, h.m.ps.params, l.total * sizeof(float)));
  drl_flow_config odd = kSmall;
  odd.time_features = 5;
  drl_flow bad;
  EXPECT_EQ(drl_flow_create(&bad, &odd, &f.dev, 4, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("time_features");
}

// d(sum dv . v)/d theta of the backward against central differences, over every parameter.
TEST(FlowModel, GradientMatchesFiniteDifferences) {
  const int R = 6;
  Flow f(kSmall, R);
  std::vector<float> x = random_normal(R * 2, 1.0f, 1), t = random_uniform(R, 2, 0.05f, 1.0f),
                     dv = random_normal(R * 2, 1.0f, 3);
  std::vector<int32_t> c = {0, 1, 2, 1, 0, 2};
  auto loss = [&]() { return dot(f.forward(x, t, c).data(), dv.data(), dv.size()); };
  ASSERT_EQ(drl_params_zero_grads(&f.m.ps), DRL_OK);
  loss();
  ASSERT_EQ(drl_flow_backward(&f.m, dv.data()), DRL_OK) << last_error();
  std::vector<float> got(f.m.ps.grads, f.m.ps.grads + f.m.ps.layout.total);
  expect_grad_close(got, finite_differences(&f.m, loss, 1e-2f), "flow parameters");
}

// ---------------- samplers/sde_tree ----------------

// research note D.2.6: the worked example (T = 25, d = 4, G = 16) and the formula against the sampler's count.
TEST(SdeTree, NfeMatchesTheFormula) {
  drl_sde_tree_params tree = tree_params(25, 0, 4, 2, 1), late = tree_params(25, 21, 4, 2, 1),
                      mix = tree_params(25, 0, 4, 1, 16);
  EXPECT_EQ(drl_sde_tree_sample_nfe(&tree), 351);
  EXPECT_EQ(drl_sde_tree_sample_nfe(&late), 36);
  EXPECT_EQ(drl_sde_tree_train_nfe(&tree), 15);
  EXPECT_EQ(mix.roots * drl_sde_tree_sample_nfe(&mix), 400);
  EXPECT_EQ(mix.roots * drl_sde_tree_train_nfe(&mix), 64);
  struct Case {
    int T, l, d, b, roots, groups;
  } cases[] = {{6, 0, 3, 2, 1, 2}, {6, 2, 3, 2, 1, 3}, {6, 1, 2, 3, 2, 1}, {5, 0, 5, 1, 4, 2}, {7, 3, 4, 1, 3, 2}};
  for (const Case &k : cases) {
    drl_sde_tree_params p = tree_params(k.T, k.l, k.d, k.b, k.roots);
    Forest F(p, k.groups);
    EXPECT_EQ(F.tree.nfe, (int64_t)k.groups * k.roots * drl_sde_tree_sample_nfe(&p))
        << "T " << k.T << " l " << k.l << " d " << k.d << " b " << k.b;
    // The formula itself: l + sum_j b^j + b^d (T - l - d).
    int64_t bd = 1, inner = 0;
    for (int j = 0; j < k.d; ++j) inner += bd, bd *= k.b;
    EXPECT_EQ(drl_sde_tree_sample_nfe(&p), k.l + inner + bd * (k.T - k.l - k.d));
    drl_flow_grpo_cfg gc = {DRL_TREE_ADV_SUBTREE, 1e-6f, 5.0f, 1e-4f, 1e-3f, 1.0f, 0.1f, 2.0f};
    drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1};
    drl_flow_grpo_stats st;
    for (int q = 0; q < F.tree.leaves; ++q) F.tree.reward[q] = (float)(q % 3);
    ASSERT_EQ(grpo_update(&F.tree, &F.f.m, gc, hp, &st), DRL_OK) << last_error();
    EXPECT_EQ(st.nfe_train, (int64_t)k.groups * k.roots * drl_sde_tree_train_nfe(&p));
    EXPECT_EQ(st.edges, F.tree.nodes - F.tree.layer_first[1]);
  }
}

// Every child is its parent's SDE step with the layer's sigma = a g(j) sqrt(t / (1 - t)) (t_1 at t = 1), and its
// stored log-probability is the Gaussian density of that step under that same sigma.
TEST(SdeTree, ChildrenAreSdeStepsWithTheLayerSigma) {
  drl_sde_tree_params p = tree_params(8, 0, 3, 2, 1);
  p.growth = 1.5f;
  Forest F(p, 2);
  const drl_sde_tree &t = F.tree;
  std::vector<float> grid(p.steps + 1);
  drl_time_grid(grid.data(), p.steps, p.shift);
  for (int j = 0; j < p.depth; ++j) {
    float g = 1.0f + p.growth * j / (p.depth - 1);
    double want = p.noise * g * std::sqrt((double)grid[j] / (1.0 - (j == 0 ? grid[1] : grid[j])));
    EXPECT_NEAR(t.sigma[j], want, 1e-6 * want) << "layer " << j;
    EXPECT_EQ(t.t[j], grid[j]);
    EXPECT_EQ(t.dt[j], grid[j + 1] - grid[j]);
    int64_t rows = drl_sde_tree_layer_size(&p, t.groups, j);
    std::vector<float> v(rows * 2), tk(rows, t.t[j]);
    std::vector<int32_t> cond(rows);
    for (int64_t q = 0; q < rows; ++q) cond[q] = t.cond[q / (rows / t.groups)];
    ASSERT_EQ(drl_flow_forward(&F.f.m, t.x + t.layer_first[j] * 2, tk.data(), cond.data(), (int)rows, v.data()),
              DRL_OK);
    for (int64_t q = 0; q < rows * p.branch; ++q) {
      int64_t parent = q / p.branch;
      const float *xp = t.x + (t.layer_first[j] + parent) * 2, *xc = t.x + (t.layer_first[j + 1] + q) * 2;
      double s2 = (double)t.sigma[j] * t.sigma[j], dt = t.dt[j], tk = t.t[j], var = s2 * -dt, lp = 0;
      for (int d = 0; d < 2; ++d) {
        double vv = v[parent * 2 + d];
        double mu = xp[d] + (vv + s2 / (2 * tk) * (xp[d] + (1 - tk) * vv)) * dt;
        lp += -(xc[d] - mu) * (xc[d] - mu) / (2 * var) - 0.5 * std::log(var) - 0.5 * std::log(2 * M_PI);
      }
      EXPECT_NEAR(t.logp_old[t.layer_first[j + 1] + q], lp / 2, 1e-4 * (1 + std::fabs(lp))) << "layer " << j;
    }
    for (int64_t q = 0; q < rows * p.branch; ++q)
      EXPECT_EQ(t.parent[t.layer_first[j + 1] + q], t.layer_first[j] + q / p.branch);
    // Siblings share a parent but not their noise.
    EXPECT_NE(t.x[t.layer_first[j + 1] * 2], t.x[(t.layer_first[j + 1] + 1) * 2]);
  }
}

// The training pass recomputes every edge's log-probability with the sampling sigma: before any update the ratio is
// exactly 1, bit for bit, for the tree and for independent trajectories, summed or averaged over dimensions.
TEST(SdeTree, OnPolicyRatioIsExactlyOne) {
  for (int mean : {1, 0})
    for (int branch : {2, 1}) {
      drl_sde_tree_params p = tree_params(6, 1, 3, branch, branch == 1 ? 4 : 1);
      p.mean_over_dims = mean;
      Forest F(p, 2);
      for (int j = 0; j < p.depth; ++j) {
        int64_t children = drl_sde_tree_layer_size(&p, 2, j + 1);
        std::vector<float> lp(children);
        ASSERT_EQ(drl_sde_tree_edge_logprob(&F.tree, &F.f.m, j, lp.data(), nullptr), DRL_OK) << last_error();
        EXPECT_EQ(0, memcmp(lp.data(), F.tree.logp_old + F.tree.layer_first[j + 1], children * sizeof(float)))
            << "layer " << j << " branch " << branch << " mean " << mean;
      }
      drl_flow_grpo_cfg gc = {DRL_TREE_ADV_SUBTREE, 1e-6f, 5.0f, 1e-4f, 1e-3f, 1.0f, 0.0f, 2.0f};
      drl_optim_hparams hp = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1};
      drl_flow_grpo_stats st;
      for (int q = 0; q < F.tree.leaves; ++q) F.tree.reward[q] = (float)q;
      ASSERT_EQ(grpo_update(&F.tree, &F.f.m, gc, hp, &st), DRL_OK);
      EXPECT_EQ(st.ratio_max_dev, 0.0);
      EXPECT_EQ(st.clip_frac, 0.0);
      // A second update on the same samples sees the moved policy: the ratio leaves 1 and the clip acts.
      hp.step = 2;
      ASSERT_EQ(grpo_update(&F.tree, &F.f.m, gc, hp, &st), DRL_OK);
      EXPECT_GT(st.ratio_max_dev, 0.0);
      EXPECT_GT(st.clip_frac, 0.0);
    }
}

// Independent trajectories with shared_noise start a group's roots from one noise; without it, from their own.
TEST(SdeTree, SharedNoiseSharesTheGroupsStart) {
  for (int shared : {0, 1}) {
    drl_sde_tree_params p = tree_params(5, 2, 2, 1, 3);
    p.shared_noise = shared;
    Forest F(p, 2);
    const float *x = F.tree.x;  // layer 0: the roots after the ODE prefix, 3 per group
    EXPECT_EQ(x[0] == x[2] && x[1] == x[3] && x[0] == x[4], (bool)shared);
    EXPECT_NE(x[0], x[6]) << "the groups' noises differ";
    // Inside the window the SDE noise still separates them.
    EXPECT_NE(F.tree.leaf_x[0], F.tree.leaf_x[2]);
  }
}

// The training pass's backward (through the SDE mean, the sum over siblings and the network) against central
// differences of L = sum_e w_e logp_e + sum_n u_n . v(x_n) over a window layer.
TEST(SdeTree, EdgeBackwardMatchesFiniteDifferences) {
  drl_sde_tree_params p = tree_params(6, 1, 2, 3, 1);
  p.noise = 1.2f;
  Forest F(p, 2);
  Flow &f = F.f;
  for (int j = 0; j < p.depth; ++j) {
    int64_t rows = drl_sde_tree_layer_size(&p, 2, j), children = rows * p.branch;
    std::vector<float> w = random_normal(children, 1.0f, 10 + j), u = random_normal(rows * 2, 1.0f, 20 + j);
    std::vector<float> lp(children), v(rows * 2);
    auto loss = [&]() {
      EXPECT_EQ(drl_sde_tree_edge_logprob(&F.tree, &f.m, j, lp.data(), v.data()), DRL_OK);
      return dot(w.data(), lp.data(), children) + dot(u.data(), v.data(), v.size());
    };
    ASSERT_EQ(drl_params_zero_grads(&f.m.ps), DRL_OK);
    loss();
    ASSERT_EQ(drl_sde_tree_edge_backward(&F.tree, &f.m, j, w.data(), u.data()), DRL_OK) << last_error();
    std::vector<float> got(f.m.ps.grads, f.m.ps.grads + f.m.ps.layout.total);
    std::vector<double> fd = finite_differences(&f.m, loss, 1e-2f);
    // The float log-densities carry (x' - mu)^2 / var terms of a few units, so the differences' rounding is
    // ~1e-3 relative here; an error in the chain (the sibling sum, the mean's coefficients) is of order 1.
    expect_grad_close(got, fd, j == 0 ? "window layer 0" : "window layer 1", 5e-3);
  }
}

// ---------------- engine/flow_grpo ----------------

// Two groups of a depth-2 binary tree with rewards set by hand: node values, then options A, B and C and the clamp.
TEST(FlowGrpo, ValuesAndAdvantagesOnAHandBuiltTree) {
  drl_device dev = cpu_device();
  drl_sde_tree_params p = tree_params(4, 0, 2, 2, 1);
  drl_sde_tree t;
  ASSERT_EQ(drl_sde_tree_create(&t, &p, 2, 2, &dev), DRL_OK);
  ASSERT_EQ(t.nodes, 2 * (1 + 2 + 4));
  const float R[8] = {1, 0, 0, 0, 0.5f, 0.5f, 0.5f, 0.5f};  // group 1: no spread
  memcpy(t.reward, R, sizeof R);
  std::vector<double> V(t.nodes);
  drl_flow_grpo_values(&t, V.data());
  // layer 0: roots; layer 1: 2 per group; layer 2: the leaves
  EXPECT_DOUBLE_EQ(V[0], 0.25);
  EXPECT_DOUBLE_EQ(V[1], 0.5);
  EXPECT_DOUBLE_EQ(V[2], 0.5);
  EXPECT_DOUBLE_EQ(V[3], 0.0);
  EXPECT_DOUBLE_EQ(V[4], 0.5);
  EXPECT_DOUBLE_EQ(V[5], 0.5);
  for (int q = 0; q < 8; ++q) EXPECT_DOUBLE_EQ(V[6 + q], R[q]);
  // Group 0: mean R 0.25, Bessel std sqrt((0.75^2 + 3 0.25^2) / 3) = 0.5.
  drl_flow_grpo_cfg c = {DRL_TREE_ADV_SUBTREE, 1e-6f, 1.2f, 1e-4f, 1e-3f, 1.0f, 0.0f, 2.0f};
  std::vector<float> A(t.nodes);
  auto adv = [&](drl_tree_adv o) {
    c.advantage = o;
    drl_flow_grpo_advantages(&t, V.data(), &c, A.data());
  };
  const double s = 0.5 + 1e-6;
  adv(DRL_TREE_ADV_SUBTREE);
  EXPECT_EQ(A[0], 0.0f) << "roots have no edge";
  EXPECT_NEAR(A[2], 0.25 / s, 1e-6);
  EXPECT_NEAR(A[3], -0.25 / s, 1e-6);
  EXPECT_NEAR(A[6], 1.2, 1e-6) << "1.5 clamped to adv_clip";
  EXPECT_NEAR(A[7], -0.25 / s, 1e-6);
  for (int n : {4, 5, 10, 11, 12, 13}) EXPECT_EQ(A[n], 0.0f) << "a group without spread has no signal, node " << n;
  // Option A's sibling sum is twice the parent's advantage (research D.2.3), here 0 for the root's children.
  EXPECT_NEAR(A[2] + A[3], 0.0, 1e-6);
  adv(DRL_TREE_ADV_DEPTH);  // layer 1 values {0.5, 0}: mean 0.25, std sqrt(0.125)
  EXPECT_NEAR(A[2], 0.25 / std::sqrt(0.125), 1e-5);
  EXPECT_NEAR(A[3], -0.25 / std::sqrt(0.125), 1e-5);
  EXPECT_NEAR(A[7], -0.5, 1e-5);
  EXPECT_EQ(A[4], 0.0f);
  adv(DRL_TREE_ADV_SIBLING);  // (V(child) - V(parent)) / std R
  EXPECT_NEAR(A[2], 0.25 / s, 1e-6);
  EXPECT_NEAR(A[6], 0.5 / s, 1e-6);
  EXPECT_NEAR(A[7], -0.5 / s, 1e-6);
  EXPECT_NEAR(A[8], 0.0, 1e-6);
  EXPECT_NEAR(A[9], 0.0, 1e-6);
  drl_sde_tree_free(&t);
}

TEST(FlowGrpo, DynamicClipBoundsAndTheSurrogate) {
  const float lo = 1e-4f, hi = 1e-3f;
  EXPECT_NEAR(drl_flow_grpo_clip_eps(lo, hi, 1.0f, 0.0f), 0.5f * (lo + hi), 1e-9);
  EXPECT_NEAR(drl_flow_grpo_clip_eps(lo, hi, 1.0f, 50.0f), hi, 1e-9);
  EXPECT_NEAR(drl_flow_grpo_clip_eps(lo, hi, 1.0f, -50.0f), lo, 1e-9);
  EXPECT_NEAR(drl_flow_grpo_clip_eps(lo, hi, 2.0f, 1.0f), lo + (hi - lo) / (1 + std::exp(-2.0)), 1e-9);
  EXPECT_NEAR(drl_flow_grpo_clip_eps(lo, hi, 0.0f, 3.0f), 0.5f * (lo + hi), 1e-9) << "sensitivity 0: a fixed bound";
  float prev = 0;
  for (float a = -5; a <= 5; a += 0.5f) {
    float e = drl_flow_grpo_clip_eps(lo, hi, 1.0f, a);
    EXPECT_GT(e, prev);
    prev = e;
  }
  float g;
  int clipped;
  const float eps = 0.01f;
  // Positive advantage, ratio inside the bound: the plain surrogate -A rho and its gradient -A rho.
  double L = drl_flow_grpo_edge_loss(2.0f, 0.005f, 0.0f, eps, &g, &clipped);
  EXPECT_FALSE(clipped);
  EXPECT_NEAR(L, -2.0 * std::exp(0.005), 1e-6);
  EXPECT_NEAR(g, -2.0 * std::exp(0.005), 1e-5);
  // Positive advantage, ratio above 1 + eps: clipped, no gradient.
  L = drl_flow_grpo_edge_loss(2.0f, 0.05f, 0.0f, eps, &g, &clipped);
  EXPECT_TRUE(clipped);
  EXPECT_NEAR(L, -2.0 * (1 + eps), 1e-6);
  EXPECT_EQ(g, 0.0f);
  // Negative advantage, ratio below 1 - eps: clipped; above 1 + eps: not (the pessimistic bound).
  L = drl_flow_grpo_edge_loss(-1.0f, -0.05f, 0.0f, eps, &g, &clipped);
  EXPECT_TRUE(clipped);
  EXPECT_NEAR(L, 1.0 * (1 - eps), 1e-6);
  L = drl_flow_grpo_edge_loss(-1.0f, 0.05f, 0.0f, eps, &g, &clipped);
  EXPECT_FALSE(clipped);
  EXPECT_NEAR(g, std::exp(0.05), 1e-5);
}

// ---------------- engine/flow_policy ----------------

namespace {

drl_config flow_config(const std::string &out_dir) {
  drl_config c;
  EXPECT_EQ(drl_config_load_default(&c), DRL_OK);
  for (const char *kv : {"trainer.phases=flow_pretrain,flow_grpo", "flow.pretrain_steps=12", "flow.batch_size=32",
                         "flow.hidden=16", "flow.layers=2", "tree.iterations=8", "tree.steps=6", "tree.depth=3",
                         "tree.window_every=3", "tree.conditions_per_iter=2", "tree.eval_samples=16",
                         "tree.eval_every=4", "tree.epochs=2", "trainer.eval_every=5", "trainer.ckpt_every=0",
                         "run.threads=2", "run.quiet=true"})
    EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv << ": " << drl_last_error();
  snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s", out_dir.c_str());
  return c;
}

class FlowTrainer : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    drl_log_setup(DRL_LOG_ERROR, 1, 0);
  }
};

}  // namespace

TEST(FlowTrainerPlan, WindowSlidesAndNfeAccumulates) {
  drl_config c = flow_config("/tmp/unused");
  EXPECT_EQ(drl_flow_policy_window(&c, 1), 0);
  EXPECT_EQ(drl_flow_policy_window(&c, 3), 0);
  EXPECT_EQ(drl_flow_policy_window(&c, 4), 1);
  EXPECT_EQ(drl_flow_policy_window(&c, 7), 2);
  EXPECT_EQ(drl_flow_policy_window(&c, 100), 3) << "capped at steps - depth";
  drl_sde_tree_params p = drl_flow_policy_tree_params(&c, 4);
  EXPECT_EQ(p.branch, 2);
  EXPECT_EQ(p.roots, 1);
  EXPECT_EQ(p.window, 1);
  // 2 conditions per iteration, 2 updates: sampling plus two training passes of 1 + 2 + 4 parents.
  int64_t it1 = 2 * (0 + 7 + 8 * 3 + 2 * 7), it4 = 2 * (1 + 7 + 8 * 2 + 2 * 7);
  EXPECT_EQ(drl_flow_policy_nfe_through(&c, 1), it1);
  EXPECT_EQ(drl_flow_policy_nfe_through(&c, 4), 3 * it1 + it4);
  c.tree.sampling = DRL_CFG_TREE_INDEPENDENT;
  p = drl_flow_policy_tree_params(&c, 1);
  EXPECT_EQ(p.branch, 1);
  EXPECT_EQ(p.roots, c.tree.group_size);
}

// flow_pretrain then flow_grpo, stopped inside each phase and resumed: the same network, moments and metrics.
TEST_F(FlowTrainer, ResumeIsBitExact) {
  drl_train_summary whole, part, rest;
  drl_config a = flow_config(path("whole"));
  ASSERT_EQ(drl_train(&a, nullptr, &whole), DRL_OK) << last_error();
  EXPECT_EQ(whole.steps, 20);
  for (int stop : {7, 15}) {
    std::string dir = path("split" + std::to_string(stop));
    drl_config b = flow_config(dir);
    b.trainer.stop_after = stop;
    ASSERT_EQ(drl_train(&b, nullptr, &part), DRL_OK) << last_error();
    EXPECT_EQ(part.stopped_at, stop <= 12 ? stop : stop - 12);
    b.trainer.stop_after = 0;
    b.trainer.resume = true;
    ASSERT_EQ(drl_train(&b, nullptr, &rest), DRL_OK) << last_error();
    EXPECT_EQ(rest.steps, 20 - stop);
    EXPECT_EQ(rest.eval_after, whole.eval_after);
    expect_same_runs(path("whole"), dir, 20,
                     {"/metrics/loss", "/metrics/grad_norm", "/metrics/reward_mean", "/metrics/nfe_total",
                      "/metrics/eval_reward", "/metrics/window", "/metrics/phase"});
  }
  // The pretraining phase's end state stays next to ckpt.h5.
  drl_checkpoint ck;
  ASSERT_EQ(drl_checkpoint_read(path("whole/flow_pretrain.h5").c_str(), nullptr, &ck), DRL_OK) << last_error();
  EXPECT_STREQ(ck.phase, "flow_pretrain");
  EXPECT_EQ(ck.trainer_step, 12);
  drl_checkpoint_free(&ck);
}

TEST_F(FlowTrainer, ErrorsAreClear) {
  drl_train_summary s;
  drl_config c = flow_config(path("e"));
  ASSERT_EQ(drl_config_set(&c, "trainer.phases=sft,flow_grpo"), DRL_OK);
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("mixes flow phases with 'sft'");
  c = flow_config(path("e"));
  c.tree.window_start = 4;
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("tree.window_start (4) + tree.depth (3) must be at most tree.steps (6)");
  c = flow_config(path("e"));
  c.flow.time_features = 7;
  EXPECT_EQ(drl_train(&c, nullptr, &s), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("flow.time_features (7) must be even");
  // A checkpoint of another network is refused by name, and nothing is overwritten.
  c = flow_config(path("a"));
  c.tree.iterations = 0;
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  drl_config d = flow_config(path("a"));
  d.flow.hidden = 24;
  d.trainer.resume = true;
  EXPECT_EQ(drl_train(&d, nullptr, &s), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("l0.w_x");
  drl_checkpoint ck;
  EXPECT_EQ(drl_checkpoint_read(path("a/ckpt.h5").c_str(), nullptr, &ck), DRL_OK);
  drl_checkpoint_free(&ck);
}

// dynrl sample's file: shapes, conditions, rewards that match the task, the reward regions; token checkpoints refused.
TEST_F(FlowTrainer, SamplesFile) {
  drl_config c = flow_config(path("run"));
  drl_train_summary s;
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  double mean = 0;
  ASSERT_EQ(drl_flow_policy_sample_file(path("run/ckpt.h5").c_str(), path("s.h5").c_str(), 10, 0, 5, &mean), DRL_OK)
      << last_error();
  drl_h5_file f;
  ASSERT_EQ(drl_h5_open_read(path("s.h5").c_str(), &f), DRL_OK);
  int64_t xs[2] = {40, 2}, n[1] = {40}, ms[3] = {4, 3, 2}, cs[1] = {4};
  std::vector<float> x(80), r(40), modes(24);
  std::vector<int32_t> cond(40), target(4);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/samples/x", DRL_H5_FLOAT32, 2, xs, x.data()), DRL_OK) << last_error();
  ASSERT_EQ(drl_h5_read_array_into(&f, "/samples/reward", DRL_H5_FLOAT32, 1, n, r.data()), DRL_OK);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/samples/cond", DRL_H5_INT32, 1, n, cond.data()), DRL_OK);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/task/modes", DRL_H5_FLOAT32, 3, ms, modes.data()), DRL_OK);
  ASSERT_EQ(drl_h5_read_array_into(&f, "/task/target", DRL_H5_INT32, 1, cs, target.data()), DRL_OK);
  drl_h5_close(&f);
  drl_flow2d task;
  drl_flow_policy_task(&c, &task);
  double sum = 0;
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(cond[i], i / 10);
    EXPECT_EQ(r[i], drl_flow2d_reward(&task, &x[2 * i], cond[i]));
    sum += r[i];
  }
  EXPECT_NEAR(mean, sum / 40, 1e-9);
  float mu[2];
  drl_flow2d_mode(&task, 2, 1, mu);
  EXPECT_EQ(modes[(2 * 3 + 1) * 2], mu[0]);
  EXPECT_EQ(target[2], 2 % 3);
  // The same seed gives the same samples.
  ASSERT_EQ(drl_flow_policy_sample_file(path("run/ckpt.h5").c_str(), path("t.h5").c_str(), 10, 0, 5, &sum), DRL_OK);
  EXPECT_EQ(sum, mean);
  // Bad input: a missing checkpoint, a token-policy checkpoint; the output file is not created.
  EXPECT_EQ(drl_flow_policy_sample_file(path("none.h5").c_str(), path("u.h5").c_str(), 10, 0, 5, nullptr), DRL_ERR_IO);
  EXPECT_ERROR_HAS("none.h5");
  drl_config tok;
  ASSERT_EQ(drl_config_load_default(&tok), DRL_OK);
  for (const char *kv : {"model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
                         "model.d_ff=16", "data.n_train=20", "data.n_eval=0", "sft.steps=1", "trainer.phases=sft",
                         "trainer.eval_every=0", "run.quiet=true"})
    ASSERT_EQ(drl_config_set(&tok, kv), DRL_OK);
  snprintf(tok.run.out_dir, sizeof tok.run.out_dir, "%s", path("tok").c_str());
  ASSERT_EQ(drl_train(&tok, nullptr, &s), DRL_OK) << last_error();
  EXPECT_EQ(drl_flow_policy_sample_file(path("tok/ckpt.h5").c_str(), path("u.h5").c_str(), 10, 0, 5, nullptr),
            DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("token policy");
  EXPECT_FALSE(std::filesystem::exists(path("u.h5")));
}

// ---------------- learning ----------------

namespace {

// One pretraining run shared by the learning tests: flow matching on flow2d, 600 steps of 256 points.
class FlowLearning : public ::testing::Test {
 protected:
  static std::string dir_;
  static drl_train_summary pre_;
  static drl_status pre_status_;
  static drl_config config(const std::string &out, std::initializer_list<const char *> extra) {
    drl_config c;
    EXPECT_EQ(drl_config_load_default(&c), DRL_OK);
    snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s", out.c_str());
    for (const char *kv : {"flow.hidden=64", "flow.batch_size=256", "optim.lr=0.005", "run.threads=1",
                           "run.quiet=true", "trainer.ckpt_every=0", "tree.eval_samples=256"})
      EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv;
    for (const char *kv : extra) EXPECT_EQ(drl_config_set(&c, kv), DRL_OK) << kv;
    return c;
  }
  static void SetUpTestSuite() {
    drl_log_setup(DRL_LOG_ERROR, 1, 0);
    char tmpl[] = "/tmp/dynrl_flowlearn_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    drl_config c = config(dir_ + "/pre", {"trainer.phases=flow_pretrain", "flow.pretrain_steps=600",
                                          "trainer.eval_every=0"});
    pre_status_ = drl_train(&c, nullptr, &pre_);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
};
std::string FlowLearning::dir_;
drl_train_summary FlowLearning::pre_;
drl_status FlowLearning::pre_status_;

}  // namespace

// Flow matching learns the mixture: the loss falls well below the zero-velocity baseline E|eps - x_0|^2 / 2
// = (2 + 4 + 2 mode_std^2) / 2, and about a third of the ODE samples' mass lands in each condition's reward region
// (eval reward near (1/3) (w^2 / (w^2 + s^2)) = 0.22), up from the untrained network's scatter around the origin.
TEST_F(FlowLearning, FlowMatchingLearnsTheMixture) {
  ASSERT_EQ(pre_status_, DRL_OK) << last_error();
  std::vector<double> loss = read_training_series(dir_ + "/pre/metrics.h5", "/metrics/loss");
  ASSERT_EQ(loss.size(), 600u);
  double last = 0, baseline = (2.0 + 4.0 + 2.0 * 0.35 * 0.35) / 2.0;
  for (int i = 580; i < 600; ++i) last += loss[i] / 20;
  EXPECT_LT(last, 0.7 * baseline) << "flow matching did not learn";
  EXPECT_GT(pre_.eval_after, 0.15);
  EXPECT_LT(pre_.eval_after, 0.32) << "pretraining alone should not prefer the rewarded mode";
  EXPECT_GT(pre_.eval_after, pre_.eval_before + 0.1);
}

// GRPO over trees, from the pretrained policy (trainer.init_from), moves the mass into the reward regions.
TEST_F(FlowLearning, TreeGrpoRaisesTheReward) {
  ASSERT_EQ(pre_status_, DRL_OK) << last_error();
  drl_config c = config(dir_ + "/tree", {"trainer.phases=flow_grpo", "tree.iterations=60", "tree.lr=0.003",
                                         "tree.window_every=10", "tree.eval_every=0"});
  snprintf(c.trainer.init_from, sizeof c.trainer.init_from, "%s", (dir_ + "/pre/ckpt.h5").c_str());
  drl_train_summary s;
  ASSERT_EQ(drl_train(&c, nullptr, &s), DRL_OK) << last_error();
  EXPECT_EQ(s.eval_before, pre_.eval_after) << "init_from loads the pretrained weights";
  EXPECT_GT(s.eval_after, s.eval_before + 0.3) << "eval reward " << s.eval_before << " -> " << s.eval_after;
}
