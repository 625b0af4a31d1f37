#include "dp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/elementwise.h"
#include "kernels/nvtx.h"
#include "kernels/reduce.h"

static int ranks(const drl_dp *dp) { return dp->comm ? dp->comm->size : 1; }
static int my_rank(const drl_dp *dp) { return dp->comm ? dp->comm->rank : 0; }
static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }
static int bits_set(unsigned x) {
  int c = 0;
  for (; x; x &= x - 1) ++c;
  return c;
}

int drl_dp_shards(const drl_dp *dp) { return dp ? dp->shards : 1; }
int drl_dp_local(const drl_dp *dp) { return dp ? dp->local : 1; }
int drl_dp_first(const drl_dp *dp) { return dp ? dp->first : 0; }
int drl_dp_rank(const drl_dp *dp) { return dp ? my_rank(dp) : 0; }

drl_status drl_dp_create(drl_dp *dp, drl_comm *comm, const drl_device *dev, int64_t n, const drl_dp_options *o) {
  memset(dp, 0, sizeof *dp);
  dp->comm = comm;
  dp->dev = *dev;
  dp->n = n;
  int R = comm ? comm->size : 1;
  dp->shards = o->shards > 0 ? o->shards : R;
  if (dp->shards % R != 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "dist.shards = %d is not a multiple of the %d ranks", dp->shards, R);
  dp->local = dp->shards / R;
  if (R > 1 && !is_pow2(dp->local))
    return DRL_FAIL(DRL_ERR_CONFIG,
                    "dist.shards = %d gives %d shards per rank on %d ranks: with more than one rank the shards per "
                    "rank must be a power of two (their sums must be subtrees of the shard tree)",
                    dp->shards, dp->local, R);
  dp->first = my_rank(dp) * dp->local;
  dp->zero = o->zero;
  dp->deterministic = o->deterministic;
  dp->bucket_floats = o->bucket_floats > 0 ? o->bucket_floats : ((int64_t)1 << 22);
  dp->queued_from = n;
  drl_status st = DRL_OK;
  dp->bounds = (int64_t *)malloc((size_t)(R + 1) * sizeof(int64_t));
  if (!dp->bounds) return DRL_FAIL(DRL_ERR_OOM, "out of memory for the data-parallel partition");
  drl_comm_even_bounds(n, R, DRL_REDUCE_CHUNK, dp->bounds);
  /* After i pushes the shard tree holds one partial sum per 1 bit of i: at most the largest such count. */
  if (dp->local > 1) {
    int cap = 0;
    for (int i = 1; i <= dp->local; ++i)
      if (bits_set((unsigned)i) > cap) cap = bits_set((unsigned)i);
    dp->stack = (float **)calloc((size_t)cap, sizeof(float *));
    dp->stack_leaves = (int *)calloc((size_t)cap, sizeof(int));
    if (!dp->stack || !dp->stack_leaves) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for the shard sums");
    dp->stack_cap = cap;
    for (int i = 0; st == DRL_OK && i < cap; ++i)
      st = drl_alloc(dev, (void **)&dp->stack[i], (size_t)n * sizeof(float), "gradient sums of local shards");
  }
  if (st == DRL_OK && R > 1) {
    DRL_TRY_GOTO(drl_device_fork(dev, &dp->side));
    DRL_TRY_GOTO(drl_comm_attach_device(comm, &dp->side));
    dp->overlap = dev->backend == DRL_BACKEND_CUDA && dp->local == 1;
    /* Exchange pieces of up to 2^24 elements per rank (each rank receives ranks x piece). */
    dp->scratch_floats = (n / R + 1) * R;
    if (dp->scratch_floats > ((int64_t)R << 24)) dp->scratch_floats = (int64_t)R << 24;
    DRL_TRY_GOTO(drl_alloc(dev, (void **)&dp->scratch, (size_t)dp->scratch_floats * sizeof(float),
                           "reduce-scatter receive buffer"));
  }
  if (st == DRL_OK && dp->zero) {
    int64_t chunks = drl_reduce_chunks(n);
    dp->partials = (double *)malloc((size_t)(chunks ? chunks : 1) * sizeof(double));
    if (!dp->partials) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for %lld norm partials", (long long)chunks);
  }
done:
  if (st != DRL_OK) drl_dp_free(dp);
  return st;
}

