/* Collectives: MPI on host buffers (and on the CPU backend's device buffers), NCCL on CUDA buffers (comm_nccl.c),
 * local copies in a job of one. MPI calls are nonblocking and polled against a deadline, so a dead or hung peer is
 * an error, not a hang. */
#define _POSIX_C_SOURCE 200809L
#include "comm_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/check.h"
#include "kernels/nvtx.h"
#include "kernels/rank_sum.h"

/* Largest piece one MPI call moves (its counts are ints). */
#define MAX_PIECE ((int64_t)1 << 30)


static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int drl_comm_launched(void) {
  const char *force = getenv("DYNRL_MPI");
  if (force && *force) return strcmp(force, "0") != 0;
  /* Open MPI, MPICH / Slurm PMI, PMIx (srun --mpi=pmix), Hydra, MVAPICH. */
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS",
                                     "MV2_COMM_WORLD_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; ++i)
    if (getenv(vars[i])) return 1;
  return 0;
}

#ifdef DRL_HAVE_MPI
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Polls req until it completes or timeout_s passes. Spins briefly (small collectives answer fast), then sleeps
 * between polls so that ranks sharing cores leave them to the peers they wait for. */
static drl_status mpi_wait(drl_comm *c, MPI_Request *req, const char *what) {
  double deadline = now() + c->timeout_s;
  for (unsigned spin = 0;; ++spin) {
    int done = 0;
    MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
    if (done) return DRL_OK;
    if (spin < 64) continue;
    if (now() > deadline)
      return DRL_FAIL(DRL_ERR_MPI,
                      "rank %d of %d: %s got no answer from its peers for %g s (dist.timeout_s): a rank has died or "
                      "hung",
                      c->rank, c->size, what, c->timeout_s);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
}

static drl_status mpi_join(drl_comm *c) {
  int inited = 0;
  MPI_CHECK(MPI_Initialized(&inited));
  if (!inited) {
    int provided = 0;
    int e = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (e != MPI_SUCCESS) return DRL_FAIL(DRL_ERR_MPI, "MPI_Init_thread failed (error %d)", e);
    c->impl->mpi_owned = 1;
  }
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c->impl->mpi));
  c->impl->has_mpi = 1;
  MPI_CHECK(MPI_Comm_rank(c->impl->mpi, &c->rank));
  MPI_CHECK(MPI_Comm_size(c->impl->mpi, &c->size));
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(c->impl->mpi, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
  int e1 = MPI_Comm_rank(node, &c->local_rank), e2 = MPI_Comm_size(node, &c->local_size);
  MPI_Comm_free(&node);
  MPI_CHECK(e1);
  MPI_CHECK(e2);
  return DRL_OK;
}
#endif

drl_status drl_comm_init(drl_comm *c, double timeout_s) {
  memset(c, 0, sizeof *c);
  if (!(timeout_s > 0)) return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_comm_init: timeout %g s must be positive", timeout_s);
  c->timeout_s = timeout_s;
  c->size = c->local_size = 1;
  c->impl = (drl_comm_impl *)calloc(1, sizeof *c->impl);
  if (!c->impl) return DRL_FAIL(DRL_ERR_OOM, "out of memory for a communicator");
  DRL_TRY(drl_device_open(&c->dev, DRL_BACKEND_CPU, 0));
  if (!drl_comm_launched()) return DRL_OK;
#ifdef DRL_HAVE_MPI
  drl_status st = mpi_join(c);
  if (st != DRL_OK) drl_comm_finalize(c);
  return st;
#else
  free(c->impl);
  c->impl = NULL;
  return DRL_FAIL(DRL_ERR_UNSUPPORTED,
                  "started by an MPI launcher, but this dynrl was built without MPI (configure with -DDYNRL_MPI=ON)");
#endif
}

drl_status drl_comm_attach_device(drl_comm *c, const drl_device *dev) {
  if (c->impl && c->impl->nccl) drl_comm_nccl_destroy(c);
  c->dev = *dev;
  if (dev->backend != DRL_BACKEND_CUDA || c->size == 1) return DRL_OK;
  unsigned char id[DRL_NCCL_ID_BYTES];
  if (c->rank == 0) DRL_TRY(drl_comm_nccl_unique_id(id));
  DRL_TRY(drl_comm_bcast(c, id, sizeof id, 0));
  return drl_comm_nccl_create(c, id);
}

