/* rng_fill throughput: elements/s and GB/s for each distribution, against a device copy of the same size
 * (the memory-bandwidth reference, measured in the same run). */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "kernels/rng_fill.h"

static double time_best(const drl_device *dev, int reps, void *buf, void *src, uint64_t n, int dist) {
  double best = 1e30;
  drl_rng_stream s = {42, 1, drl_rng_tag(DRL_RNG_TEST, 0, 0)};
  for (int r = 0; r < reps; ++r) {
    double t0 = bench_now();
    drl_status st = dist < 0 ? drl_copy_on_device(dev, buf, src, n * 4) : drl_rng_fill(dev, buf, n, s, 0, dist);
    if (st == DRL_OK) st = drl_device_sync(dev);
    if (st != DRL_OK) {
      fprintf(stderr, "bench_rng: %s\n", drl_last_error());
      exit(1);
    }
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_rng", &args)) return 2;
  drl_device dev;
  if (drl_device_open(&dev, args.backend, 0) != DRL_OK) {
    fprintf(stderr, "bench_rng: %s\n", drl_last_error());
    return 1;
  }
  uint64_t n = args.quick ? (1u << 20) : (args.backend == DRL_BACKEND_CUDA ? (1u << 28) : (1u << 24));
  int reps = args.quick ? 2 : 5;
  void *buf = NULL, *src = NULL;
  if (drl_alloc(&dev, &buf, n * 4, "bench output") || drl_alloc(&dev, &src, n * 4, "bench source")) {
    fprintf(stderr, "bench_rng: %s\n", drl_last_error());
    return 1;
  }
  double copy = time_best(&dev, reps, buf, src, n, -1);
  double copy_gbs = 2.0 * (double)n * 4 / copy / 1e9; /* a copy reads and writes */
  char body[2048];
  int len = snprintf(body, sizeof body,
                     "%llu elements. Reference: device copy of the same size, %.1f GB/s (read + write).\n\n"
                     "| distribution | Gelem/s | write GB/s | vs copy bandwidth |\n|---|---|---|---|\n",
                     (unsigned long long)n, copy_gbs);
  const char *names[] = {"u32", "uniform", "rademacher", "normal"};
  for (int d = DRL_DIST_U32; d <= DRL_DIST_NORMAL; ++d) {
    double t = time_best(&dev, reps, buf, src, n, d);
    double gbs = (double)n * 4 / t / 1e9;
    len += snprintf(body + len, sizeof body - (size_t)len, "| %s | %.2f | %.1f | %.0f%% |\n", names[d],
                    (double)n / t / 1e9, gbs, 100.0 * gbs / copy_gbs);
  }
  drl_free(&dev, buf);
  drl_free(&dev, src);
  int rc = bench_emit(&args, "rng_fill (Philox4x32-10)", &dev, body);
  drl_device_close(&dev);
  return rc;
}
