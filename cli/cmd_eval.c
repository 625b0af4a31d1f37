/* dynrl eval POLICY --data SET.h5 [...]: greedy responses to a prompt set, scored, with each response kept. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data/text_reward.h"
#include "engine/policy_eval.h"

static const char usage[] =
    "usage: dynrl eval POLICY --data SET.h5 [--reward SPEC] [--n N] [--max-new-tokens N] [--batch B] [-o FILE.h5]\n"
    "                  [--tokenizer DIR] [--device auto|cpu|cuda]\n"
    "\n"
    "POLICY is a Hugging Face directory, a policy file of `dynrl import`, or a checkpoint. Decodes a greedy response\n"
    "to each of the first N prompts of SET.h5 (default all), B at a time (default 16), each until an EOS id of the\n"
    "policy or N new tokens (default 256 for a text set, the longest answer for a built-in task's), and scores it.\n"
    "A text set (`dynrl data import`, made with the policy's tokenizer) is scored by SPEC, weighted rewards on the\n"
    "decoded response as grpo.text_reward (default exact; e.g. gsm8k or gsm8k:1,think_format:0.1); a response is\n"
    "correct when the first reward of SPEC scores 1. A built-in task's set is scored by exact match. Prints the\n"
    "accuracy and the mean reward, and writes each response, its reward, length and correctness to FILE.h5\n"
    "(default eval.h5; docs/text.md).\n";

static int parse_eval(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  const char *n_text = "0", *max_text = "0", *batch_text = "16", *device_text = "auto";
  a->out = "eval.h5";
  const char *names[] = {"--data", "--reward", "--n", "--max-new-tokens", "--batch", "-o", "--tokenizer", "--device"};
  const char **slots[] = {&a->data, &a->reward, &n_text, &max_text, &batch_text, &a->out, &a->tokenizer,
                          &device_text};
  int rc = cli_parse_options(&cli_verb_eval, argc, argv, names, slots, 8, &a->file, "POLICY");
  if (rc != CLI_OK) return rc;
  if (!a->data) return cli_usage_error(&cli_verb_eval, "missing --data");
  if (cli_parse_i64(n_text, 0, INT64_MAX, &a->n)) return cli_usage_error(&cli_verb_eval, "--n must be >= 0");
  if (cli_parse_i64(max_text, 0, 1 << 20, &a->max_new))
    return cli_usage_error(&cli_verb_eval, "--max-new-tokens must be 0..2^20");
  if (cli_parse_i64(batch_text, 1, 4096, &a->batch)) return cli_usage_error(&cli_verb_eval, "--batch must be 1..4096");
  if (cli_parse_device(device_text, &a->backend))
    return cli_usage_error(&cli_verb_eval, "--device must be auto, cpu or cuda");
  drl_text_reward_spec spec;
  if (a->reward && drl_text_reward_parse(a->reward, &spec) != DRL_OK)
    return cli_usage_error(&cli_verb_eval, "--reward: %s", drl_last_error());
  return CLI_OK;
}

/* A progress bar on a terminal; elsewhere (a log) a line at every tenth. */
typedef struct progress {
  int tty, last_tenth;
  double t0;
} progress;

static void show_progress(void *user, int64_t done, int64_t n, int64_t correct) {
  progress *p = (progress *)user;
  int tenth = (int)(10 * done / n);
  if (!p->tty && tenth == p->last_tenth && done != n) return;
  p->last_tenth = tenth;
  char bar[31];
  int fill = (int)(30 * done / n);
  for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '#' : '.';
  bar[30] = '\0';
  fprintf(stderr, "%s[%s] %lld/%lld  accuracy %.3f  %.1f s%s", p->tty ? "\r" : "", bar, (long long)done, (long long)n,
          (double)correct / (double)done, cli_now() - p->t0, p->tty && done < n ? "" : "\n");
  fflush(stderr);
}

static double mean_length(const drl_policy_eval *ev) {
  double sum = 0.0;
  for (int64_t i = 0; i < ev->n; ++i) sum += ev->length[i];
  return sum / (double)ev->n;
}

static drl_status evaluate(const cli_args *a, drl_policy *p, drl_dataset *ds, drl_policy_eval *ev) {
  DRL_TRY(drl_dataset_read(a->data, ds));
  DRL_TRY(drl_policy_check_dataset(p, ds, a->data));
  int64_t n = a->n > 0 && a->n < ds->prompts.n ? a->n : ds->prompts.n;
  if (n < 1) return DRL_FAIL(DRL_ERR_FORMAT, "%s holds no prompts", a->data);
  int max_new = (int)a->max_new;
  if (max_new == 0)
    max_new = drl_dataset_is_text(ds) ? 256 : (int)drl_token_seqs_longest(&ds->answers, 0, ds->answers.n);
  if (max_new < 1) return DRL_FAIL(DRL_ERR_FORMAT, "%s has no answers to size the responses: pass --max-new-tokens",
                                   a->data);
  int P = (int)drl_token_seqs_longest(&ds->prompts, 0, n);
  if (P >= p->cfg.max_seq)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: a prompt of %d tokens; the policy holds at most %d", a->data, P,
                    p->cfg.max_seq);
  int B = (int)(a->batch < n ? a->batch : n);
  DRL_TRY(drl_policy_load(p, a->backend, 0, B, P + max_new));
  progress pr = {isatty(2), -1, cli_now()};
  DRL_TRY(drl_policy_evaluate(p, ds, n, a->reward, max_new, show_progress, &pr, ev));
  printf("accuracy %.4f (%lld of %lld), mean reward %.4f, mean length %.1f tokens (reward: %s)\n", ev->accuracy,
         (long long)(ev->accuracy * (double)n + 0.5), (long long)n, ev->mean_reward, mean_length(ev), ev->reward_spec);
  if (cli_make_parent_dirs(a->out)) return DRL_FAIL(DRL_ERR_IO, "cannot create the directory of %s", a->out);
  DRL_TRY(drl_policy_eval_write(ev, a->out, a->file, a->data, max_new));
  printf("wrote each response, its reward and length to %s\n", a->out);
  return DRL_OK;
}

static int run_eval(int argc, char **argv) {
  cli_args a;
  int rc = parse_eval(argc, argv, &a);
  if (rc != CLI_OK) return rc;
  drl_policy p;
  if (drl_policy_open(a.file, a.tokenizer, &p) != DRL_OK) return cli_fail(argv[0]);
  drl_dataset ds;
  memset(&ds, 0, sizeof ds);
  drl_policy_eval ev;
  memset(&ev, 0, sizeof ev);
  drl_status st = evaluate(&a, &p, &ds, &ev);
  drl_policy_eval_free(&ev);
  drl_dataset_free(&ds);
  drl_policy_close(&p);
  return st == DRL_OK ? CLI_OK : cli_fail(argv[0]);
}

const cli_verb cli_verb_eval = {"eval", "score a policy's greedy responses to a prompt set", usage, parse_eval,
                                run_eval};