void drl_comm_finalize(drl_comm *c) {
  if (!c || !c->impl) return;
  if (c->impl->nccl) drl_comm_nccl_destroy(c);
#ifdef DRL_HAVE_MPI
  if (c->impl->has_mpi) MPI_Comm_free(&c->impl->mpi);
  int finalized = 1;
  if (c->impl->mpi_owned && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
#endif
  free(c->impl);
  memset(c, 0, sizeof *c);
}

void drl_comm_abort(drl_comm *c, int code) {
  if (!c || !c->impl || c->size == 1) return;
  if (c->impl->nccl) drl_comm_nccl_abort(c);
#ifdef DRL_HAVE_MPI
  MPI_Abort(c->impl->mpi, code);
#else
  (void)code;
#endif
}

/* ---- host buffers ---- */

static drl_status need_mpi(const drl_comm *c, const char *what) {
  if (c->impl->has_mpi) return DRL_OK;
  return DRL_FAIL(DRL_ERR_INTERNAL, "%s: a job of %d ranks without an MPI communicator", what, c->size);
}

static drl_status check_int(size_t n, const char *what) {
  if (n > (size_t)INT_MAX) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: %zu bytes is more than one call moves", what, n);
  return DRL_OK;
}

drl_status drl_comm_allgather(drl_comm *c, const void *send, size_t bytes, void *recv) {
  DRL_RANGE("all_gather");
  if (c->size == 1) {
    if (bytes) memmove(recv, send, bytes);
    return DRL_OK;
  }
  DRL_TRY(need_mpi(c, "all_gather"));
  DRL_TRY(check_int(bytes, "all_gather"));
#ifdef DRL_HAVE_MPI
  MPI_Request req;
  MPI_CHECK(MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->impl->mpi, &req));
  c->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
  return mpi_wait(c, &req, "all_gather");
#endif
  return DRL_OK;
}

drl_status drl_comm_allgatherv(drl_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts) {
  DRL_RANGE("all_gather");
  if (counts[c->rank] != bytes)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "all_gatherv: rank %d sends %zu bytes, counts says %zu", c->rank, bytes,
                    counts[c->rank]);
  if (c->size == 1) {
    if (bytes) memmove(recv, send, bytes);
    return DRL_OK;
  }
  DRL_TRY(need_mpi(c, "all_gatherv"));
#ifdef DRL_HAVE_MPI
  int *cnt = (int *)malloc(2 * (size_t)c->size * sizeof(int));
  if (!cnt) return DRL_FAIL(DRL_ERR_OOM, "out of memory for all_gatherv counts");
  int *displ = cnt + c->size;
  size_t total = 0;
  for (int r = 0; r < c->size; ++r) {
    cnt[r] = (int)counts[r];
    displ[r] = (int)total;
    total += counts[r];
  }
  drl_status st = check_int(total, "all_gatherv");
  MPI_Request req;
  if (st == DRL_OK) {
    int e = MPI_Iallgatherv(send, (int)bytes, MPI_BYTE, recv, cnt, displ, MPI_BYTE, c->impl->mpi, &req);
    st = e == MPI_SUCCESS ? mpi_wait(c, &req, "all_gatherv") : DRL_FAIL(DRL_ERR_MPI, "MPI_Iallgatherv: error %d", e);
  }
  c->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
  free(cnt);
  return st;
#endif
  return DRL_OK;
}

drl_status drl_comm_gatherv(drl_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts, int root) {
  DRL_RANGE("gather");
  if (root < 0 || root >= c->size) return DRL_FAIL(DRL_ERR_INVALID_ARG, "gather: root %d of %d", root, c->size);
  if (counts[c->rank] != bytes)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "gatherv: rank %d sends %zu bytes, counts says %zu", c->rank, bytes,
                    counts[c->rank]);
  size_t at = 0;
  for (int r = 0; r < c->rank; ++r) at += counts[r];
  if (c->rank == root && bytes) memmove((char *)recv + at, send, bytes);
  if (c->size == 1) return DRL_OK;
  DRL_TRY(need_mpi(c, "gather"));
