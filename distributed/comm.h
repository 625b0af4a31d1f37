/* Collectives between the ranks of one job (DESIGN §8).
 *
 * A job is launched by mpirun or srun; MPI gives rank, size and the node-local rank, and carries every collective on
 * host buffers. With a CUDA device attached, rank 0 creates an NCCL unique id, broadcasts it over MPI, and the
 * collectives on device buffers go through NCCL on the device's stream. A process started without a launcher is a
 * job of one: every collective is a local no-op or copy, and MPI is never initialised.
 *
 * Reductions of floats are deterministic: a rank's part of a reduce-scatter is the sum over ranks in the fixed tree
 * of kernels/rank_sum.h (it depends on the number of ranks only, never on timing, topology or the library), so the
 * same job gives the same bits run after run, and a sum over ranks equals the same tree over one process's shards
 * (distributed/dp.h). drl_comm_allreduce_fast is the library's own all-reduce, for when speed matters more.
 *
 * No collective blocks forever: each one waits at most timeout_s for its peers and then fails with DRL_ERR_MPI or
 * DRL_ERR_NCCL naming the collective, the rank and the timeout, so a dead or hung peer becomes an error on every
 * surviving rank. After such an error the job cannot continue: call drl_comm_abort. */
#ifndef DRL_COMM_H
#define DRL_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_comm_impl drl_comm_impl;

typedef struct drl_comm {
  int rank, size;             /* in the job */
  int local_rank, local_size; /* on this node: the local rank picks the GPU */
  double timeout_s;           /* how long a collective waits for its peers */
  drl_device dev;             /* where the buffers of the device collectives live (CPU until attached) */
  uint64_t bytes_sent;        /* payload bytes this rank has sent in collectives (self-copies excluded) */
  drl_comm_impl *impl;        /* MPI communicator, NCCL communicator */
} drl_comm;

/* Nonzero when the environment says this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI or
 * PMIx). DYNRL_MPI=1 forces MPI on, DYNRL_MPI=0 off. */
int drl_comm_launched(void);

/* Joins the job: initialises MPI when launched (MPI_THREAD_FUNNELED), otherwise makes a job of one. timeout_s > 0.
 * A launched job in a build without MPI is DRL_ERR_UNSUPPORTED. */
drl_status drl_comm_init(drl_comm *c, double timeout_s);

/* Makes the device collectives use dev. For a CUDA device in a job of more than one rank this creates the NCCL
 * communicator (one GPU per rank); a build without NCCL is then DRL_ERR_UNSUPPORTED. */
drl_status drl_comm_attach_device(drl_comm *c, const drl_device *dev);

/* Leaves the job: frees the NCCL communicator and finalises MPI if drl_comm_init initialised it. Safe on a zeroed
 * comm. Every rank must call it (MPI_Finalize is collective). */
void drl_comm_finalize(drl_comm *c);

/* Ends every rank of the job with exit code `code` (MPI_Abort); in a job of one, does nothing and returns. For the
 * command line after an error, so that peers do not wait for a rank that has given up. */
void drl_comm_abort(drl_comm *c, int code);

/* ---- host buffers (every backend) ---- */

/* recv[r * bytes .. (r+1) * bytes) = rank r's send, for every r. */
drl_status drl_comm_allgather(drl_comm *c, const void *send, size_t bytes, void *recv);

/* Like drl_comm_allgather with rank r contributing counts[r] bytes (the same counts array on every rank); rank r's
 * bytes land at the sum of the counts before r. */
drl_status drl_comm_allgatherv(drl_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts);

/* Rank root's first `bytes` of recv receive everyone's send (counts[r] bytes from rank r, in rank order); recv is
 * ignored on the other ranks. */
drl_status drl_comm_gatherv(drl_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts, int root);

/* buf (bytes) on every rank = root's. */
drl_status drl_comm_bcast(drl_comm *c, void *buf, size_t bytes, int root);

/* Waits until every rank has arrived. */
drl_status drl_comm_barrier(drl_comm *c);

/* out[i] = sum over ranks of x[i], i < n, added in rank order in double (exact for counts); host arrays, out may
 * alias x. For statistics and loss normalisers. */
drl_status drl_comm_sum_f64(drl_comm *c, const double *x, double *out, int n);

/* ---- buffers on the attached device (NCCL for CUDA, MPI for the CPU) ----
 * A partition `bounds` [size + 1] (bounds[0] = 0, non-decreasing, bounds[size] = the buffer's length) assigns rank r
 * the elements [bounds[r], bounds[r+1]); every rank passes the same partition and the same range [lo, hi). */

/* After the call, the elements of [lo, hi) in rank r's part hold on rank r the tree sum over ranks of every rank's
 * values there; the rest of buf is unspecified. scratch holds scratch_floats floats on the device (the same count on
 * every rank, at least size): the range is exchanged in pieces of scratch_floats / size elements. */
drl_status drl_comm_reduce_scatter(drl_comm *c, float *buf, int64_t lo, int64_t hi, const int64_t *bounds,
                                   float *scratch, int64_t scratch_floats);

/* Every rank receives every other rank's part of [lo, hi) (its own part is the source). */
drl_status drl_comm_allgather_ranges(drl_comm *c, float *buf, int64_t lo, int64_t hi, const int64_t *bounds);

/* buf[0, n) = sum over ranks with the library's algorithm (MPI_Allreduce / ncclAllReduce): fast, but the rounding
 * depends on the library and the topology. */
drl_status drl_comm_allreduce_fast(drl_comm *c, float *buf, int64_t n);

/* Device buffer buf of `bytes` on every rank = root's. caller is the device (stream) that wrote buf and will read it:
 * the collective waits for its work before and it waits for the collective after, and the broadcast's completion is
 * awaited against timeout_s (drl_comm_sync). */
drl_status drl_comm_bcast_device(drl_comm *c, const drl_device *caller, void *buf, size_t bytes, int root);

/* Waits for the device collectives queued so far (on the CPU they are already done); fails after timeout_s. */
drl_status drl_comm_sync(drl_comm *c);

/* The partition of n elements into size parts of whole `align`-element chunks, as even as the chunks allow (the last
 * part takes the remainder): bounds [size + 1]. */
void drl_comm_even_bounds(int64_t n, int size, int64_t align, int64_t *bounds);

#ifdef __cplusplus
}
#endif
#endif /* DRL_COMM_H */
