/* What the verbs share: messages, option matching, number parsing, the configuration from the command line. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>

#include "cli.h"
#include "data/checkpoint.h"

/* The library's message for a user: without the "file.c:123: " locations of dynrl's sources (kept with
 * DYNRL_DEBUG=1). */
static void user_message(const char *msg, char *out, size_t cap) {
  int debug = getenv("DYNRL_DEBUG") && strcmp(getenv("DYNRL_DEBUG"), "0") != 0;
  size_t n = 0;
  for (const char *p = msg; *p && n + 1 < cap;) {
    /* a location: [a-z0-9_]+ "." (c|cu|cc|h) ":" digits ": " at the start of a word */
    const char *q = p;
    int word_start = p == msg || p[-1] == ' ';
    while (word_start && ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_')) ++q;
    if (!debug && q > p && *q == '.') {
      const char *e = q + 1;
      while (*e >= 'a' && *e <= 'z') ++e;
      size_t ext = (size_t)(e - q - 1);
      if ((ext == 1 || ext == 2) && *e == ':' && e[1] >= '0' && e[1] <= '9') {
        const char *d = e + 1;
        while (*d >= '0' && *d <= '9') ++d;
        if (d[0] == ':' && d[1] == ' ') {
          p = d + 2;
          continue;
        }
      }
    }
    out[n++] = *p++;
  }
  out[n] = '\0';
}

int cli_fail(const char *what) {
  char msg[4096];
  user_message(drl_last_error(), msg, sizeof msg);
  size_t w = strlen(what);
  if (w > 0 && strncmp(msg, what, w) == 0 && msg[w] == ':') /* the message names it already */
    fprintf(stderr, "dynrl: error: %s\n", msg);
  else
    fprintf(stderr, "dynrl: error: %s: %s\n", what, msg);
  return CLI_FAILED;
}

int cli_usage_error(const cli_verb *verb, const char *fmt, ...) {
  fprintf(stderr, "dynrl %s: ", verb->name);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n%s", verb->usage);
  return CLI_USAGE;
}

int cli_option(int argc, char **argv, int *i, const char *name, const char **value) {
  const char *arg = argv[*i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return 0;
  if (arg[n] == '=') {
    *value = arg + n + 1;
    return 1;
  }
  if (arg[n] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

int cli_parse_options(const cli_verb *verb, int argc, char **argv, const char *const *names,
                      const char **const *slots, int n, const char **positional, const char *what) {
  *positional = NULL;
  for (int i = 1; i < argc; ++i) {
    int matched = 0;
    for (int k = 0; k < n && !matched; ++k) {
      matched = cli_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return cli_usage_error(verb, "%s needs a value", names[k]);
    }
    if (matched) continue;
    if (argv[i][0] == '-') return cli_usage_error(verb, "unknown option '%s'", argv[i]);
    if (*positional) return cli_usage_error(verb, "more than one %s ('%s', '%s')", what, *positional, argv[i]);
    *positional = argv[i];
  }
  return *positional ? CLI_OK : cli_usage_error(verb, "missing %s", what);
}

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_parse_device(const char *text, drl_backend *out) {
  if (strcmp(text, "auto") == 0) *out = drl_cuda_device_count() > 0 ? DRL_BACKEND_CUDA : DRL_BACKEND_CPU;
  else if (strcmp(text, "cpu") == 0) *out = DRL_BACKEND_CPU;
  else if (strcmp(text, "cuda") == 0) *out = DRL_BACKEND_CUDA;
  else return -1;
  return 0;
}

int cli_parse_f64(const char *text, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end != '\0' || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

int cli_parse_i64(const char *text, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int cli_make_parent_dirs(const char *path) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
    fprintf(stderr, "dynrl: error: path too long: %s\n", path);
    return 1;
  }
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1; ; ++p) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "dynrl: error: cannot create directory %s: %s\n", dir, strerror(errno));
        return 1;
      }
      *p = saved;
      if (saved == '\0') break;
    }
  }
  return 0;
}

int cli_is_checkpoint(const char *path) {
  drl_checkpoint ck;
  if (drl_checkpoint_read_provenance(path, &ck) != DRL_OK) return 0;
  drl_checkpoint_free(&ck);
  return 1;
}

/* The configuration of file: YAML, or the one a checkpoint stores. */
static drl_status load_config_file(drl_config *cfg, const char *file) {
  drl_checkpoint ck;
  if (drl_checkpoint_read_provenance(file, &ck) != DRL_OK) return drl_config_load_file(cfg, file);
  drl_status st = drl_config_load_string(cfg, ck.config_yaml ? ck.config_yaml : "", file);
  drl_checkpoint_free(&ck);
  return st;
}

int cli_load_config(const cli_args *args, drl_config *cfg) {
  drl_status st = args->file ? load_config_file(cfg, args->file) : drl_config_load_default(cfg);
  if (st != DRL_OK) return cli_fail(args->file ? args->file : "embedded default config");
  for (int i = 0; i < args->n_sets; ++i) {
    if (drl_config_set(cfg, args->sets[i]) != DRL_OK) {
      drl_config_free(cfg);
      return cli_fail("--set");
    }
  }
  /* --set checks one key; the rules between keys are checked once, after the last override. */
  if (drl_config_validate(cfg) != DRL_OK) {
    drl_config_free(cfg);
    return cli_fail("config");
  }
  return CLI_OK;
}
