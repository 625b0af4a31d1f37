/* Step time and communication of data-parallel AdamW and one-byte SPSA at this job's rank count (run it under
 * mpirun -np R; started alone it is R = 1). The default policy (~1M parameters) on `add`, SFT, through the trainer:
 *   adamw       the global batch of sft.batch_size split over the ranks, gradients summed in the fixed rank tree
 *               (reduce-scatter + all-gather of the flat buffer), AdamW replicated
 *   adamw+zero  the same with ZeRO-1: reduce-scatter, AdamW on the rank's part, all-gather of the parameters
 *   spsa        one-byte SPSA with G = 1 perturbation per rank, each on a batch of sft.batch_size of its own
 * Per mode: the median step time (rank 0's step_seconds metric), the bytes this rank sent per step (the comm layer's
 * count, as the difference of a long and a short run, so setup and the final checkpoint cancel), the payload per rank
 * per step, and the optimizer state per rank.
 *
 * Options: --device cpu|cuda (run.device; ranks of a node take consecutive GPUs), --threads N (CPU threads per rank;
 * default 1, as ranks share the cores), --steps N (timed run, default 30), --csv FILE (appends "ranks,threads,mode,params,ms_per_step,bytes_per_step,payload_per_step,optim_bytes"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "data/h5.h"
#include "distributed/comm.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/trainer.h"
#include "kernels/reduce.h"

static drl_comm comm;

static void die(const char *what) {
  fprintf(stderr, "bench_dist (rank %d): %s: %s\n", comm.rank, what, drl_last_error());
  drl_comm_abort(&comm, 1);
  exit(1);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of /metrics/step_seconds over rows [skip, n) of a run's metrics file. */
static double median_step(const char *dir, int skip) {
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.h5", dir);
  drl_h5_file f;
  if (drl_h5_open_read(path, &f) != DRL_OK) die("metrics");
  int64_t shape[1] = {0};
  void *data = NULL;
  if (drl_h5_read_array(&f, "/metrics/step_seconds", DRL_H5_FLOAT64, 1, shape, 1 << 20, &data) != DRL_OK)
    die("step_seconds");
  drl_h5_close(&f);
  double *v = (double *)data + skip;
  int64_t n = shape[0] - skip;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double m = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  free(data);
  return m;
}

/* Trains `steps` SFT steps in mode; returns the bytes this rank sent. */
static const char *device = "cpu";

