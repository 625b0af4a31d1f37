/* NCCL for collectives on CUDA buffers. The communicator is nonblocking (config.blocking = 0): every call returns at
 * once and is polled against the comm's timeout, and a wait that runs out aborts the communicator, so a dead peer
 * never hangs a rank. Everything runs on the attached device's stream, ordered with the kernels around it. */
#define _POSIX_C_SOURCE 200809L
#include "comm_internal.h"

#include <string.h>
#include <time.h>

#ifdef DRL_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/check.h"

#define NCCL(c) ((ncclComm_t)(c)->impl->nccl)
#define STREAM(c) ((cudaStream_t)(c)->dev.stream)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_briefly(void) {
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}

static drl_status timed_out(drl_comm *c, const char *what) {
  ncclCommAbort(NCCL(c));
  c->impl->nccl = NULL;
  return DRL_FAIL(DRL_ERR_NCCL,
                  "rank %d of %d: %s got no answer from its peers for %g s (dist.timeout_s): a rank has died or hung",
                  c->rank, c->size, what, c->timeout_s);
}

/* Turns the result of a nonblocking call into a status, waiting while the communicator reports it in progress. */
static drl_status settle(drl_comm *c, ncclResult_t r, const char *what) {
  double deadline = now() + c->timeout_s;
  while (r == ncclInProgress) {
    if (now() > deadline) return timed_out(c, what);
    pause_briefly();
    ncclResult_t q = ncclCommGetAsyncError(NCCL(c), &r);
    if (q != ncclSuccess) r = q;
  }
  if (r != ncclSuccess)
    return DRL_FAIL(DRL_ERR_NCCL, "%s: %s (%s)", what, ncclGetErrorString(r), ncclGetLastError(NCCL(c)));
  return DRL_OK;
}

_Static_assert(sizeof(ncclUniqueId) == DRL_NCCL_ID_BYTES, "the broadcast id is NCCL's");

drl_status drl_comm_nccl_unique_id(unsigned char id[DRL_NCCL_ID_BYTES]) {
  ncclUniqueId u;
  NCCL_CHECK(ncclGetUniqueId(&u));
  memcpy(id, &u, sizeof u);
  return DRL_OK;
}

drl_status drl_comm_nccl_create(drl_comm *c, const unsigned char id_bytes[DRL_NCCL_ID_BYTES]) {
  ncclUniqueId id;
  memcpy(&id, id_bytes, sizeof id);
  CUDA_CHECK(cudaSetDevice(c->dev.index));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = NULL;
  ncclResult_t r = ncclCommInitRankConfig(&comm, c->size, id, c->rank, &config);
  if (r != ncclSuccess && r != ncclInProgress)
    return DRL_FAIL(DRL_ERR_NCCL, "ncclCommInitRankConfig (rank %d of %d): %s", c->rank, c->size,
                    ncclGetErrorString(r));
  c->impl->nccl = comm;
  drl_status st = settle(c, r, "ncclCommInitRankConfig");
  if (st != DRL_OK && c->impl->nccl) {
    ncclCommAbort(comm);
    c->impl->nccl = NULL;
  }
  return st;
}

void drl_comm_nccl_destroy(drl_comm *c) {
  if (!c->impl->nccl) return;
  if (settle(c, ncclCommFinalize(NCCL(c)), "ncclCommFinalize") == DRL_OK && c->impl->nccl)
    ncclCommDestroy(NCCL(c));
  else if (c->impl->nccl)
    ncclCommAbort(NCCL(c));
  c->impl->nccl = NULL;
}

void drl_comm_nccl_abort(drl_comm *c) {
  if (c->impl->nccl) ncclCommAbort(NCCL(c));
  c->impl->nccl = NULL;
}

static drl_status need_comm(const drl_comm *c) {
  if (c->impl && c->impl->nccl) return DRL_OK;
  return DRL_FAIL(DRL_ERR_NCCL, "rank %d: no NCCL communicator (attach a CUDA device first, or it was aborted)",
                  c->rank);
}

