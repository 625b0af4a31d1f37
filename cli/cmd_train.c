/* dynrl train [CFG] [--set KEY=VALUE]... [--resume]: run the phases of a configuration, on every rank of an mpirun
 * or srun job. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "distributed/comm.h"

#include "cli.h"
#include "engine/config.h"
#include "engine/log.h"
#include "engine/trainer.h"

/* run.log_level converts to the logger's level by value. */
_Static_assert((int)DRL_CFG_LOG_ERROR == (int)DRL_LOG_ERROR, "run.log_level converts by value");
_Static_assert((int)DRL_CFG_LOG_WARN == (int)DRL_LOG_WARN, "run.log_level converts by value");
_Static_assert((int)DRL_CFG_LOG_INFO == (int)DRL_LOG_INFO, "run.log_level converts by value");
_Static_assert((int)DRL_CFG_LOG_DEBUG == (int)DRL_LOG_DEBUG, "run.log_level converts by value");

static const char usage[] =
    "usage: dynrl train [CFG.yaml] [--set SECTION.KEY=VALUE]... [--resume | --force] [--quiet] [--no-progress]\n"
    "                   [--log-level LEVEL]\n"
    "\n"
    "Runs the phases in trainer.phases with the embedded defaults, then CFG.yaml, then each --set.\n"
    "Writes run.out_dir/ckpt.h5 every trainer.ckpt_every steps and at the end of each phase.\n"
    "--resume continues from run.out_dir/ckpt.h5 when it exists (same as --set trainer.resume=true);\n"
    "on the CPU backend the resumed run reproduces the uninterrupted one bit for bit. A run.out_dir that\n"
    "already holds a run is refused without --resume, or --force (trainer.force=true), which starts over.\n"
    "--quiet prints only warnings and errors; --log-level is error, warn, info or debug; --no-progress prints a\n"
    "progress line every run.log_every steps instead of redrawing a bar (as a job of several ranks does).\n"
    "\n"
    "Under mpirun -np N (or srun) every rank runs it: batches are split into dist.shards shards over the ranks,\n"
    "rank 0 prints and writes the files; a rank that fails ends the job.\n";

/* When a launcher ends the job (mpirun does when another rank fails) this rank says so, instead of vanishing. */
static char term_msg[160];
static size_t term_len;

static volatile sig_atomic_t reported; /* this rank has printed its own error: the launcher's end needs no words */

static void on_termination(int sig) {
  if (!reported && write(STDERR_FILENO, term_msg, term_len) < 0) { /* nothing more to do in a handler */
  }
  _exit(128 + sig);
}

static void watch_termination(int rank) {
  int n = snprintf(term_msg, sizeof term_msg,
                   "dynrl: rank %d: terminated by the launcher (it ends the job when another rank fails)\n", rank);
  term_len = n > 0 ? (size_t)n : 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_termination;
  sigaction(SIGTERM, &sa, NULL);
}

static int parse_train(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; ++i) {
    const char *value, *set;
    int got = cli_option(argc, argv, &i, "--set", &value);
    if (got < 0) return cli_usage_error(&cli_verb_train, "--set needs SECTION.KEY=VALUE");
    if (got) {
      set = value;
    } else if ((got = cli_option(argc, argv, &i, "--log-level", &value)) != 0) {
      if (got < 0) return cli_usage_error(&cli_verb_train, "--log-level needs a level");
      if (snprintf(a->log_level, sizeof a->log_level, "run.log_level=%s", value) >= (int)sizeof a->log_level)
        return cli_usage_error(&cli_verb_train, "unknown --log-level '%.32s...'", value);
      set = a->log_level;
    } else if (strcmp(argv[i], "--resume") == 0) {
      set = "trainer.resume=true";
    } else if (strcmp(argv[i], "--force") == 0) {
      set = "trainer.force=true";
    } else if (strcmp(argv[i], "--quiet") == 0) {
      set = "run.quiet=true";
    } else if (strcmp(argv[i], "--no-progress") == 0) {
      set = "run.progress=false";
    } else if (argv[i][0] == '-') {
      return cli_usage_error(&cli_verb_train, "unknown option '%s'", argv[i]);
    } else if (a->file) {
      return cli_usage_error(&cli_verb_train, "more than one config file ('%s', '%s')", a->file, argv[i]);
    } else {
      a->file = argv[i];
      continue;
    }
    if (a->n_sets == CLI_MAX_SETS) return cli_usage_error(&cli_verb_train, "more than %d options", CLI_MAX_SETS);
    a->sets[a->n_sets++] = set;
  }
  return CLI_OK;
}

