/* dynrl sample CKPT.h5 [-o FILE.h5] [--n N] [--steps T] [--seed S]: ODE samples of a flow policy, for pictures. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine/flow_policy.h"

static const char usage[] =
    "usage: dynrl sample CKPT.h5 [-o FILE.h5] [--n N] [--steps T] [--seed S]\n"
    "\n"
    "Loads the flow policy of a checkpoint (ckpt.h5, or the phase snapshot flow_pretrain.h5 a run leaves) with the\n"
    "configuration stored in it and writes N deterministic ODE samples per condition (default 512) to FILE.h5\n"
    "(default samples.h5): /samples/x [n, 2], /samples/cond, /samples/reward and the task's modes and reward\n"
    "regions (/task/modes, /task/target, attribute reward_width). --steps: ODE steps (default tree.steps of the\n"
    "checkpoint's configuration); --seed: the noise (default 1). scripts/plot_samples.py draws the files.\n";

static int parse_sample(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  const char *n_text = "512", *steps_text = "0", *seed_text = "1";
  a->out = "samples.h5";
  const char *names[] = {"-o", "--n", "--steps", "--seed"};
  const char **slots[] = {&a->out, &n_text, &steps_text, &seed_text};
  int rc = cli_parse_options(&cli_verb_sample, argc, argv, names, slots, 4, &a->file, "CKPT.h5");
  if (rc != CLI_OK) return rc;
  if (cli_parse_i64(n_text, 1, 1 << 24, &a->n)) return cli_usage_error(&cli_verb_sample, "--n must be 1..2^24");
  if (cli_parse_i64(steps_text, 0, 4096, &a->steps))
    return cli_usage_error(&cli_verb_sample, "--steps must be 0..4096");
  if (cli_parse_i64(seed_text, 0, INT64_MAX, &a->seed))
    return cli_usage_error(&cli_verb_sample, "--seed must be >= 0");
  return CLI_OK;
}

static int run_sample(int argc, char **argv) {
  cli_args a;
  int rc = parse_sample(argc, argv, &a);
  if (rc != CLI_OK) return rc;
  if (cli_make_parent_dirs(a.out)) return CLI_FAILED;
  double reward = 0.0;
  if (drl_flow_policy_sample_file(a.file, a.out, (int)a.n, (int)a.steps, (uint64_t)a.seed, &reward) != DRL_OK)
    return cli_fail(a.file);
  printf("wrote %lld samples per condition of %s to %s (mean reward %.4f)\n", a.n, a.file, a.out, reward);
  return CLI_OK;
}

const cli_verb cli_verb_sample = {"sample", "write ODE samples of a flow policy checkpoint to HDF5", usage,
                                  parse_sample, run_sample};
