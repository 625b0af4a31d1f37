/* Loading a pretrained checkpoint: the time to load a Hugging Face directory into fp32 parameters against the time to
 * read the same bytes, in the same run (each the best of 3, page cache warm), and the peak resident memory against
 * the fp32 parameters. bench/reference/hf_fixtures.py --scale DIR writes a random checkpoint of Qwen2.5-0.5B's
 * shapes in bf16; bench/hf_scale.sh runs this and one training step on it.
 *   bench_load --model DIR [--append docs/benchmarks.md] */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_common.h"
#include "engine/hf_model.h"

#define CHUNK ((size_t)64 << 20)

/* Reads every .safetensors file of dir once; returns the seconds and the bytes (sum of one byte per page, so the
 * reads cannot be optimised away). */
static double read_bytes(const char *dir, double *bytes, unsigned char *buf) {
  double t0 = bench_now(), n = 0;
  unsigned sink = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t len = strlen(e->d_name);
    if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    for (ssize_t got; (got = read(fd, buf, CHUNK)) > 0;) {
      n += (double)got;
      for (ssize_t i = 0; i < got; i += 4096) sink += buf[i];
    }
    close(fd);
  }
  closedir(d);
  *bytes = n + (double)(sink & 0); /* the sum is kept, its value is not */
  return bench_now() - t0;
}

static double load(const char *dir, int64_t *n_params) {
  double t0 = bench_now();
  drl_hf_source src;
  int found = 0;
  if (drl_hf_source_open(dir, &src, &found) != DRL_OK || found != 1) return -1;
  drl_layout lay;
  double t = -1;
  if (drl_transformer_layout(&src.cfg.model, &lay) == DRL_OK) {
    float *params = (float *)malloc((size_t)lay.total * sizeof(float));
    if (params && drl_hf_read_weights(dir, &lay, src.cfg.model.tied_embeddings, params) == DRL_OK) {
      t = bench_now() - t0;
      *n_params = lay.total;
    }
    free(params);
    drl_layout_free(&lay);
  }
  drl_hf_source_free(&src);
  return t;
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_load --model DIR", &args) || !args.model) {
    fprintf(stderr, "bench_load: --model DIR is required\n");
    return 2;
  }
  unsigned char *buf = (unsigned char *)malloc(CHUNK);
  if (!buf) return 1;
  double best_read = 1e30, best_load = 1e30, bytes = 0;
  int64_t n_params = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double r = read_bytes(args.model, &bytes, buf), l = load(args.model, &n_params);
    if (r < 0 || l < 0) {
      fprintf(stderr, "bench_load: %s: %s\n", args.model, drl_last_error());
      return 1;
    }
    if (r < best_read) best_read = r;
    if (l < best_load) best_load = l;
  }
  free(buf);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak = (double)ru.ru_maxrss * 1024.0, fp32 = (double)n_params * 4.0;
  char body[1024];
  snprintf(body, sizeof body,
           "| checkpoint | bytes | read the bytes | load to fp32 | load / read | peak RSS | fp32 parameters | RSS / params "
           "|\n|---|---|---|---|---|---|---|---|\n| %s | %.0f MB | %.2f s | %.2f s | %.2f | %.0f MB | %.0f MB | %.3f |\n",
           args.model, bytes / 1e6, best_read, best_load, best_load / best_read, peak / 1e6, fp32 / 1e6, peak / fp32);
  drl_device cpu;
  drl_device_open(&cpu, DRL_BACKEND_CPU, 0);
  return bench_emit(&args, "Loading a pretrained checkpoint (bench_load)", &cpu, body);
}
