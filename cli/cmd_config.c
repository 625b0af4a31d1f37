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

static int run_config(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "keys") == 0) return print_keys();
  if (argc < 2 || strcmp(argv[1], "print") != 0)
    return cli_usage_error(&cli_verb_config, argc < 2 ? "missing sub-command%s" : "unknown sub-command '%s'",
                           argc < 2 ? "" : argv[1]);
  const char *file = NULL;
  for (int i = 2; i < argc; ++i) {
    const char *value;
    int got = cli_option(argc, argv, &i, "--set", &value);
    if (got < 0) return cli_usage_error(&cli_verb_config, "--set needs SECTION.KEY=VALUE");
    if (got) continue;
    if (argv[i][0] == '-') return cli_usage_error(&cli_verb_config, "unknown option '%s'", argv[i]);
    if (file) return cli_usage_error(&cli_verb_config, "more than one config file ('%s', '%s')", file, argv[i]);
    file = argv[i];
  }

  drl_config cfg;
  drl_status st = file ? drl_config_load_file(&cfg, file) : drl_config_load_default(&cfg);
  if (st != DRL_OK) return cli_fail(file ? file : "embedded default config");
  for (int i = 2; i < argc; ++i) {
    const char *value;
    if (cli_option(argc, argv, &i, "--set", &value) != 1) continue;
    if (drl_config_set(&cfg, value) != DRL_OK) {
      drl_config_free(&cfg);
      return cli_fail("--set");
    }
  }
  /* --set checks one key; the rules between keys are checked once, after the last override. */
  if (drl_config_validate(&cfg) != DRL_OK) {
    drl_config_free(&cfg);
    return cli_fail("config");
  }
  char *text = NULL;
  st = drl_config_to_yaml(&cfg, &text);
  drl_config_free(&cfg);
  if (st != DRL_OK) return cli_fail("printing the config");
  fputs(text, stdout);
  free(text);
  return CLI_OK;
}

const cli_verb cli_verb_config = {"config", "show the effective configuration", usage, run_config};
