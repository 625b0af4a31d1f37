/* The dynrl command: one file per verb; this header holds what they share. */
#ifndef DRL_CLI_H
#define DRL_CLI_H

#include <dynrl.h>

/* Exit codes: 0 success, 1 a failed operation (message printed), 2 wrong usage (usage printed). */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

typedef struct cli_verb {
  const char *name;
  const char *summary;  /* one line for `dynrl help` */
  const char *usage;    /* full usage text for `dynrl help VERB` and usage errors */
  int (*run)(int argc, char **argv); /* argv[0] is the verb */
} cli_verb;

extern const cli_verb cli_verb_train;
extern const cli_verb cli_verb_config;
extern const cli_verb cli_verb_data;
extern const cli_verb cli_verb_sample;

/* Prints "dynrl: error: <message>" with the library's last error and returns CLI_FAILED. */
int cli_fail(const char *what);

/* Prints "dynrl VERB: <problem>" and the verb's usage to stderr; returns CLI_USAGE. */
int cli_usage_error(const cli_verb *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Matches `--name value` or `--name=value` at argv[*i]; on a match stores the value, advances *i and returns 1.
 * Returns -1 when the option is present but its value is missing, 0 when argv[*i] is another argument. */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Parses a whole decimal integer within [lo, hi]; returns 0 on success. */
int cli_parse_i64(const char *text, long long lo, long long hi, long long *out);

/* Creates the directories leading to path (like mkdir -p of its parent); prints the problem and returns non-zero. */
int cli_make_parent_dirs(const char *path);

#endif /* DRL_CLI_H */