#ifdef DRL_HAVE_MPI
  /* Point to point in pieces: no count or displacement limit (checkpoints gather whole optimizer states). */
  size_t displ = 0;
  for (int r = 0; r < c->size; ++r) {
    if (r != root && (c->rank == r || c->rank == root)) {
      for (size_t off = 0; off < counts[r]; off += (size_t)MAX_PIECE) {
        size_t len = counts[r] - off < (size_t)MAX_PIECE ? counts[r] - off : (size_t)MAX_PIECE;
        MPI_Request req;
        if (c->rank == root)
          MPI_CHECK(MPI_Irecv((char *)recv + displ + off, (int)len, MPI_BYTE, r, 7001, c->impl->mpi, &req));
        else
          MPI_CHECK(MPI_Isend((const char *)send + off, (int)len, MPI_BYTE, root, 7001, c->impl->mpi, &req));
        DRL_TRY(mpi_wait(c, &req, "gather"));
      }
      if (c->rank == r) c->bytes_sent += counts[r];
    }
    displ += counts[r];
  }
#endif
  return DRL_OK;
}

drl_status drl_comm_bcast(drl_comm *c, void *buf, size_t bytes, int root) {
  DRL_RANGE("broadcast");
  if (root < 0 || root >= c->size) return DRL_FAIL(DRL_ERR_INVALID_ARG, "broadcast: root %d of %d", root, c->size);
  if (c->size == 1) return DRL_OK;
  DRL_TRY(need_mpi(c, "broadcast"));
#ifdef DRL_HAVE_MPI
  for (size_t off = 0; off < bytes; off += (size_t)MAX_PIECE) {
    size_t len = bytes - off < (size_t)MAX_PIECE ? bytes - off : (size_t)MAX_PIECE;
    MPI_Request req;
    MPI_CHECK(MPI_Ibcast((char *)buf + off, (int)len, MPI_BYTE, root, c->impl->mpi, &req));
    DRL_TRY(mpi_wait(c, &req, "broadcast"));
  }
  if (c->rank == root) c->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
#else
  (void)buf; /* a job of one: nothing to send */
  (void)bytes;
#endif
  return DRL_OK;
}

drl_status drl_comm_barrier(drl_comm *c) {
  DRL_RANGE("barrier");
  if (c->size == 1) return DRL_OK;
  DRL_TRY(need_mpi(c, "barrier"));
#ifdef DRL_HAVE_MPI
  MPI_Request req;
  MPI_CHECK(MPI_Ibarrier(c->impl->mpi, &req));
  return mpi_wait(c, &req, "barrier");
#endif
  return DRL_OK;
}

drl_status drl_comm_sum_f64(drl_comm *c, const double *x, double *out, int n) {
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "sum_f64: negative count %d", n);
  if (c->size == 1) {
    if (n) memmove(out, x, (size_t)n * sizeof(double));
    return DRL_OK;
  }
  double *all = (double *)malloc((size_t)c->size * (size_t)(n ? n : 1) * sizeof(double));
  if (!all) return DRL_FAIL(DRL_ERR_OOM, "out of memory for sum_f64 of %d values", n);
  drl_status st = drl_comm_allgather(c, x, (size_t)n * sizeof(double), all);
  for (int i = 0; st == DRL_OK && i < n; ++i) {
    double s = 0.0;
    for (int r = 0; r < c->size; ++r) s += all[(size_t)r * n + i];
    out[i] = s;
  }
  free(all);
  return st;
}

/* ---- device buffers ---- */

static drl_status check_bounds(const drl_comm *c, int64_t lo, int64_t hi, const int64_t *bounds, const char *what) {
  if (lo < 0 || lo > hi || bounds[0] != 0 || hi > bounds[c->size])
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: range [%lld, %lld) outside the partition of %lld elements", what,
                    (long long)lo, (long long)hi, (long long)bounds[c->size]);
  for (int r = 0; r < c->size; ++r)
    if (bounds[r + 1] < bounds[r]) return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: partition decreases at rank %d", what, r);
  return DRL_OK;
}

/* The piece of [a, b) in rank r's part: its length, and its start relative to a (0 when empty). */
static int64_t piece(const int64_t *bounds, int r, int64_t a, int64_t b, int64_t *start) {
  int64_t s = max64(a, bounds[r]), e = min64(b, bounds[r + 1]);
  *start = e > s ? s - a : 0;
  return e > s ? e - s : 0;
}

