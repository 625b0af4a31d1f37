/* The metrics file (DESIGN §9): /metrics/<name> float64 and /metrics/step int64, extendible chunked 1-D datasets with one
 * row per logged step, flushed every few rows and readable while training runs (HDF5 single-writer/multiple-reader:
 * h5py.File(path, "r", libver="latest", swmr=True)). The set of names is fixed when the file is opened: SWMR cannot
 * add datasets later. */
#ifndef DRL_METRICS_H
#define DRL_METRICS_H

#include <hdf5.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_METRICS_MAX 1024
#define DRL_METRIC_NAME_CAP 48

typedef struct drl_metrics {
  hid_t file;
  hid_t sets[DRL_METRICS_MAX + 1]; /* [0] = step */
  char names[DRL_METRICS_MAX][DRL_METRIC_NAME_CAP];
  int count;
  int64_t rows;        /* rows in the file */
  int flush_every;     /* rows between flushes */
  int unflushed;
  char path[4096];
  char moved_to[4096 + 32]; /* where drl_metrics_open moved an old file of other names ("" when it did not) */
} drl_metrics;

/* Opens path for appending rows of the n named metrics. When resume_step >= 0 and the file exists with the same
 * names, rows logged after resume_step are dropped (a resumed run rewrites them; the kept rows are rewritten into a
 * new file that replaces the old one atomically, which also recovers the file of a killed writer); an existing file
 * that cannot be read is an error and stays as it is; one with other names is moved to path.old (.old.1, ...) and a
 * new file started. Without resume_step (< 0) a new file replaces any old one. */
drl_status drl_metrics_open(drl_metrics *m, const char *path, const char *const *names, int n, int64_t resume_step,
                            int flush_every);

/* Appends one row: the step and the n values in the order of the names. */
drl_status drl_metrics_log(drl_metrics *m, int64_t step, const double *values);

/* Flushes rows to disk so readers see them. */
drl_status drl_metrics_flush(drl_metrics *m);

/* Flushes and closes; safe on a zeroed or closed m. */
void drl_metrics_close(drl_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* DRL_METRICS_H */
