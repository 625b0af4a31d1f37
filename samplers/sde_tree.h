/* Tree-structured SDE sampling of a flow policy (DESIGN §6, research note D.2-D.3).
 *
 * Per group (a condition) `roots` starting noises x ~ N(0, I) (Philox, addressed by root, or one per group with
 * shared_noise); the ODE x += v dt up to the window start l; inside the window, `depth` layers of the Flow-GRPO SDE
 * step (kernels/sde.h) at steps k = l + j:
 * every node of layer j gets `branch` children, drawn from N(mu(x, v), sigma^2 (-dt)) with
 *   sigma_{k,j} = noise * g(j) * sqrt(t_k / (1 - min(t_k, t_1))),  g(j) = 1 + growth * j / (depth - 1);
 * then the ODE for the leaves to t = 0. Each layer is one batched model call over all its nodes. The sigma that
 * samples a child is the sigma of its log-probability now and in training (drl_sde_tree_edge_logprob).
 *
 * branch = 1 with roots = G is the independent-trajectory baseline (Flow-GRPO with window = every step, MixGRPO with a
 * window of `depth` steps): the same code, the same noise streams, so the comparison is fair.
 *
 * Nodes: layer j (0 <= j <= depth) holds groups * roots * branch^j nodes in order; node q of layer j + 1 is a child of
 * node q / branch of layer j, and belongs to group q / (roots * branch^(j + 1)). Layer depth holds the leaves before
 * the ODE suffix. NFEs (network evaluations, one per point per call) are counted. */
#ifndef DRL_SDE_TREE_H
#define DRL_SDE_TREE_H

#include <stdint.h>

#include "models/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_sde_tree_params {
  int steps; /* T denoising steps, t from 1 to 0 on drl_time_grid(shift) */
  float shift;
  float noise, growth; /* a and beta of sigma_{k,j} */
  int depth, branch;   /* SDE steps of the window, children per node */
  int window;          /* l: the first SDE step; l + depth <= steps (tree->p.window may change between samplings) */
  int roots;           /* starting points per group */
  int shared_noise;    /* the roots of a group start from one noise (MixGRPO's groups; else each its own) */
  int mean_over_dims;  /* log-probabilities averaged over the D dimensions (else summed) */
  uint64_t seed;       /* the run seed */
  uint32_t iteration;  /* the noise streams' step */
} drl_sde_tree_params;

typedef struct drl_sde_tree {
  drl_sde_tree_params p;
  int groups, D, nodes, leaves;
  int *layer_first;      /* [depth + 2]: first node of each layer; layer_first[depth + 1] = nodes */
  int32_t *cond;         /* host [groups]: the groups' conditions */
  int32_t *parent;       /* host [nodes]: the parent of every node of layers >= 1 (-1 for the roots) */
  float *t, *dt, *sigma; /* host [depth]: the window steps' time, step and noise (sigma[j]: every edge into layer j+1) */
  float *x;              /* host [nodes, D]: every node's state */
  float *logp_old;       /* host [nodes]: log-probability of a node (layer >= 1) given its parent */
  float *leaf_x;         /* host [leaves, D]: the leaves at t = 0 */
  float *reward;         /* host [leaves]: the caller's rewards */
  int64_t nfe;           /* network evaluations of the sampling */
  /* device scratch, sized at create */
  drl_device dev;
  int rows_max;          /* the largest layer's rows times branch */
  float *d_x, *d_v, *d_xr, *d_vr, *d_next, *d_t, *d_dt, *d_sigma, *d_logp;
  int32_t *d_cond, *d_rep;
  uint64_t *d_noise;
  void *block;
} drl_sde_tree;

/* Checks the parameters (1 <= depth, window + depth <= steps, branch >= 1, roots >= 1). */
drl_status drl_sde_tree_params_check(const drl_sde_tree_params *p);

/* Nodes of layer j for g groups. */
int64_t drl_sde_tree_layer_size(const drl_sde_tree_params *p, int groups, int j);

/* NFEs of sampling one root's tree: l + sum_j branch^j + branch^depth (steps - l - depth) (research note D.2.6). */
int64_t drl_sde_tree_sample_nfe(const drl_sde_tree_params *p);

/* Allocates a forest of `groups` groups for parameters p on dev (host arrays and device scratch). */
drl_status drl_sde_tree_create(drl_sde_tree *tree, const drl_sde_tree_params *p, int groups, int D,
                               const drl_device *dev);

/* Frees everything; safe on a zeroed tree. */
void drl_sde_tree_free(drl_sde_tree *tree);

/* Samples the forest with model (its rows_max must hold the largest call, drl_sde_tree_rows_needed) for the groups'
 * conditions cond [groups]; iteration sets the noise streams. Fills x, logp_old, leaf_x and nfe. */
drl_status drl_sde_tree_sample(drl_sde_tree *tree, drl_flow *model, const int32_t *cond, uint32_t iteration);

/* NFEs of the training pass per root: one model call per parent node of the window, sum_j branch^j. */
int64_t drl_sde_tree_train_nfe(const drl_sde_tree_params *p);

/* The largest number of points one model call of drl_sde_tree_sample or drl_sde_tree_edge_logprob makes. */
int64_t drl_sde_tree_rows_needed(const drl_sde_tree_params *p, int groups);

/* The training pass of layer j (0 <= j < depth): the model at the layer's nodes (one call, the rows of sampling), then
 * the log-probability of every child under those velocities with the sampling sigma into logp [children of layer j]
 * (host); the model's activations stay for drl_sde_tree_edge_backward. */
drl_status drl_sde_tree_edge_logprob(drl_sde_tree *tree, drl_flow *model, int j, float *logp, float *v_host);

/* Backward of the last drl_sde_tree_edge_logprob (layer j): dlogp [children of layer j] (host) through the SDE mean
 * into the model's velocity, plus dv_extra [nodes of layer j, D] (host, may be NULL: a loss on the velocities
 * themselves), then through the model: adds into its gradients. */
drl_status drl_sde_tree_edge_backward(drl_sde_tree *tree, drl_flow *model, int j, const float *dlogp,
                                      const float *dv_extra);

/* Deterministic ODE samples: n points per condition of cond [n_cond] from the noise stream (seed, step 0, uid 2),
 * T steps of x += v dt on the shifted grid, in model calls of at most the model's rows_max points: out [n_cond n, D]
 * (host). */
drl_status drl_sde_tree_sample_ode(drl_flow *model, const int32_t *cond, int n_cond, int n, int steps, float shift,
                               uint64_t seed, float *out);

#ifdef __cplusplus
}
#endif
#endif /* DRL_SDE_TREE_H */
