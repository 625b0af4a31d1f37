/* dynrl public C API: the only header a host trainer includes. */
#ifndef DYNRL_H
#define DYNRL_H

#ifdef __cplusplus
extern "C" {
#endif

#define DYNRL_VERSION_MAJOR 0
#define DYNRL_VERSION_MINOR 1
#define DYNRL_VERSION_PATCH 0
#define DYNRL_VERSION_STRING "0.1.0"

/* Every fallible call returns one of these; DRL_OK is zero. */
typedef enum drl_status {
  DRL_OK = 0,
  DRL_ERR_INVALID_ARG,  /* a caller passed something out of contract */
  DRL_ERR_CONFIG,       /* unknown key, wrong type or out-of-range value */
  DRL_ERR_IO,           /* open/read/write/rename/fsync failed */
  DRL_ERR_FORMAT,       /* a file's content is malformed or inconsistent */
  DRL_ERR_OOM,          /* an allocation failed */
  DRL_ERR_NO_DEVICE,    /* a GPU was requested and none is usable */
  DRL_ERR_CUDA,         /* CUDA runtime or cuBLAS failure */
  DRL_ERR_MPI,          /* MPI failure */
  DRL_ERR_NCCL,         /* NCCL failure */
  DRL_ERR_NUMERIC,      /* NaN/Inf where a finite value is required */
  DRL_ERR_UNSUPPORTED,  /* the build lacks the requested feature */
  DRL_ERR_INTERNAL      /* a broken invariant: a bug in dynrl */
} drl_status;

/* The message of the most recent failure on this thread ("" if none): "file:line: what happened". */
const char *drl_last_error(void);

/* A short name for a status ("DRL_ERR_IO"). */
const char *drl_status_name(drl_status s);

/* The library version as "MAJOR.MINOR.PATCH". */
const char *drl_version(void);

#ifdef __cplusplus
}
#endif
#endif /* DYNRL_H */
