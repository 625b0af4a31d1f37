/* Fuzz target: the argument parsing of every verb (cli/cli.h: cli_verb.parse), without running any verb.
 *
 * Input: NUL-separated arguments; the first names the verb (train, config, data, sample). When a train or
 * config print command line parses and names no file, the configuration it describes is also built
 * (cli_load_config: defaults, --set overrides, validation). Checked: parse returns CLI_OK or CLI_USAGE and, on
 * CLI_OK, what it stored is complete and in range. */
#include <string.h>

#include "cli/cli.h"
#include "fuzz.h"

#define MAX_ARGS 600

static const cli_verb *const verbs[] = {&cli_verb_train, &cli_verb_config, &cli_verb_data, &cli_verb_sample};

static void check_args(const cli_verb *v, int argc, const cli_args *a) {
  FUZZ_CHECK(a->n_sets >= 0 && a->n_sets <= CLI_MAX_SETS, "%s: %d sets", v->name, a->n_sets);
  for (int i = 0; i < a->n_sets; ++i) FUZZ_CHECK(a->sets[i] != NULL, "%s: set %d is NULL", v->name, i);
  if (v == &cli_verb_config) FUZZ_CHECK(a->sub && (!strcmp(a->sub, "print") || !strcmp(a->sub, "keys")), "config");
  if (v == &cli_verb_data) {
    FUZZ_CHECK(a->sub != NULL, "data: no sub-command");
    if (!strcmp(a->sub, "info")) FUZZ_CHECK(a->file && argc == 3, "data info: file");
    else FUZZ_CHECK(!strcmp(a->sub, "gen") && a->task && a->out && a->n >= 0 && a->n <= INT32_MAX && a->seed >= 0 &&
                    a->size >= 0 && a->size <= (1 << 20), "data gen: arguments");
  }
  if (v == &cli_verb_sample)
    FUZZ_CHECK(a->file && a->out && a->n >= 1 && a->n <= (1 << 24) && a->steps >= 0 && a->steps <= 4096 &&
               a->seed >= 0, "sample: arguments");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = (char *)malloc(size + 1);
  char **argv = (char **)malloc(sizeof(char *) * (MAX_ARGS + 1));
  if (!buf || !argv) {
    free(buf);
    free(argv);
    return 0;
  }
  memcpy(buf, data, size);
  buf[size] = '\0';
  int argc = 0;
  for (size_t at = 0; at <= size && argc < MAX_ARGS; at += strlen(buf + at) + 1) argv[argc++] = buf + at;
  argv[argc] = NULL;

  const cli_verb *v = NULL;
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; ++i)
    if (strcmp(argv[0], verbs[i]->name) == 0) v = verbs[i];
  if (v) {
    cli_args args;
    int rc = v->parse(argc, argv, &args);
    FUZZ_CHECK(rc == CLI_OK || rc == CLI_USAGE, "%s: parse returned %d", v->name, rc);
    if (rc == CLI_OK) {
      check_args(v, argc, &args);
      int builds = v == &cli_verb_train || (v == &cli_verb_config && !strcmp(args.sub, "print"));
      drl_config cfg;
      if (builds && !args.file && cli_load_config(&args, &cfg) == CLI_OK) {
        FUZZ_CHECK(drl_config_validate(&cfg) == DRL_OK, "cli_load_config returned an invalid config");
        drl_config_free(&cfg);
      }
    }
  }
  free(argv);
  free(buf);
  return 0;
}