/* The closing summary: each phase this call ran with its steps, time, tokens per second and evaluation. */
static void print_summary(const drl_train_summary *sum) {
  const char *what = sum->flow ? "eval reward" : "held-out eval";
  drl_log(DRL_LOG_INFO, "done: %lld steps in %.1f s, final loss %.4f", (long long)sum->steps, sum->seconds,
          sum->final_loss);
  if (sum->eval_before >= 0) drl_log(DRL_LOG_INFO, "  before training   %s %.3f", what, sum->eval_before);
  for (int p = 0; p < sum->n_phases; ++p) {
    const drl_phase_summary *ps = &sum->phases[p];
    char eval[64] = "";
    if (ps->eval >= 0) snprintf(eval, sizeof eval, ", %s %.3f", what, ps->eval);
    const char *unit = ps->phase == DRL_CFG_PHASE_GRPO ? "generated tokens/s" : "tokens/s";
    if (sum->flow)
      drl_log(DRL_LOG_INFO, "  %-16s  %lld steps in %.1f s%s", drl_cfg_phase_name(ps->phase), (long long)ps->steps,
              ps->seconds, eval);
    else
      drl_log(DRL_LOG_INFO, "  %-16s  %lld steps in %.1f s (%.0f %s)%s", drl_cfg_phase_name(ps->phase),
              (long long)ps->steps, ps->seconds, ps->seconds > 0 ? ps->tokens / ps->seconds : 0.0, unit, eval);
  }
}

static int run_train(int argc, char **argv) {
  cli_args args;
  int rc = parse_train(argc, argv, &args);
  if (rc != CLI_OK) return rc;
  drl_config cfg;
  if ((rc = cli_load_config(&args, &cfg)) != CLI_OK) return rc;
  drl_comm comm;
  if (drl_comm_init(&comm, cfg.dist.timeout_s) != DRL_OK) return cli_fail("joining the job");
  watch_termination(comm.rank);
  drl_log_setup((drl_log_level)cfg.run.log_level, cfg.run.quiet, comm.rank);
  /* under a launcher the terminal is shared by every rank's output (or a pseudo-terminal of a log): no redraws */
  drl_log_allow_bar(cfg.run.progress && comm.size == 1);
  drl_train_summary sum;
  if (drl_train(&cfg, &comm, &sum) != DRL_OK) {
    char what[64];
    snprintf(what, sizeof what, comm.size > 1 ? "train (rank %d of %d)" : "train", comm.rank, comm.size);
    cli_fail(what);
    reported = 1;
    if (comm.size > 1) {
      /* Peers that met the same error (a bad file or key is bad on every rank) print theirs before the abort ends
       * them; a rank that failed alone ends the job as soon. */
      struct timespec grace = {2, 0};
      nanosleep(&grace, NULL);
    }
    drl_comm_abort(&comm, CLI_FAILED); /* the peers would otherwise wait for this rank */
    drl_comm_finalize(&comm);
    return CLI_FAILED;
  }
  drl_comm_finalize(&comm);
  print_summary(&sum);
  return CLI_OK;
}

const cli_verb cli_verb_train = {"train", "train a policy (the default configuration when no file is given)", usage,
                                 parse_train, run_train};
