/* Shared by the benchmark programs: timing, the machine line, and the markdown report they print and append. */
#ifndef DRL_BENCH_COMMON_H
#define DRL_BENCH_COMMON_H

#include <stdio.h>

#include "kernels/device.h"

typedef struct bench_args {
  drl_backend backend;
  const char *append;  /* markdown file to append the report to, or NULL */
  int quick;           /* smaller sizes, for smoke runs */
  const char *model;   /* --model DIR: a Hugging Face directory (the benchmarks that load one) */
} bench_args;

/* Parses --device cpu|cuda, --append FILE, --quick, --model DIR; prints usage and returns non-zero on anything else. */
int bench_parse_args(int argc, char **argv, const char *name, bench_args *args);

/* Monotonic wall-clock seconds. */
double bench_now(void);

/* Writes "machine | backend | date | commit" details of this run as a markdown paragraph. */
void bench_write_header(FILE *out, const char *title, const drl_device *dev);

/* Writes the report (already formatted markdown in `body`) to stdout and, with --append, to that file. */
int bench_emit(const bench_args *args, const char *title, const drl_device *dev, const char *body);

#endif /* DRL_BENCH_COMMON_H */
