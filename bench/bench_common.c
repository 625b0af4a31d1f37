#define _POSIX_C_SOURCE 200809L
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef DRL_GIT_COMMIT
#define DRL_GIT_COMMIT "unknown"
#endif

int bench_parse_args(int argc, char **argv, const char *name, bench_args *args) {
  memset(args, 0, sizeof *args);
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      const char *d = argv[++i];
      if (strcmp(d, "cpu") == 0) args->backend = DRL_BACKEND_CPU;
      else if (strcmp(d, "cuda") == 0) args->backend = DRL_BACKEND_CUDA;
      else goto usage;
    } else if (strcmp(argv[i], "--append") == 0 && i + 1 < argc) {
      args->append = argv[++i];
    } else if (strcmp(argv[i], "--quick") == 0) {
      args->quick = 1;
    } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      args->model = argv[++i];
    } else {
      goto usage;
    }
  }
  return 0;
usage:
  fprintf(stderr, "usage: %s [--device cpu|cuda] [--append docs/benchmarks.md] [--quick] [--model DIR]\n", name);
  return 2;
}

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cpu_model(char *buf, size_t cap) {
  snprintf(buf, cap, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *colon = strchr(line, ':');
      if (colon) {
        snprintf(buf, cap, "%s", colon + 2);
        buf[strcspn(buf, "\n")] = '\0';
      }
      break;
    }
  }
  fclose(f);
}

void bench_write_header(FILE *out, const char *title, const drl_device *dev) {
  char cpu[256], devname[256], date[32];
  cpu_model(cpu, sizeof cpu);
  drl_device_describe(dev, devname, sizeof devname);
  time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
  const char *commit = getenv("DRL_COMMIT");
  fprintf(out, "### %s\n\n%s, %ld cores; backend %s; %s; commit %s\n\n", title, cpu, sysconf(_SC_NPROCESSORS_ONLN),
          devname, date, commit && *commit ? commit : DRL_GIT_COMMIT);
}

int bench_emit(const bench_args *args, const char *title, const drl_device *dev, const char *body) {
  bench_write_header(stdout, title, dev);
  fputs(body, stdout);
  fputs("\n", stdout);
  if (!args->append) return 0;
  FILE *f = fopen(args->append, "a");
  if (!f) {
    perror(args->append);
    return 1;
  }
  bench_write_header(f, title, dev);
  fputs(body, f);
  fputs("\n", f);
  return fclose(f) == 0 ? 0 : 1;
}
