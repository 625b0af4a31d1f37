/* dynrl: the command-line entry point. Dispatches to one verb; prints library errors and exits non-zero. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data/h5.h"

static const cli_verb *const verbs[] = {&cli_verb_train,  &cli_verb_generate, &cli_verb_eval,
                                        &cli_verb_config, &cli_verb_data,     &cli_verb_sample,
                                        &cli_verb_import, &cli_verb_export};
#define N_VERBS (sizeof verbs / sizeof verbs[0])

static const char *const main_usage =
    "usage: dynrl [--version] VERB [ARGS]\n"
    "       dynrl help [VERB]\n";

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
  /* Past a file-size limit (RLIMIT_FSIZE) a write then fails with EFBIG, which the writers report and clean up after,
   * instead of SIGXFSZ ending the process with a temp file left behind. */
  signal(SIGXFSZ, SIG_IGN);
  /* `dynrl train | head`: when the reader goes away the run goes on (its output is lost) and closes its files. */
  signal(SIGPIPE, SIG_IGN);
  drl_h5_no_exit_cleanup();
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