void drl_dp_free(drl_dp *dp) {
  if (!dp) return;
  for (int i = 0; dp->stack && i < dp->stack_cap; ++i) drl_free(&dp->dev, dp->stack[i]);
  free(dp->stack);
  free(dp->stack_leaves);
  drl_free(&dp->dev, dp->scratch);
  free(dp->partials);
  free(dp->bounds);
  if (dp->comm && dp->side.backend == DRL_BACKEND_CUDA && dp->side.stream) {
    dp->comm->dev = dp->dev; /* the NCCL communicator stays; its collectives go back to the compute stream */
    drl_device_close(&dp->side);
  }
  memset(dp, 0, sizeof *dp);
}

void drl_dp_optim_range(const drl_dp *dp, int64_t n, int64_t *lo, int64_t *hi) {
  *lo = 0;
  *hi = n;
  if (dp && dp->zero) {
    *lo = dp->bounds[my_rank(dp)];
    *hi = dp->bounds[my_rank(dp) + 1];
  }
}

drl_status drl_dp_sum_shards(drl_dp *dp, const double *local, int m, double *out) {
  int k = drl_dp_local(dp), S = drl_dp_shards(dp);
  double *all = NULL;
  size_t total = 0;
  if (dp && ranks(dp) > 1) {
    DRL_TRY(drl_dp_gather(dp, local, (size_t)k * (size_t)m * sizeof(double), (void **)&all, &total, NULL));
  } else {
    all = (double *)malloc((size_t)(k * m > 0 ? k * m : 1) * sizeof(double));
    if (!all) return DRL_FAIL(DRL_ERR_OOM, "out of memory summing %d shard values", k * m);
    memcpy(all, local, (size_t)k * (size_t)m * sizeof(double));
  }
  for (int i = 0; i < m; ++i) {
    double s = 0.0;
    for (int sh = 0; sh < S; ++sh) s += all[(size_t)sh * m + i];
    out[i] = s;
  }
  free(all);
  return DRL_OK;
}