drl_status drl_comm_nccl_exchange(drl_comm *c, const float *send, const drl_comm_pieces *sp, float *recv,
                                  const drl_comm_pieces *rp) {
  DRL_TRY(need_comm(c));
  DRL_TRY(settle(c, ncclGroupStart(), "ncclGroupStart"));
  drl_status st = DRL_OK;
  for (int r = 0; st == DRL_OK && r < c->size; ++r) {
    if (sp->count[r])
      st = settle(c, ncclSend(send + sp->displ[r], (size_t)sp->count[r], ncclFloat, r, NCCL(c), STREAM(c)),
                  "ncclSend");
    if (st == DRL_OK && rp->count[r])
      st = settle(c, ncclRecv(recv + rp->displ[r], (size_t)rp->count[r], ncclFloat, r, NCCL(c), STREAM(c)),
                  "ncclRecv");
  }
  /* The group is closed on every path: an open one would defer every later NCCL call of this thread. The first
   * error is the one reported (a timed-out settle has aborted the communicator: nothing left to close). */
  if (!c->impl->nccl) return st;
  drl_status end = settle(c, ncclGroupEnd(), "ncclGroupEnd (exchange)");
  return st != DRL_OK ? st : end;
}

drl_status drl_comm_nccl_allreduce(drl_comm *c, float *buf, int64_t n) {
  DRL_TRY(need_comm(c));
  return settle(c, ncclAllReduce(buf, buf, (size_t)n, ncclFloat, ncclSum, NCCL(c), STREAM(c)), "ncclAllReduce");
}

drl_status drl_comm_nccl_bcast(drl_comm *c, void *buf, size_t bytes, int root) {
  DRL_TRY(need_comm(c));
  return settle(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root, NCCL(c), STREAM(c)), "ncclBroadcast");
}

drl_status drl_comm_nccl_sync(drl_comm *c) {
  DRL_TRY(need_comm(c));
  double deadline = now() + c->timeout_s;
  for (;;) {
    cudaError_t q = cudaStreamQuery(STREAM(c));
    if (q == cudaSuccess) return DRL_OK;
    if (q != cudaErrorNotReady) CUDA_CHECK(q);
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(NCCL(c), &async));
    if (async != ncclSuccess && async != ncclInProgress)
      return DRL_FAIL(DRL_ERR_NCCL, "rank %d: NCCL reported %s (%s)", c->rank, ncclGetErrorString(async),
                      ncclGetLastError(NCCL(c)));
    if (now() > deadline) return timed_out(c, "a device collective");
    pause_briefly();
  }
}

#else /* no NCCL: device collectives need a job of one */

static drl_status no_nccl(const drl_comm *c) {
  return DRL_FAIL(DRL_ERR_UNSUPPORTED,
                  "rank %d of %d: collectives on CUDA buffers need NCCL, and this dynrl was built without it", c->rank,
                  c->size);
}
drl_status drl_comm_nccl_unique_id(unsigned char id[DRL_NCCL_ID_BYTES]) {
  memset(id, 0, DRL_NCCL_ID_BYTES); /* drl_comm_nccl_create then says why on every rank */
  return DRL_OK;
}
drl_status drl_comm_nccl_create(drl_comm *c, const unsigned char id[DRL_NCCL_ID_BYTES]) {
  (void)id;
  return no_nccl(c);
}
void drl_comm_nccl_destroy(drl_comm *c) { (void)c; }
void drl_comm_nccl_abort(drl_comm *c) { (void)c; }
drl_status drl_comm_nccl_exchange(drl_comm *c, const float *send, const drl_comm_pieces *sp, float *recv,
                                  const drl_comm_pieces *rp) {
  (void)send, (void)sp, (void)recv, (void)rp;
  return no_nccl(c);
}
drl_status drl_comm_nccl_allreduce(drl_comm *c, float *buf, int64_t n) {
  (void)buf, (void)n;
  return no_nccl(c);
}
drl_status drl_comm_nccl_bcast(drl_comm *c, void *buf, size_t bytes, int root) {
  (void)buf, (void)bytes, (void)root;
  return no_nccl(c);
}
drl_status drl_comm_nccl_sync(drl_comm *c) { return no_nccl(c); }
#endif
