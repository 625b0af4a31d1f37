/* GRPO over a sampled forest of a flow policy (DESIGN §6, research note D.2.3-D.2.5, D.3).
 *
 * Leaves carry rewards; a node's value V is the mean of its leaves (its children's values' mean). Every edge
 * parent -> child is a training sample with advantage, per group (condition):
 *   subtree  (option A, default)  (V(child) - mean R) / (std R + eps)     R: the group's leaf rewards (Bessel std)
 *   depth    (option B)           V(child) normalised over the group's nodes at the child's depth (0 when std < 1e-6)
 *   sibling  (option C)           (V(child) - V(parent)) / (std R + eps)
 * clamped to +- adv_clip. The loss of an edge is the clipped surrogate with a dynamic bound
 *   eps_e = clip_low + (clip_high - clip_low) sigmoid(sensitivity A_e),
 *   L_e = max(-A rho, -A clamp(rho, 1 - eps_e, 1 + eps_e)),  rho = exp(logp - logp_old),
 * averaged over the edges, plus LayerTuning-RL: sft_weight times the mean over each window layer's nodes of
 *   w_g mean_dims |v_theta(x_n, t_n) - (x_n - x0*_g) / t_n|^2,
 *   w_g = clamp((max R - mean R) / (std R + eps), 0, sft_wmax),
 * x0*_g the group's best leaf: a regression toward the velocity that would carry the node to the best sample. */
#ifndef DRL_FLOW_GRPO_H
#define DRL_FLOW_GRPO_H

#include <math.h>
#include <stdint.h>

#include "models/flow.h"
#include "samplers/sde_tree.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_tree_adv { DRL_TREE_ADV_SUBTREE = 0, DRL_TREE_ADV_DEPTH = 1, DRL_TREE_ADV_SIBLING = 2 } drl_tree_adv;

typedef struct drl_flow_grpo_cfg {
  drl_tree_adv advantage;
  float adv_eps, adv_clip;
  float clip_low, clip_high, sensitivity;
  float sft_weight, sft_wmax;
} drl_flow_grpo_cfg;

typedef struct drl_flow_grpo_stats {
  double reward_mean, reward_std; /* over the leaves; std: the mean within-group (Bessel) std */
  double loss, rl_loss, sft_loss;
  double clip_frac;               /* edges whose clipped branch is active */
  double ratio_max_dev;           /* max |rho - 1| over the edges */
  float grad_norm;
  int64_t edges, nfe_train;       /* training samples; network evaluations of the training pass */
} drl_flow_grpo_stats;

/* The dynamic clip bound of an edge with advantage a. */
static inline float drl_flow_grpo_clip_eps(float low, float high, float sensitivity, float a) {
  return low + (high - low) / (1.0f + expf(-sensitivity * a));
}

/* value[n] for every node (host [tree->nodes]): leaves (layer depth) their reward, the rest the mean of their
 * children's values. */
void drl_flow_grpo_values(const drl_sde_tree *tree, double *value);

/* The edge advantage of every node of layers 1..depth (adv [nodes], layer 0 entries 0), clamped. */
void drl_flow_grpo_advantages(const drl_sde_tree *tree, const double *value, const drl_flow_grpo_cfg *cfg, float *adv);

/* The loss of one edge and dL/dlogp; *clipped = 1 when the clipped branch is active. */
double drl_flow_grpo_edge_loss(float adv, float logp, float logp_old, float eps, float *dlogp, int *clipped);

/* The gradient of one update from a sampled forest with rewards, in model->ps.grads (zeroed first): every window
 * layer's training pass (drl_sde_tree_edge_logprob, the losses, drl_sde_tree_edge_backward); the caller takes the
 * optimizer step. */
drl_status drl_flow_grpo_grad(drl_sde_tree *tree, drl_flow *model, const drl_flow_grpo_cfg *cfg,
                              drl_flow_grpo_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FLOW_GRPO_H */