drl_status drl_dp_gather(drl_dp *dp, const void *local, size_t bytes, void **out, size_t *total, size_t *counts) {
  int R = dp ? ranks(dp) : 1;
  *out = NULL;
  *total = 0;
  size_t *cnt = (size_t *)malloc((size_t)R * sizeof(size_t));
  if (!cnt) return DRL_FAIL(DRL_ERR_OOM, "out of memory for gather counts");
  drl_status st = DRL_OK;
  if (R > 1) {
    uint64_t mine = bytes, *all = (uint64_t *)malloc((size_t)R * sizeof(uint64_t));
    st = all ? drl_comm_allgather(dp->comm, &mine, sizeof mine, all) : DRL_FAIL(DRL_ERR_OOM, "gather counts");
    for (int r = 0; st == DRL_OK && r < R; ++r) cnt[r] = (size_t)all[r];
    free(all);
  } else {
    cnt[0] = bytes;
  }
  size_t sum = 0;
  for (int r = 0; st == DRL_OK && r < R; ++r) sum += cnt[r];
  void *buf = st == DRL_OK ? malloc(sum ? sum : 1) : NULL;
  if (st == DRL_OK && !buf) st = DRL_FAIL(DRL_ERR_OOM, "out of memory gathering %zu bytes", sum);
  if (st == DRL_OK) {
    if (R > 1)
      st = drl_comm_allgatherv(dp->comm, local, bytes, buf, cnt);
    else if (bytes)
      memcpy(buf, local, bytes);
  }
  if (st == DRL_OK && counts) memcpy(counts, cnt, (size_t)R * sizeof(size_t));
  free(cnt);
  if (st != DRL_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  *total = sum;
  return DRL_OK;
}

/* ---- gradients ---- */

drl_status drl_dp_grads_push(drl_dp *dp, float *grads) {
  if (!dp || dp->local == 1) return DRL_OK;
  if (dp->pushed == dp->local)
    return DRL_FAIL(DRL_ERR_INTERNAL, "data parallel: %d shard gradients pushed, this rank has %d", dp->pushed + 1,
                    dp->local);
  DRL_RANGE("shard_sum");
  /* Binary counter: while the newest two sums cover equally many shards, replace them by (older + newer). */
  const float *src = grads;
  int leaves = 1;
  size_t bytes = (size_t)dp->n * sizeof(float);
  while (dp->top > 0 && dp->stack_leaves[dp->top - 1] == leaves) {
    float *lower = dp->stack[dp->top - 1];
    DRL_TRY(drl_add(&dp->dev, lower, lower, src, dp->n));
    src = lower;
    leaves *= 2;
    --dp->top;
  }
  if (src != dp->stack[dp->top]) DRL_TRY(drl_copy_on_device(&dp->dev, dp->stack[dp->top], src, bytes));
  dp->stack_leaves[dp->top++] = leaves;
  dp->pushed++;
  return DRL_OK;
}

/* Queues the cross-rank reduction of [a, b) on the side stream after the work queued so far on the compute stream. */
static drl_status queue_reduce(drl_dp *dp, float *grads, int64_t a, int64_t b) {
  if (a >= b) return DRL_OK;
  drl_comm *c = dp->comm;
  DRL_TRY(drl_device_wait(&dp->side, &dp->dev));
  if (!dp->deterministic) return drl_comm_allreduce_fast(c, grads + a, b - a);
  DRL_TRY(drl_comm_reduce_scatter(c, grads, a, b, dp->bounds, dp->scratch, dp->scratch_floats));
  return dp->zero ? DRL_OK : drl_comm_allgather_ranges(c, grads, a, b, dp->bounds);
}

void drl_dp_arm(drl_dp *dp, int armed) {
  if (dp) dp->armed = armed;
}

drl_status drl_dp_grads_ready(void *user, float *grads, int64_t from) {
  drl_dp *dp = (drl_dp *)user;
  if (!dp || !dp->overlap || !dp->armed || from >= dp->queued_from) return DRL_OK;
  if (dp->queued_from - from < dp->bucket_floats && from > 0) return DRL_OK;
  DRL_RANGE("all_reduce_bucket");
  DRL_TRY(queue_reduce(dp, grads, from, dp->queued_from));
  dp->queued_from = from;
  return DRL_OK;
}

drl_status drl_dp_grads_reduce(drl_dp *dp, float *grads) {
  if (!dp) return DRL_OK;
  DRL_RANGE("all_reduce");
  if (dp->local > 1) {
    if (dp->pushed != dp->local)
      return DRL_FAIL(DRL_ERR_INTERNAL, "data parallel: %d of %d shard gradients pushed", dp->pushed, dp->local);
    /* Fold the subtrees newest first: v = top; v = below + v. */
    for (int t = dp->top - 2; t >= 0; --t)
      DRL_TRY(drl_add(&dp->dev, dp->stack[t], dp->stack[t], dp->stack[t + 1], dp->n));
    DRL_TRY(drl_copy_on_device(&dp->dev, grads, dp->stack[0], (size_t)dp->n * sizeof(float)));
    dp->top = dp->pushed = 0;
  }
  if (ranks(dp) == 1) return DRL_OK;
  drl_status st = queue_reduce(dp, grads, 0, dp->queued_from);
  dp->queued_from = dp->n;
  dp->armed = 0;
  /* Completion, not only the enqueueing, is awaited against dist.timeout_s: a dead peer fails this rank. */
  if (st == DRL_OK) st = drl_comm_sync(dp->comm);
  if (st == DRL_OK) st = drl_device_wait(&dp->dev, &dp->side);
  return st;
}

drl_status drl_dp_grad_sumsq(drl_dp *dp, const drl_device *dev, const float *grads, int64_t n, void *scratch,
                             double *sumsq) {
  if (!dp || !dp->zero || ranks(dp) == 1) return drl_sum_squares(dev, sumsq, grads, n, scratch);
  if (n != dp->n)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "gradient of %lld elements, data parallelism over %lld", (long long)n,
                    (long long)dp->n);
  /* Every rank holds its part: the chunk partials of the parts, gathered in rank order, are the whole buffer's. */
  int64_t lo, hi;
  drl_dp_optim_range(dp, n, &lo, &hi);
  int R = ranks(dp);
  size_t *counts = (size_t *)malloc((size_t)R * sizeof(size_t));
  if (!counts) return DRL_FAIL(DRL_ERR_OOM, "out of memory for norm counts");
  for (int r = 0; r < R; ++r) counts[r] = (size_t)drl_reduce_chunks(dp->bounds[r + 1] - dp->bounds[r]) * sizeof(double);
  int64_t mine = drl_reduce_chunks(hi - lo);
  double *own = dp->partials + lo / DRL_REDUCE_CHUNK;
  drl_status st = drl_sum_squares_partials(dev, own, grads + lo, hi - lo, scratch);
  /* In place: rank r's partials already sit at their place in the whole list. */
  double *send = (double *)malloc((size_t)(mine ? mine : 1) * sizeof(double));
  if (st == DRL_OK && !send) st = DRL_FAIL(DRL_ERR_OOM, "out of memory for norm partials");
  if (st == DRL_OK) {
    memcpy(send, own, (size_t)mine * sizeof(double));
    st = drl_comm_allgatherv(dp->comm, send, (size_t)mine * sizeof(double), dp->partials, counts);
  }
  if (st == DRL_OK) *sumsq = drl_reduce_partials(dp->partials, drl_reduce_chunks(n));
  free(send);
  free(counts);
  return st;
}

