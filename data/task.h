/* Built-in verifiable-reward tasks (DESIGN §11): a generator that fills a drl_dataset from a seed, and a verifier
 * that scores a sampled response against its prompt. All text is character-level (data/vocab.h); every answer ends
 * with the end-of-sequence character '.'.
 *
 * Tasks (vocabulary: token id i is the i-th character; `size` is the task's one knob):
 *   add      prompt "A+B=", answer "C." with C = A + B in decimal, no leading zeros.
 *            Vocabulary "0123456789+=." (digit d has id d; '+' 10, '=' 11, '.' 12).
 *            size = maximum digits per operand, 1..9, default 3. Each operand first draws its digit count uniformly
 *            in 1..size, then its value uniformly among the numbers with that many digits (0..9 for one digit), so
 *            short numbers are as common as long ones.
 *   sort     prompt "S=" with S a string of `size` uniform random digits, answer the digits of S in ascending order
 *            then ".". Vocabulary "0123456789=." (digit d has id d; '=' 10, '.' 11). size = length of S, 1..32,
 *            default 6.
 *   keyfork  the D³S benchmark of research/d3s-and-treerpo.md B.8. Prompt "QQ=": the two decimal digits of a prompt
 *            id q (e.g. "07="). The response is DRL_KEYFORK_LEN = 12 symbols over the DRL_KEYFORK_SYMBOLS = 6
 *            characters "abcdef" (symbol index 0..5); positions 3 and 8 are the forks, the other 10 are filler.
 *            Reward 1 iff every filler is 'a' and (sym[3] + sym[8]) mod 6 == q mod 6. The stored answer is the
 *            canonical correct response: all 'a' except sym[8] = q mod 6, then ".".
 *            Vocabulary "abcdef0123456789=." (symbol s has id s, so a sampler over ids 0..5 samples symbols;
 *            digit d has id 6 + d; '=' 16, '.' 17). size = number of distinct prompts Q, 1..100, default 32;
 *            each example draws q uniformly in 0..Q-1 (so a seed changes the prompt order).
 *
 * Reward rules shared by all tasks:
 *   - the scored part of a response ("content") is everything before its first EOS, or the whole response when
 *     there is none (a sampler may stop at EOS and strip it, or stop at a length limit); anything after the first
 *     EOS is ignored, and only the content's ids must lie inside the vocabulary;
 *   - exact reward: 1 iff the content equals the answer without its EOS (keyfork: satisfies the rule above, so the
 *     content must be exactly 12 symbols), else 0; an empty content scores 0;
 *   - partial reward (partial != 0): add: the digit positions aligned from the right that match, divided by
 *     max(content length, answer digits); sort: positions aligned from the left that match, divided by
 *     max(content length, answer length); 0 when the content holds a non-digit (malformed) or is empty.
 *     keyfork has no partial credit (its reward is binary by design; partial is ignored).
 *   - a prompt that does not parse in the task's format, or an id outside the vocabulary, is DRL_ERR_INVALID_ARG.
 *
 * Randomness (DESIGN §3): example i of a task reads only the Philox stream (seed, step 0,
 * tag drl_rng_tag(DRL_RNG_DATA, uid, 0)) at elements i * DRL_TASK_RNG_STRIDE + k, k < DRL_TASK_RNG_STRIDE, with
 * uid 1 (add), 2 (sort), 3 (keyfork): example i is the same whatever n is, and generation may be split freely.
 * Other users of DRL_RNG_DATA must use other uids. */
#ifndef DRL_TASK_H
#define DRL_TASK_H

#include <stdint.h>

#include "data/dataset.h"
#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DRL_KEYFORK_LEN 12        /* response symbols before the EOS */
#define DRL_KEYFORK_SYMBOLS 6     /* answer symbols 'a'..'f' = ids 0..5 */
#define DRL_KEYFORK_FORK0 3       /* the two decisive positions */
#define DRL_KEYFORK_FORK1 8
#define DRL_TASK_RNG_STRIDE 64    /* Philox elements reserved per generated example */

/* The known task names, NULL-terminated: {"add", "sort", "keyfork", NULL}. */
const char *const *drl_task_names(void);

/* OK iff task names a built-in task; otherwise DRL_ERR_INVALID_ARG listing the known tasks. */
drl_status drl_task_check(const char *task);

/* The task's vocabulary string, or NULL (with the error recorded) for an unknown task. */
const char *drl_task_vocab(const char *task);

/* The task's default size, or -1 (with the error recorded) for an unknown task. */
int drl_task_default_size(const char *task);

/* The inclusive range of sizes the task accepts (size 0 always means the default). */
drl_status drl_task_size_range(const char *task, int *min_size, int *max_size);

/* The length of the longest correct response including its EOS, for a sampler's length limit (size 0 = default);
 * -1 (with the error recorded) for an unknown task or a size out of range. */
int64_t drl_task_max_response_len(const char *task, int size);

/* Fills out (overwritten, not freed first) with n examples (0..DRL_DATASET_MAX_SEQS) of task from seed: task, vocab,
 * format_version, prompts and answers, each array one malloc'd block freed by drl_dataset_free. size 0 = default.
 * On failure out is left zeroed. */
drl_status drl_task_generate(const char *task, int64_t n, uint64_t seed, int size, drl_dataset *out);

/* *reward = the task's verifier score in [0, 1] of response (ids; EOS optional, anything after it ignored) for prompt,
 * exact match when partial == 0, partial credit otherwise (rules above). */
drl_status drl_task_reward(const char *task, const int32_t *prompt, int64_t prompt_len, const int32_t *response,
                           int64_t response_len, int partial, float *reward);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TASK_H */
