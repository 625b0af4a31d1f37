/* Verifiable rewards on decoded response text (DESIGN §13; research/real-models.md §5): ports of the peers' reward
 * functions, scored the same on every input (tests/fixtures/rewards/cases.jsonl holds what the peers return).
 *
 * Rewards (response and answer are UTF-8; "characters" are code points, as Python's str counts them):
 *   gsm8k           verl gsm8k.py compute_score(method="strict"): in the last 300 characters, the last
 *                   "#### " followed by -?[0-9.,]+, commas removed. 0 when there is none, 1 when it equals the answer
 *                   string exactly (no numeric comparison, the answer is not normalised), else 0.
 *   gsm8k_flexible  the same with method="flexible": the last -?[0-9.,]+ of the last 300 characters that is not "."
 *                   (the first match when every match is "."), commas kept.
 *   math            verl math_reward.py: the last \boxed{...} (brace-matched; a "\boxed " anywhere wins: its tail up
 *                   to the first '$'; \fbox is found but always scores 0, as remove_boxed rejects it), then equality
 *                   after strip_string (lm-eval's hendrycks_math normalisation) of both sides. The whole response is
 *                   searched. 1 / 0.
 *   answer_tag      verl math_dapo.py (DAPO, Minerva normalisation): in the last 300 characters, the last match of
 *                   (?i)Answer\s*:\s*([^\n]+) ("[INVALID]" when none), compared after normalize_final_answer of both
 *                   sides. +1 / -1.
 *   think_format    TRL think_format_reward, ^<think>(?!.*<think>)(.*?)</think>.*$ with DOTALL: the response opens
 *                   with <think>, holds no second <think>, and closes it. 1 / 0; the answer is ignored.
 *   exact           the response and the answer equal after Python's str.strip() (Unicode whitespace). 1 / 0.
 *
 * Python semantics kept on purpose: \s and strip() are str.isspace() (including U+001C..U+001F, U+0085, U+00A0),
 * (?i) lets U+017F (long s) match 's', str.isdigit() includes superscripts and circled digits (Unicode 14.0, CPython
 * 3.11), int() refuses more than 4300 digits, and a normalisation step that raises in Python makes math compare the
 * raw strings, as verl's is_equiv does. A byte that is not valid UTF-8 counts as one character of its own (Python's
 * surrogateescape). Sources: verl b178a3cd56f58b2d502255daba591e92833930a7 (0.8.0.dev), TRL
 * f2cd57710ae345ea6428ae95363267fcf38a3dc8. */
#ifndef DRL_TEXT_REWARD_H
#define DRL_TEXT_REWARD_H

#include <stddef.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_text_reward_kind {
  DRL_REWARD_GSM8K = 0,
  DRL_REWARD_GSM8K_FLEXIBLE,
  DRL_REWARD_MATH,
  DRL_REWARD_ANSWER_TAG,
  DRL_REWARD_THINK_FORMAT,
  DRL_REWARD_EXACT,
  DRL_REWARD_KINDS
} drl_text_reward_kind;

/* The reward names in kind order, NULL-terminated: {"gsm8k", "gsm8k_flexible", "math", ..., NULL}. */
const char *const *drl_text_reward_names(void);

/* *kind = the reward named by name[0..len); otherwise DRL_ERR_INVALID_ARG naming it and listing the known ones. */
drl_status drl_text_reward_lookup(const char *name, size_t len, drl_text_reward_kind *kind);

/* *score = reward kind of response[0..response_len) against answer[0..answer_len) (rules above; NUL bytes are
 * ordinary characters). gsm8k uses verl's defaults format_score 0 and score 1. */
drl_status drl_text_reward_score(drl_text_reward_kind kind, const char *response, size_t response_len,
                                 const char *answer, size_t answer_len, double *score);

/* verl's gsm8k compute_score with its knobs: 0 when nothing is extracted, score on a match, else format_score. */
drl_status drl_reward_gsm8k(const char *response, size_t response_len, const char *answer, size_t answer_len,
                            int flexible, double format_score, double score, double *out);

/* A weighted sum of distinct rewards. */
typedef struct drl_text_reward_spec {
  int n;
  drl_text_reward_kind kind[DRL_REWARD_KINDS];
  double weight[DRL_REWARD_KINDS];
} drl_text_reward_spec;

/* Parses "name[:weight],..." (e.g. "gsm8k:1.0,think_format:0.1"; weight 1 when omitted, finite; spaces around
 * names and weights allowed; each reward at most once). A bad spec is DRL_ERR_INVALID_ARG naming the bad term. */
drl_status drl_text_reward_parse(const char *spec, drl_text_reward_spec *out);

/* *reward = sum over the spec's terms of weight * score. */
drl_status drl_text_reward_eval(const drl_text_reward_spec *spec, const char *response, size_t response_len,
                                const char *answer, size_t answer_len, double *reward);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TEXT_REWARD_H */
