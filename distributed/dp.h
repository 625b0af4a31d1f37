/* Data parallelism over shards of a global batch (DESIGN §8), on flat parameter and gradient buffers.
 *
 * Every global batch is cut into `shards` shards, numbered in batch order; rank r works on shards [r k, (r + 1) k),
 * k = shards / ranks, one after the other. A shard's work (its rows, their Philox streams, the calls that process
 * them) is the same wherever it runs, and everything that combines shards does so in shard order:
 *   - gradients: each shard's gradient is computed from zero, and the shards are summed in the tree T of
 *     kernels/rank_sum.h over shard index (a rank folds its k shards into a perfect subtree, which is why k must be a
 *     power of two when there is more than one rank; the ranks' sums then meet in the same tree over ranks);
 *   - statistics and normalisers: sums over shards in shard order (drl_dp_sum_shards);
 *   - selections shared by the batch (D3S): every shard's values gathered in shard order (drl_dp_gather).
 * So N ranks and one process with shards = N give the same bits on the CPU backend, and more shards than ranks is
 * gradient accumulation.
 *
 * ZeRO-1 (zero = 1): rank r's optimizer state covers part r of the flat buffer (parts are whole DRL_REDUCE_CHUNKs):
 * the gradient is reduce-scattered, AdamW steps that part, and the parameters are all-gathered. The gradient norm
 * gathers the chunk partials of kernels/reduce.h, so it is the unsharded norm bit for bit, and so are the parameters.
 *
 * On the GPU the reductions run on a side stream and the backward's gradient hook (drl_dp_grads_ready) starts them
 * bucket by bucket while the backward continues. A NULL drl_dp everywhere below means one process with one shard. */
#ifndef DRL_DP_H
#define DRL_DP_H

#include <stddef.h>
#include <stdint.h>

#include "distributed/comm.h"
#include "kernels/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_dp_options {
  int shards;            /* shards per global batch; 0 = one per rank */
  int zero;              /* ZeRO-1 optimizer sharding */
  int deterministic;     /* tree-ordered reductions (else the library all-reduce: faster, order not fixed) */
  int64_t bucket_floats; /* overlapped reductions start once this many gradient elements are final */
} drl_dp_options;

typedef struct drl_dp {
  drl_comm *comm;
  drl_device dev;           /* the model's device (its compute stream) */
  drl_device side;          /* where the collectives run: a second stream on the GPU */
  int shards, local, first; /* shards per batch; this rank's count and first shard index */
  int zero, deterministic;
  int overlap;              /* reductions start from the gradient hook */
  int armed;                /* the current backward is the last of this rank's gradient */
  int64_t n;                /* elements of the flat buffers */
  int64_t *bounds;          /* [ranks + 1]: the partition of [0, n) (whole DRL_REDUCE_CHUNKs) */
  float *scratch;           /* reduce-scatter receive buffer on the device */
  int64_t scratch_floats;
  double *partials;         /* host: the chunk partials of the whole gradient (ZeRO norm) */
  float **stack;            /* local shard sums: perfect subtrees of stack_leaves[i] shards, oldest first */
  int *stack_leaves;
  int stack_cap, top, pushed;
  int64_t bucket_floats;
  int64_t queued_from;      /* [queued_from, n) of the current gradient is queued for reduction */
} drl_dp;

/* Sets up data parallelism over comm's ranks for flat buffers of n floats on dev (comm's device collectives move to a
 * side stream of dev). Fails when shards is not a multiple of the ranks, or when there are several ranks and more
 * than one shard per rank that is not a power of two. */
drl_status drl_dp_create(drl_dp *dp, drl_comm *comm, const drl_device *dev, int64_t n, const drl_dp_options *opt);

/* Frees what dp holds; safe on a zeroed one. */
void drl_dp_free(drl_dp *dp);

/* Shards per batch, this rank's shard count and first shard, and this rank (1, 1, 0, 0 for NULL). */
int drl_dp_shards(const drl_dp *dp);
int drl_dp_local(const drl_dp *dp);
int drl_dp_first(const drl_dp *dp);
int drl_dp_rank(const drl_dp *dp);

/* The elements [lo, hi) this rank's optimizer state covers: all of them without ZeRO. */
void drl_dp_optim_range(const drl_dp *dp, int64_t n, int64_t *lo, int64_t *hi);

/* out[i] = sum over every shard s of the job, in shard order, of the value i of s; local holds this rank's shards'
 * values [local shards][m] (in double; exact for counts). out may alias local's first m values. */
drl_status drl_dp_sum_shards(drl_dp *dp, const double *local, int m, double *out);

/* Concatenates every rank's `bytes` of local in rank order (= shard order) into *out (malloc'd; the caller frees it);
 * counts (may be NULL) receives each rank's byte count [ranks]. */
drl_status drl_dp_gather(drl_dp *dp, const void *local, size_t bytes, void **out, size_t *total, size_t *counts);

/* grads holds one local shard's gradient, computed from zero: folds it into this rank's sum (with one shard per rank
 * there is nothing to fold: grads is the sum). */
drl_status drl_dp_grads_push(drl_dp *dp, float *grads);

/* The gradient hook of the model (models/transformer.h): with one shard per rank, starts the reduction of the
 * buckets of [from, n) that are complete. user is the drl_dp. */
drl_status drl_dp_grads_ready(void *user, float *grads, int64_t from);

/* Whether the next backward is the last one of this rank's gradient (its hook may then start the reduction). A
 * shard's gradient accumulated over several backward calls is final only after the last. No-op for NULL. */
void drl_dp_arm(drl_dp *dp, int armed);

/* grads = the sum over all shards of the job, after the pushes of this rank's shards (ZeRO: only this rank's part of
 * grads is the sum). Ready for the next shard's backward afterwards. */
drl_status drl_dp_grads_reduce(drl_dp *dp, float *grads);

/* *sumsq = the sum of squares of the whole reduced gradient grads [n] on dev, the same bits on every rank: of grads
 * itself, or under ZeRO from the chunk partials of every rank's part gathered in rank order (kernels/reduce.h), so it
 * is the unsharded sum bit for bit. scratch: drl_reduce_scratch_bytes(dev, n) on dev. Collective. */
drl_status drl_dp_grad_sumsq(drl_dp *dp, const drl_device *dev, const float *grads, int64_t n, void *scratch,
                             double *sumsq);

/* After each rank's optimizer step of its ZeRO part: the parts of params gathered on every rank (nothing to do
 * without ZeRO). Collective. */
drl_status drl_dp_share_params(drl_dp *dp, float *params);

/* A whole optimizer moment for a checkpoint: full (host, n floats; filled on rank 0 only) receives every rank's part
 * (the device buffer part, drl_dp_optim_range floats). Without ZeRO part is whole and is copied. Collective. */
drl_status drl_dp_gather_optim(drl_dp *dp, const drl_device *dev, int64_t n, const float *part, float *full);

#ifdef __cplusplus
}
#endif
#endif /* DRL_DP_H */
