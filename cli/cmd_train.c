/* dynrl train [CFG] [--set KEY=VALUE]... [--resume]: run the phases of a configuration. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/trainer.h"

static const char usage[] =
    "usage: dynrl train [CFG.yaml] [--set SECTION.KEY=VALUE]... [--resume] [--quiet] [--log-level LEVEL]\n"
    "\n"
    "Runs the phases in trainer.phases with the embedded defaults, then CFG.yaml, then each --set.\n"
    "Writes run.out_dir/ckpt.h5 every trainer.ckpt_every steps and at the end of each phase.\n"
    "--resume continues from run.out_dir/ckpt.h5 when it exists (same as --set trainer.resume=true);\n"
    "on the CPU backend the resumed run reproduces the uninterrupted one bit for bit.\n"
    "--quiet prints only warnings and errors; --log-level is error, warn, info or debug.\n";

static int run_train(int argc, char **argv) {
  drl_config cfg;
  const char *sets[256];
  int n_sets = 0;
  const char *file = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *value;
    int got = cli_option(argc, argv, &i, "--set", &value);
    if (got < 0) return cli_usage_error(&cli_verb_train, "--set needs SECTION.KEY=VALUE");
    if (got) {
      if (n_sets == 256) return cli_usage_error(&cli_verb_train, "more than 256 --set options");
      sets[n_sets++] = value;
      continue;
    }
    got = cli_option(argc, argv, &i, "--log-level", &value);
    if (got < 0) return cli_usage_error(&cli_verb_train, "--log-level needs a level");
    if (got) {
      static char buf[64];
      snprintf(buf, sizeof buf, "run.log_level=%s", value);
      sets[n_sets++] = buf;
      continue;
    }
    if (strcmp(argv[i], "--resume") == 0) {
      sets[n_sets++] = "trainer.resume=true";
    } else if (strcmp(argv[i], "--quiet") == 0) {
      sets[n_sets++] = "run.quiet=true";
    } else if (argv[i][0] == '-') {
      return cli_usage_error(&cli_verb_train, "unknown option '%s'", argv[i]);
    } else if (file) {
      return cli_usage_error(&cli_verb_train, "more than one config file ('%s', '%s')", file, argv[i]);
    } else {
      file = argv[i];
    }
    if (n_sets >= 256) return cli_usage_error(&cli_verb_train, "too many options");
  }
  if ((file ? drl_config_load_file(&cfg, file) : drl_config_load_default(&cfg)) != DRL_OK)
    return cli_fail(file ? file : "embedded default config");
  for (int i = 0; i < n_sets; ++i)
    if (drl_config_set(&cfg, sets[i]) != DRL_OK) return cli_fail("--set");
  if (drl_config_validate(&cfg) != DRL_OK) return cli_fail("config");
  drl_log_setup((drl_log_level)cfg.run.log_level, cfg.run.quiet, 0);
  drl_train_summary sum;
  if (drl_train(&cfg, &sum) != DRL_OK) return cli_fail("train");
  drl_log(DRL_LOG_INFO, "done: %lld steps in %.1f s (%.0f tokens/s), final loss %.4f", (long long)sum.steps,
          sum.seconds, sum.tokens_per_second, sum.final_loss);
  if (sum.eval_after >= 0 && sum.eval_after_sft >= 0)
    drl_log(DRL_LOG_INFO, "held-out exact match: %.3f before, %.3f after sft, %.3f after training", sum.eval_before,
            sum.eval_after_sft, sum.eval_after);
  else if (sum.eval_after >= 0)
    drl_log(DRL_LOG_INFO, "held-out exact match: %.3f before, %.3f after", sum.eval_before, sum.eval_after);
  return CLI_OK;
}

const cli_verb cli_verb_train = {"train", "train a policy (the default configuration when no file is given)", usage,
                                 run_train};
