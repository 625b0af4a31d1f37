/* Between comm.c (MPI and the job of one) and comm_nccl.c (device buffers on CUDA). */
#ifndef DRL_COMM_INTERNAL_H
#define DRL_COMM_INTERNAL_H

#include "distributed/comm.h"

#ifdef DRL_HAVE_MPI
#include <mpi.h>
#endif

struct drl_comm_impl {
#ifdef DRL_HAVE_MPI
  MPI_Comm mpi;  /* a duplicate of MPI_COMM_WORLD whose errors return */
#endif
  int has_mpi;   /* mpi is valid */
  int mpi_owned; /* drl_comm_init initialised MPI, so finalize ends it */
  void *nccl;    /* ncclComm_t once a CUDA device is attached (size > 1) */
};

/* Pieces of one device exchange: rank r sends count[r] floats from base + displ[r] (or receives them there). */
typedef struct drl_comm_pieces {
  const int64_t *count, *displ; /* [size] */
} drl_comm_pieces;

/* NCCL on c->dev's stream (comm_nccl.c; DRL_ERR_UNSUPPORTED stubs without NCCL). Every call waits at most
 * c->timeout_s for the communicator to accept it. A communicator is created from one unique id, made by rank 0 and
 * broadcast by the caller (comm.c) to every rank. */
#define DRL_NCCL_ID_BYTES 128
drl_status drl_comm_nccl_unique_id(unsigned char id[DRL_NCCL_ID_BYTES]);
drl_status drl_comm_nccl_create(drl_comm *c, const unsigned char id[DRL_NCCL_ID_BYTES]);
void drl_comm_nccl_destroy(drl_comm *c);
void drl_comm_nccl_abort(drl_comm *c);
/* Sends send's piece r to rank r and receives rank r's piece into recv's piece r, for every r (self included). */
drl_status drl_comm_nccl_exchange(drl_comm *c, const float *send, const drl_comm_pieces *sp, float *recv,
                                  const drl_comm_pieces *rp);
drl_status drl_comm_nccl_allreduce(drl_comm *c, float *buf, int64_t n);
drl_status drl_comm_nccl_bcast(drl_comm *c, void *buf, size_t bytes, int root);
/* Waits for the stream, watching the communicator for asynchronous errors; aborts it after the timeout. */
drl_status drl_comm_nccl_sync(drl_comm *c);

#endif /* DRL_COMM_INTERNAL_H */