drl_status drl_dp_share_params(drl_dp *dp, float *params) {
  if (!dp || !dp->zero || ranks(dp) == 1) return DRL_OK;
  DRL_TRY(drl_device_wait(&dp->side, &dp->dev));
  DRL_TRY(drl_comm_allgather_ranges(dp->comm, params, 0, dp->n, dp->bounds));
  DRL_TRY(drl_comm_sync(dp->comm)); /* completion against dist.timeout_s */
  return drl_device_wait(&dp->dev, &dp->side);
}

drl_status drl_dp_gather_optim(drl_dp *dp, const drl_device *dev, int64_t n, const float *part, float *full) {
  int64_t lo, hi;
  drl_dp_optim_range(dp, n, &lo, &hi);
  if (!dp || !dp->zero || ranks(dp) == 1) return drl_copy_to_host(dev, full, part, (size_t)n * sizeof(float));
  int R = ranks(dp);
  size_t bytes = (size_t)(hi - lo) * sizeof(float);
  float *host = (float *)malloc(bytes ? bytes : 1);
  size_t *counts = (size_t *)malloc((size_t)R * sizeof(size_t));
  drl_status st = host && counts ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory gathering the optimizer state");
  for (int r = 0; st == DRL_OK && r < R; ++r) counts[r] = (size_t)(dp->bounds[r + 1] - dp->bounds[r]) * sizeof(float);
  if (st == DRL_OK) st = drl_copy_to_host(dev, host, part, bytes);
  if (st == DRL_OK) st = drl_comm_gatherv(dp->comm, host, bytes, full, counts, 0);
  free(host);
  free(counts);
  return st;
}
