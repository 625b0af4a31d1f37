/* dynrl config print [CFG] [--set KEY=VALUE]...: the effective configuration as YAML that loads back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/config.h"

static const char usage[] =
    "usage: dynrl config print [CFG.yaml] [--set SECTION.KEY=VALUE]...\n"
    "       dynrl config keys\n"
    "\n"
    "Prints the effective configuration: the embedded defaults, then CFG.yaml if given, then each --set in order.\n"
    "The output is YAML that `dynrl train` loads back to the same configuration.\n"
    "`keys` lists every key with its type, range, default and meaning.\n";

static int print_keys(void) {
  char *text = NULL;
  if (drl_config_help(&text) != DRL_OK) return cli_fail("config keys");
  fputs(text, stdout);
  free(text);
  return CLI_OK;
}

static int parse_config(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  if (argc == 2 && strcmp(argv[1], "keys") == 0) {
    a->sub = argv[1];
    return CLI_OK;
  }
  if (argc < 2 || strcmp(argv[1], "print") != 0)
    return cli_usage_error(&cli_verb_config, argc < 2 ? "missing sub-command%s" : "unknown sub-command '%s'",
                           argc < 2 ? "" : argv[1]);
  a->sub = argv[1];
  for (int i = 2; i < argc; ++i) {
    const char *value;
    int got = cli_option(argc, argv, &i, "--set", &value);
    if (got < 0) return cli_usage_error(&cli_verb_config, "--set needs SECTION.KEY=VALUE");
    if (got) {
      if (a->n_sets == CLI_MAX_SETS) return cli_usage_error(&cli_verb_config, "more than %d --set", CLI_MAX_SETS);
      a->sets[a->n_sets++] = value;
      continue;
    }
    if (argv[i][0] == '-') return cli_usage_error(&cli_verb_config, "unknown option '%s'", argv[i]);
    if (a->file) return cli_usage_error(&cli_verb_config, "more than one config file ('%s', '%s')", a->file, argv[i]);
    a->file = argv[i];
  }
  return CLI_OK;
}

static int run_config(int argc, char **argv) {
  cli_args args;
  int rc = parse_config(argc, argv, &args);
  if (rc != CLI_OK) return rc;
  if (strcmp(args.sub, "keys") == 0) return print_keys();
  drl_config cfg;
  if ((rc = cli_load_config(&args, &cfg)) != CLI_OK) return rc;
  char *text = NULL;
  drl_status st = drl_config_to_yaml(&cfg, &text);
  drl_config_free(&cfg);
  if (st != DRL_OK) return cli_fail("printing the config");
  fputs(text, stdout);
  free(text);
  return CLI_OK;
}

const cli_verb cli_verb_config = {"config", "show the effective configuration", usage, parse_config, run_config};