static uint64_t train(const char *mode, int steps, int threads, const char *dir, int64_t *params, int64_t *optim) {
  drl_config cfg;
  if (drl_config_load_default(&cfg) != DRL_OK) die("config");
  char kv[512];
  const char *sets[] = {"trainer.phases=sft", "data.n_train=4000", "data.n_eval=0", "trainer.eval_every=0",
                        "trainer.ckpt_every=0", "run.quiet=true", "spsa.hash_every=0", "spsa.lr=0.001"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; ++i)
    if (drl_config_set(&cfg, sets[i]) != DRL_OK) die(sets[i]);
  snprintf(kv, sizeof kv, "sft.steps=%d", steps);
  if (drl_config_set(&cfg, kv) != DRL_OK) die(kv);
  snprintf(kv, sizeof kv, "run.threads=%d", threads);
  if (drl_config_set(&cfg, kv) != DRL_OK) die(kv);
  snprintf(kv, sizeof kv, "run.out_dir=%s", dir);
  if (drl_config_set(&cfg, kv) != DRL_OK) die(kv);
  snprintf(kv, sizeof kv, "run.device=%s", device);
  if (drl_config_set(&cfg, kv) != DRL_OK) die(kv);
  if (strcmp(mode, "adamw+zero") == 0 && drl_config_set(&cfg, "dist.zero=true") != DRL_OK) die("zero");
  if (strcmp(mode, "spsa") == 0 && drl_config_set(&cfg, "optim.name=spsa") != DRL_OK) die("spsa");
  drl_log_setup(DRL_LOG_ERROR, 1, comm.rank);
  uint64_t before = comm.bytes_sent;
  drl_train_summary sum;
  if (drl_train(&cfg, &comm, &sum) != DRL_OK) die(mode);
  /* What the policy holds: parameters, and the AdamW moments of this rank's part (none are used by SPSA). */
  int64_t n = 0;
  {
    char path[4200];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    drl_h5_file f;
    if (comm.rank == 0 && drl_h5_open_read(path, &f) == DRL_OK) {
      int64_t shape[1] = {0};
      void *data = NULL;
      if (drl_h5_read_array(&f, "/model/params", DRL_H5_FLOAT32, 1, shape, (int64_t)1 << 40, &data) == DRL_OK)
        n = shape[0];
      free(data);
      drl_h5_close(&f);
    }
  }
  *params = n;
  /* ZeRO parts are whole reduce chunks spread as evenly as they allow (distributed/dp.h): the largest is quoted. */
  int64_t part = n;
  if (strcmp(mode, "adamw+zero") == 0) {
    int64_t *b = (int64_t *)malloc((size_t)(comm.size + 1) * sizeof(int64_t));
    if (!b) die("bounds");
    drl_comm_even_bounds(n, comm.size, DRL_REDUCE_CHUNK, b);
    part = 0;
    for (int r = 0; r < comm.size; ++r) part = b[r + 1] - b[r] > part ? b[r + 1] - b[r] : part;
    free(b);
  }
  *optim = strcmp(mode, "spsa") == 0 ? 0 : 2 * part * (int64_t)sizeof(float);
  return comm.bytes_sent - before;
}

int main(int argc, char **argv) {
  int threads = 1, steps = 30;
  const char *csv = NULL;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
      steps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
      csv = argv[++i];
    else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
      device = argv[++i];
    else {
      fprintf(stderr, "usage: [mpirun -np R] bench_dist [--device cpu|cuda] [--threads N] [--steps N] [--csv FILE]\n");
      return 2;
    }
  }
  if (drl_comm_init(&comm, 600.0) != DRL_OK) die("joining the job");
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/bench_dist_%d", (int)getpid());
  /* Every rank uses rank 0's directory name (only rank 0 writes there). */
  if (drl_comm_bcast(&comm, dir, sizeof dir, 0) != DRL_OK) die("bcast");
  const char *modes[] = {"adamw", "adamw+zero", "spsa"};
  if (comm.rank == 0)
    printf("| ranks | threads/rank | mode | ms/step | bytes sent/rank/step | payload/rank/step | optimizer state/rank |\n"
           "|---|---|---|---|---|---|---|\n");
  for (int m = 0; m < 3; ++m) {
    int64_t params = 0, optim = 0;
    int short_steps = 5;
    uint64_t b_short = train(modes[m], short_steps, threads, dir, &params, &optim);
    uint64_t b_long = train(modes[m], steps, threads, dir, &params, &optim);
    double per_step = (double)(b_long - b_short) / (double)(steps - short_steps);
    if (comm.rank != 0) continue;
    double ms = 1e3 * median_step(dir, 3);
    double payload = strcmp(modes[m], "spsa") == 0 ? 1.0 : (comm.size > 1 ? 4.0 * (double)params : 0.0);
    printf("| %d | %d | %s | %.1f | %.0f | %.0f | %lld |\n", comm.size, threads, modes[m], ms, per_step, payload,
           (long long)optim);
    if (csv) {
      FILE *f = fopen(csv, "a");
      if (!f) die("csv");
      fprintf(f, "%d,%d,%s,%lld,%.2f,%.0f,%.0f,%lld\n", comm.size, threads, modes[m], (long long)params, ms, per_step,
              payload, (long long)optim);
      fclose(f);
    }
  }
  drl_comm_finalize(&comm);
  return 0;
}
