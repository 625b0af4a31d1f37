/* The dynrl command: one file per verb; this header holds what they share. */
#ifndef DRL_CLI_H
#define DRL_CLI_H

#include <dynrl.h>

#include "engine/config.h"
#include "kernels/device.h"

/* Exit codes: 0 success, 1 a failed operation (message printed), 2 wrong usage (usage printed). */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

#define CLI_MAX_SETS 256

/* A verb's command line, parsed and range-checked before anything is loaded, written or run (so the parsing can be
 * tested on its own). Strings point into argv. */
typedef struct cli_args {
  const char *sub;                 /* config: "print" or "keys"; data: "gen" or "info"; otherwise NULL */
  const char *file;                /* train, config print: CFG.yaml or NULL; data info: FILE.h5; sample: CKPT.h5 */
  const char *sets[CLI_MAX_SETS];  /* train, config print: the overrides "section.key=value", in order */
  int n_sets;
  char log_level[64];              /* train: --log-level LEVEL as the override "run.log_level=LEVEL" */
  const char *task, *out;          /* data gen: --task and -o; sample, import, export: -o; export: the dtype */
  long long n, seed, size, steps;  /* data gen: --n --seed --size; sample: --n --steps --seed; export: --shard-mb */
  const char *tokenizer, *template_name; /* data import: --tokenizer, --template */
  long long max_prompt;            /* data import: --max-prompt-tokens */
  int drop_long;                   /* data import: --drop-long */
  const char *prompt, *system;     /* generate: --prompt, --system */
  const char *data, *reward;       /* eval: --data, --reward */
  drl_backend backend;             /* generate, eval: --device */
  double temperature, top_p;       /* generate */
  long long top_k, max_new, batch; /* generate: --top-k; generate, eval: --max-new-tokens; eval: --batch */
} cli_args;

typedef struct cli_verb {
  const char *name;
  const char *summary;  /* one line for `dynrl help` */
  const char *usage;    /* full usage text for `dynrl help VERB` and usage errors */
  /* Parses argv (argv[0] is the verb) into *args without touching a file; returns CLI_OK, or CLI_USAGE with the
   * problem and the usage printed. */
  int (*parse)(int argc, char **argv, cli_args *args);
  int (*run)(int argc, char **argv); /* parse, then do it */
} cli_verb;

extern const cli_verb cli_verb_train;
extern const cli_verb cli_verb_config;
extern const cli_verb cli_verb_data;
extern const cli_verb cli_verb_sample;
extern const cli_verb cli_verb_import;
extern const cli_verb cli_verb_export;
extern const cli_verb cli_verb_generate;
extern const cli_verb cli_verb_eval;

/* Prints "dynrl: error: <message>" with the library's last error and returns CLI_FAILED. */
int cli_fail(const char *what);

/* Prints "dynrl VERB: <problem>" and the verb's usage to stderr; returns CLI_USAGE. */
int cli_usage_error(const cli_verb *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Matches `--name value` or `--name=value` at argv[*i]; on a match stores the value, advances *i and returns 1.
 * Returns -1 when the option is present but its value is missing, 0 when argv[*i] is another argument. */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Parses argv[1..argc): the options names[0..n) (as cli_option) into *slots[k], and exactly one other argument
 * into *positional (named `what` in messages). Returns CLI_OK, or CLI_USAGE with the problem and verb's usage
 * printed (a missing value, an unknown option, a second or no positional argument). */
int cli_parse_options(const cli_verb *verb, int argc, char **argv, const char *const *names,
                      const char **const *slots, int n, const char **positional, const char *what);

/* Seconds on the monotonic clock. */
double cli_now(void);

/* Parses "auto" (CUDA when a GPU is visible, else the CPU), "cpu" or "cuda"; returns 0 on success. */
int cli_parse_device(const char *text, drl_backend *out);

/* Parses a whole finite decimal number within [lo, hi]; returns 0 on success. */
int cli_parse_f64(const char *text, double lo, double hi, double *out);

/* Parses a whole decimal integer within [lo, hi]; returns 0 on success. */
int cli_parse_i64(const char *text, long long lo, long long hi, long long *out);

/* 1 when path is a dynrl checkpoint (or policy file): it holds a run's configuration. */
int cli_is_checkpoint(const char *path);

/* The configuration args name (a checkpoint's file: the configuration stored in it): the embedded defaults or args->file, then each of args->sets in order, then the
 * rules between keys. Returns CLI_OK, or CLI_FAILED with the message printed (cfg is then freed). */
int cli_load_config(const cli_args *args, drl_config *cfg);

/* Creates the directories leading to path (like mkdir -p of its parent); prints the problem and returns non-zero. */
int cli_make_parent_dirs(const char *path);

#endif /* DRL_CLI_H */
