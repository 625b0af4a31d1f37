/* dynrl: the command-line entry point. Dispatches to one verb; prints library errors and exits non-zero. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "cli.h"

static const cli_verb *const verbs[] = {&cli_verb_train, &cli_verb_config, &cli_verb_data, &cli_verb_sample};
#define N_VERBS (sizeof verbs / sizeof verbs[0])

static const char *const main_usage =
    "usage: dynrl [--version] VERB [ARGS]\n"
    "       dynrl help [VERB]\n";

int cli_fail(const char *what) {
  fprintf(stderr, "dynrl: error: %s: %s\n", what, drl_last_error());
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

static const cli_verb *find_verb(const char *name) {
  for (size_t i = 0; i < N_VERBS; ++i)
    if (strcmp(verbs[i]->name, name) == 0) return verbs[i];
  return NULL;
}

static void print_overview(FILE *out) {
  fprintf(out, "dynrl %s: reinforcement-learning post-training engine\n\n%s\nverbs:\n", drl_version(), main_usage);
  for (size_t i = 0; i < N_VERBS; ++i) fprintf(out, "  %-8s %s\n", verbs[i]->name, verbs[i]->summary);
  fprintf(out, "\n`dynrl help VERB` shows a verb's usage.\n");
}

static int run_help(int argc, char **argv) {
  if (argc < 2) {
    print_overview(stdout);
    return CLI_OK;
  }
  const cli_verb *v = find_verb(argv[1]);
  if (!v) {
    fprintf(stderr, "dynrl help: unknown verb '%s'\n\n", argv[1]);
    print_overview(stderr);
    return CLI_USAGE;
  }
  printf("%s", v->usage);
  return CLI_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_overview(stderr);
    return CLI_USAGE;
  }
  const char *verb = argv[1];
  if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
    printf("dynrl %s\n", drl_version());
    return CLI_OK;
  }
  if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0)
    return run_help(argc - 1, argv + 1);
  const cli_verb *v = find_verb(verb);
  if (!v) {
    fprintf(stderr, "dynrl: unknown verb '%s'\n\n", verb);
    print_overview(stderr);
    return CLI_USAGE;
  }
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("%s", v->usage);
      return CLI_OK;
    }
  }
  return v->run(argc - 1, argv + 1);
}