/* Sends base's piece r to rank r and receives rank r's piece into recv's piece r, for every r. */
static drl_status exchange(drl_comm *c, const float *send, const drl_comm_pieces *sp, float *recv,
                           const drl_comm_pieces *rp) {
  for (int r = 0; r < c->size; ++r)
    if (r != c->rank) c->bytes_sent += (uint64_t)sp->count[r] * sizeof(float);
  if (c->dev.backend == DRL_BACKEND_CUDA) return drl_comm_nccl_exchange(c, send, sp, recv, rp);
  DRL_TRY(need_mpi(c, "reduce_scatter"));
#ifdef DRL_HAVE_MPI
  int *v = (int *)malloc(4 * (size_t)c->size * sizeof(int));
  if (!v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for an exchange's counts");
  for (int r = 0; r < c->size; ++r) {
    v[r] = (int)sp->count[r];
    v[c->size + r] = (int)sp->displ[r];
    v[2 * c->size + r] = (int)rp->count[r];
    v[3 * c->size + r] = (int)rp->displ[r];
  }
  MPI_Request req;
  int e = MPI_Ialltoallv(send, v, v + c->size, MPI_FLOAT, recv, v + 2 * c->size, v + 3 * c->size, MPI_FLOAT,
                         c->impl->mpi, &req);
  drl_status st = e == MPI_SUCCESS ? mpi_wait(c, &req, "reduce_scatter")
                                   : DRL_FAIL(DRL_ERR_MPI, "MPI_Ialltoallv: error %d", e);
  free(v);
  return st;
#endif
  return DRL_OK;
}

drl_status drl_comm_reduce_scatter(drl_comm *c, float *buf, int64_t lo, int64_t hi, const int64_t *bounds,
                                   float *scratch, int64_t scratch_floats) {
  DRL_RANGE("reduce_scatter");
  DRL_TRY(check_bounds(c, lo, hi, bounds, "reduce_scatter"));
  if (c->size == 1 || lo == hi) return DRL_OK;
  if (scratch_floats < c->size)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "reduce_scatter: %lld floats of scratch for %d ranks",
                    (long long)scratch_floats, c->size);
  int64_t len = min64(scratch_floats, MAX_PIECE) / c->size; /* every rank computes the same pieces */
  int64_t *v = (int64_t *)malloc(4 * (size_t)c->size * sizeof(int64_t));
  if (!v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for reduce_scatter counts");
  drl_comm_pieces sp = {v, v + c->size}, rp = {v + 2 * c->size, v + 3 * c->size};
  drl_status st = DRL_OK;
  for (int64_t a = lo; st == DRL_OK && a < hi; a += len) {
    int64_t b = min64(a + len, hi), mine_at = 0;
    for (int r = 0; r < c->size; ++r) v[r] = piece(bounds, r, a, b, &v[c->size + r]);
    int64_t mine = piece(bounds, c->rank, a, b, &mine_at);
    for (int r = 0; r < c->size; ++r) {
      v[2 * c->size + r] = mine;
      v[3 * c->size + r] = (int64_t)r * mine;
    }
    st = exchange(c, buf + a, &sp, scratch, &rp);
    if (st == DRL_OK && mine) st = drl_rank_sum(&c->dev, buf + a + mine_at, scratch, c->size, mine);
  }
  free(v);
  return st;
}

drl_status drl_comm_allgather_ranges(drl_comm *c, float *buf, int64_t lo, int64_t hi, const int64_t *bounds) {
  DRL_RANGE("all_gather");
  DRL_TRY(check_bounds(c, lo, hi, bounds, "all_gather_ranges"));
  if (c->size == 1 || lo == hi) return DRL_OK;
  int64_t *v = (int64_t *)malloc(4 * (size_t)c->size * sizeof(int64_t));
  if (!v) return DRL_FAIL(DRL_ERR_OOM, "out of memory for all_gather counts");
  drl_status st = DRL_OK;
  for (int64_t a = lo; st == DRL_OK && a < hi; a += MAX_PIECE) {
    int64_t b = min64(a + MAX_PIECE, hi);
    int64_t *cnt = v, *displ = v + c->size, mine_at = 0;
    for (int r = 0; r < c->size; ++r) cnt[r] = piece(bounds, r, a, b, &displ[r]);
    int64_t mine = piece(bounds, c->rank, a, b, &mine_at);
    c->bytes_sent += (uint64_t)mine * sizeof(float) * (uint64_t)(c->size - 1);
    if (c->dev.backend == DRL_BACKEND_CUDA) {
      /* Send the own piece to every peer; receive each peer's piece in place (no self copy). */
      int64_t *scnt = v + 2 * c->size, *sdispl = v + 3 * c->size;
      for (int r = 0; r < c->size; ++r) {
        scnt[r] = r == c->rank ? 0 : mine;
        sdispl[r] = mine_at;
      }
      int64_t keep = cnt[c->rank];
      cnt[c->rank] = 0;
      drl_comm_pieces sp = {scnt, sdispl}, rp = {cnt, displ};
      st = drl_comm_nccl_exchange(c, buf + a, &sp, buf + a, &rp);
      cnt[c->rank] = keep;
      continue;
    }
    st = need_mpi(c, "all_gather_ranges");
#ifdef DRL_HAVE_MPI
    if (st != DRL_OK) break;
    int *iv = (int *)malloc(2 * (size_t)c->size * sizeof(int));
    if (!iv) {
      st = DRL_FAIL(DRL_ERR_OOM, "out of memory for all_gather counts");
      break;
    }
    for (int r = 0; r < c->size; ++r) {
      iv[r] = (int)cnt[r];
      iv[c->size + r] = (int)displ[r];
    }
    MPI_Request req;
    int e = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf + a, iv, iv + c->size, MPI_FLOAT, c->impl->mpi,
                            &req);
    st = e == MPI_SUCCESS ? mpi_wait(c, &req, "all_gather") : DRL_FAIL(DRL_ERR_MPI, "MPI_Iallgatherv: error %d", e);
    free(iv);
#endif
  }
  free(v);
  return st;
}

