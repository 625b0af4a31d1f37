/* dynrl sample CKPT.h5 [-o FILE.h5] [--n N] [--steps T] [--seed S]: ODE samples of a flow policy, for pictures. */
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "engine/flow_trainer.h"

static const char usage[] =
    "usage: dynrl sample CKPT.h5 [-o FILE.h5] [--n N] [--steps T] [--seed S]\n"
    "\n"
    "Loads the flow policy of a checkpoint (ckpt.h5, or the phase snapshot flow_pretrain.h5 a run leaves) with the\n"
    "configuration stored in it and writes N deterministic ODE samples per condition (default 512) to FILE.h5\n"
    "(default samples.h5): /samples/x [n, 2], /samples/cond, /samples/reward and the task's modes and reward\n"
    "regions (/task/modes, /task/target, attribute reward_width). --steps: ODE steps (default tree.steps of the\n"
    "checkpoint's configuration); --seed: the noise (default 1). scripts/plot_samples.py draws the files.\n";

static int run_sample(int argc, char **argv) {
  const char *ckpt = NULL, *out = "samples.h5", *n_text = "512", *steps_text = "0", *seed_text = "1";
  for (int i = 1; i < argc; ++i) {
    const char *names[] = {"-o", "--n", "--steps", "--seed"};
    const char **slots[] = {&out, &n_text, &steps_text, &seed_text};
    int matched = 0;
    for (int k = 0; k < 4 && !matched; ++k) {
      matched = cli_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return cli_usage_error(&cli_verb_sample, "%s needs a value", names[k]);
    }
    if (matched) continue;
    if (argv[i][0] == '-') return cli_usage_error(&cli_verb_sample, "unknown option '%s'", argv[i]);
    if (ckpt) return cli_usage_error(&cli_verb_sample, "more than one checkpoint ('%s', '%s')", ckpt, argv[i]);
    ckpt = argv[i];
  }
  if (!ckpt) return cli_usage_error(&cli_verb_sample, "missing CKPT.h5");
  long long n, steps, seed;
  if (cli_parse_i64(n_text, 1, 1 << 24, &n)) return cli_usage_error(&cli_verb_sample, "--n must be 1..2^24");
  if (cli_parse_i64(steps_text, 0, 4096, &steps)) return cli_usage_error(&cli_verb_sample, "--steps must be 0..4096");
  if (cli_parse_i64(seed_text, 0, INT64_MAX, &seed)) return cli_usage_error(&cli_verb_sample, "--seed must be >= 0");
  if (cli_make_parent_dirs(out)) return CLI_FAILED;
  double reward = 0.0;
  if (drl_flow_sample_file(ckpt, out, (int)n, (int)steps, (uint64_t)seed, &reward) != DRL_OK) return cli_fail(ckpt);
  printf("wrote %lld samples per condition of %s to %s (mean reward %.4f)\n", n, ckpt, out, reward);
  return CLI_OK;
}

const cli_verb cli_verb_sample = {"sample", "write ODE samples of a flow policy checkpoint to HDF5", usage,
                                  run_sample};
