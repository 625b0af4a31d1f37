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

/* Reads every .safetensors file of dir once, into buf (CHUNK bytes, reused: a streaming read) or, buf NULL, into a
 * fresh buffer of each file's size (what holding the bytes in memory costs); returns the seconds and the bytes (a sum
 * of one byte per page keeps the reads from being optimised away). */
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
    off_t size = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    unsigned char *whole = buf ? NULL : (unsigned char *)malloc(size > 0 ? (size_t)size : 1);
    unsigned char *at = buf ? buf : whole;
    size_t cap = buf ? CHUNK : (size_t)size;
    for (ssize_t got; at && cap > 0 && (got = read(fd, at, cap)) > 0;) {
      n += (double)got;
      for (ssize_t i = 0; i < got; i += 4096) sink += at[i];
      if (!buf) at += got, cap -= (size_t)got;
    }
    free(whole);
    close(fd);
  }
  closedir(d);
  *bytes = n + (double)(sink & 0); /* the sum is kept, its value is not */
  return bench_now() - t0;
}

/* The directory's last path component: the report names the checkpoint, not where it sits on this machine. */
static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s && s[1] ? s + 1 : p;
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
  double best_read = 1e30, best_stream = 1e30, best_load = 1e30, bytes = 0;
  int64_t n_params = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double s = read_bytes(args.model, &bytes, buf), r = read_bytes(args.model, &bytes, NULL);
    double l = load(args.model, &n_params);
    if (s < 0 || r < 0 || l < 0) {
      fprintf(stderr, "bench_load: %s: %s\n", args.model, drl_last_error());
      return 1;
    }
    if (s < best_stream) best_stream = s;
    if (r < best_read) best_read = r;
    if (l < best_load) best_load = l;
  }
  free(buf);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak = (double)ru.ru_maxrss * 1024.0, fp32 = (double)n_params * 4.0;
  char body[1536];
  snprintf(body, sizeof body,
           "| checkpoint | bytes | read into memory | streamed | load to fp32 | load / read | peak RSS | fp32 parameters "
           "| RSS / params |\n|---|---|---|---|---|---|---|---|---|\n"
           "| %s | %.0f MB | %.2f s | %.2f s | %.2f s | %.2f | %.0f MB | %.0f MB | %.3f |\n\n"
           "Read into memory: each file read into a fresh buffer of its size; streamed: through one reused 64 MiB "
           "buffer (page cache warm for both; best of 3). Load: config.json, then every tensor converted into a fresh "
           "fp32 buffer.\n",
           base_name(args.model), bytes / 1e6, best_read, best_stream, best_load, best_load / best_read, peak / 1e6, fp32 / 1e6,
           peak / fp32);
  drl_device cpu;
  drl_device_open(&cpu, DRL_BACKEND_CPU, 0);
  return bench_emit(&args, "Loading a pretrained checkpoint (bench_load)", &cpu, body);
}