drl_status drl_comm_allreduce_fast(drl_comm *c, float *buf, int64_t n) {
  DRL_RANGE("all_reduce");
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "all_reduce: negative length %lld", (long long)n);
  if (c->size == 1 || n == 0) return DRL_OK;
  /* A ring all-reduce sends 2 (size - 1) / size of the buffer from every rank. */
  c->bytes_sent += (uint64_t)(2.0 * (double)(c->size - 1) / c->size * (double)n * sizeof(float));
  if (c->dev.backend == DRL_BACKEND_CUDA) return drl_comm_nccl_allreduce(c, buf, n);
  DRL_TRY(need_mpi(c, "all_reduce"));
#ifdef DRL_HAVE_MPI
  for (int64_t a = 0; a < n; a += MAX_PIECE) {
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + a, (int)min64(MAX_PIECE, n - a), MPI_FLOAT, MPI_SUM, c->impl->mpi,
                             &req));
    DRL_TRY(mpi_wait(c, &req, "all_reduce"));
  }
#endif
  return DRL_OK;
}

drl_status drl_comm_bcast_device(drl_comm *c, const drl_device *caller, void *buf, size_t bytes, int root) {
  if (c->dev.backend == DRL_BACKEND_CUDA && c->size > 1) {
    if (root < 0 || root >= c->size) return DRL_FAIL(DRL_ERR_INVALID_ARG, "broadcast: root %d of %d", root, c->size);
    if (c->rank == root) c->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
    /* The communicator's stream is not the caller's: the broadcast starts after the caller's writes to buf, the
     * caller's next reads start after it, and a peer that never answers fails it at timeout_s. */
    DRL_TRY(drl_device_wait(&c->dev, caller));
    DRL_TRY(drl_comm_nccl_bcast(c, buf, bytes, root));
    DRL_TRY(drl_comm_sync(c));
    return drl_device_wait(caller, &c->dev);
  }
  return drl_comm_bcast(c, buf, bytes, root);
}

drl_status drl_comm_sync(drl_comm *c) {
  if (c->dev.backend != DRL_BACKEND_CUDA) return DRL_OK;
  if (c->impl && c->impl->nccl) return drl_comm_nccl_sync(c);
  return drl_device_sync(&c->dev);
}

void drl_comm_even_bounds(int64_t n, int size, int64_t align, int64_t *bounds) {
  if (align < 1) align = 1;
  int64_t chunks = (n + align - 1) / align;
  for (int r = 0; r <= size; ++r) bounds[r] = min64(n, (chunks * r / size) * align);
  bounds[size] = n;
}
