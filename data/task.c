#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vocab.h"
#include "kernels/philox.h"

/* Text buffers: the longest prompt or answer any task can generate (sort at size 32: 33 characters) fits with room;
 * the verifier accepts longer hand-written prompts up to PROMPT_CAP - 1 characters. */
#define TEXT_CAP 80
#define PROMPT_CAP 160
#define ADD_PARSE_DIGITS 60 /* operands in a prompt: the verifier adds digit strings, so only this bounds them */

typedef struct task_def {
  const char *name;
  const char *vocab;
  uint32_t uid; /* Philox uid of the generator's stream (task.h) */
  int default_size, min_size, max_size;
  /* Writes example i's prompt and answer texts (NUL-terminated, answer with its EOS). */
  void (*gen)(uint64_t seed, uint32_t tag, int size, int64_t i, char *prompt, char *answer);
  /* Scores the content (ids before the EOS, already checked in range) against the prompt text. */
  drl_status (*reward)(const char *vocab, const char *prompt, const int32_t *content, int64_t m, int partial,
                       float *reward);
  int64_t (*max_response_len)(int size);
} task_def;

/* ---------------------------------------------------------------- randomness */

/* Raw word k of example i's stream. */
static uint32_t ex_word(uint64_t seed, uint32_t tag, int64_t i, int k) {
  return drl_rng_u32(seed, 0, tag, (uint64_t)i * DRL_TASK_RNG_STRIDE + (uint64_t)k);
}

/* Uniform in [0, m) by reduction: relative bias at most m / 2^bits of x (below 2^-25 for the ranges used here). */
static uint64_t below(uint64_t x, uint64_t m) { return x % m; }

static int64_t pow10_i64(int d) {
  int64_t p = 1;
  while (d-- > 0) p *= 10;
  return p;
}

/* ---------------------------------------------------------------- parsing helpers */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Number of leading digits of s. */
static int digit_run(const char *s) {
  int n = 0;
  while (is_digit(s[n])) ++n;
  return n;
}

/* Reward of a digit response (m tokens before EOS) against the target digits: 1/0 for an exact match; with partial,
 * the fraction of positions that agree (aligned from the right or the left) over the longer length, and 0 for an
 * empty response or one holding a non-digit. */
static float score_digits(const char *vocab, const int32_t *content, int64_t m, const char *target, int64_t nt,
                          int partial, int from_right) {
  if (!partial) {
    int ok = m == nt;
    for (int64_t j = 0; ok && j < m; ++j) ok = vocab[content[j]] == target[j];
    return ok ? 1.0f : 0.0f;
  }
  if (m == 0) return 0.0f;
  for (int64_t j = 0; j < m; ++j)
    if (!is_digit(vocab[content[j]])) return 0.0f;
  int64_t matches = 0;
  for (int64_t j = 0; j < m && j < nt; ++j)
    matches += from_right ? vocab[content[m - 1 - j]] == target[nt - 1 - j] : vocab[content[j]] == target[j];
  return (float)((double)matches / (double)(m > nt ? m : nt));
}

/* ---------------------------------------------------------------- add */

/* An operand with a uniform digit count in 1..size, then a uniform value with that many digits (words k..k+2). */
static int64_t add_operand(uint64_t seed, uint32_t tag, int size, int64_t i, int k) {
  int d = 1 + (int)below(ex_word(seed, tag, i, k), (uint64_t)size);
  int64_t lo = d == 1 ? 0 : pow10_i64(d - 1);
  int64_t hi = pow10_i64(d) - 1;
  uint64_t r = ((uint64_t)ex_word(seed, tag, i, k + 1) << 32) | ex_word(seed, tag, i, k + 2);
  return lo + (int64_t)below(r, (uint64_t)(hi - lo + 1));
}

static void add_gen(uint64_t seed, uint32_t tag, int size, int64_t i, char *prompt, char *answer) {
  int64_t a = add_operand(seed, tag, size, i, 0);
  int64_t b = add_operand(seed, tag, size, i, 3);
  snprintf(prompt, TEXT_CAP, "%lld+%lld=", (long long)a, (long long)b);
  snprintf(answer, TEXT_CAP, "%lld.", (long long)(a + b));
}

/* sum = decimal a + b of digit strings a[0..na), b[0..nb), without leading zeros ("0" for zero); returns its length. */
static int add_digit_strings(const char *a, int na, const char *b, int nb, char *sum) {
  char rev[ADD_PARSE_DIGITS + 2];
  int n = 0, carry = 0;
  for (int j = 0; j < na || j < nb || carry; ++j) {
    int s = carry + (j < na ? a[na - 1 - j] - '0' : 0) + (j < nb ? b[nb - 1 - j] - '0' : 0);
    rev[n++] = (char)('0' + s % 10);
    carry = s / 10;
  }
  while (n > 1 && rev[n - 1] == '0') --n; /* operands may carry leading zeros */
  for (int j = 0; j < n; ++j) sum[j] = rev[n - 1 - j];
  sum[n] = '\0';
  return n;
}

static drl_status add_reward(const char *vocab, const char *prompt, const int32_t *content, int64_t m, int partial,
                             float *reward) {
  int na = digit_run(prompt);
  const char *b = prompt + na + 1;
  int nb = prompt[na] == '+' ? digit_run(b) : 0;
  if (na == 0 || nb == 0 || b[nb] != '=' || b[nb + 1] != '\0' || na > ADD_PARSE_DIGITS || nb > ADD_PARSE_DIGITS)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "add: prompt \"%s\" is not \"A+B=\" with 1..%d digits per operand", prompt,
                    ADD_PARSE_DIGITS);
  char sum[ADD_PARSE_DIGITS + 2];
  int ns = add_digit_strings(prompt, na, b, nb, sum);
  /* Aligned from the right: the units digit of the response against the units digit of the sum. */
  *reward = score_digits(vocab, content, m, sum, ns, partial, 1);
  return DRL_OK;
}

static int64_t add_max_response_len(int size) { return (int64_t)size + 2; /* carry digit + EOS */ }

/* ---------------------------------------------------------------- sort */

#define SORT_PARSE_DIGITS 128

static void sort_gen(uint64_t seed, uint32_t tag, int size, int64_t i, char *prompt, char *answer) {
  int count[10] = {0};
  for (int k = 0; k < size; ++k) {
    int d = (int)below(ex_word(seed, tag, i, k), 10);
    prompt[k] = (char)('0' + d);
    ++count[d];
  }
  prompt[size] = '=';
  prompt[size + 1] = '\0';
  int n = 0;
  for (int d = 0; d < 10; ++d)
    while (count[d]-- > 0) answer[n++] = (char)('0' + d);
  answer[n++] = DRL_VOCAB_EOS_CHAR;
  answer[n] = '\0';
}

static drl_status sort_reward(const char *vocab, const char *prompt, const int32_t *content, int64_t m, int partial,
                              float *reward) {
  int ns = digit_run(prompt);
  if (ns == 0 || ns > SORT_PARSE_DIGITS || prompt[ns] != '=' || prompt[ns + 1] != '\0')
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "sort: prompt \"%s\" is not \"S=\" with 1..%d digits", prompt,
                    SORT_PARSE_DIGITS);
  int count[10] = {0};
  for (int j = 0; j < ns; ++j) ++count[prompt[j] - '0'];
  char sorted[SORT_PARSE_DIGITS + 1];
  int n = 0;
  for (int d = 0; d < 10; ++d)
    while (count[d]-- > 0) sorted[n++] = (char)('0' + d);
  *reward = score_digits(vocab, content, m, sorted, ns, partial, 0);
  return DRL_OK;
}

static int64_t sort_max_response_len(int size) { return (int64_t)size + 1; }

/* ---------------------------------------------------------------- keyfork */

static void keyfork_gen(uint64_t seed, uint32_t tag, int size, int64_t i, char *prompt, char *answer) {
  int q = (int)below(ex_word(seed, tag, i, 0), (uint64_t)size);
  snprintf(prompt, TEXT_CAP, "%02d=", q);
  for (int k = 0; k < DRL_KEYFORK_LEN; ++k) answer[k] = 'a';
  /* sym[3] = 0, so sym[8] alone carries q mod 6. */
  answer[DRL_KEYFORK_FORK1] = (char)('a' + q % DRL_KEYFORK_SYMBOLS);
  answer[DRL_KEYFORK_LEN] = DRL_VOCAB_EOS_CHAR;
  answer[DRL_KEYFORK_LEN + 1] = '\0';
}

static drl_status keyfork_reward(const char *vocab, const char *prompt, const int32_t *content, int64_t m,
                                 int partial, float *reward) {
  (void)partial; /* binary by design: the benchmark's signal is the two fork tokens */
  if (!(is_digit(prompt[0]) && is_digit(prompt[1]) && prompt[2] == '=' && prompt[3] == '\0'))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "keyfork: prompt \"%s\" is not two digits and '='", prompt);
  int q = (prompt[0] - '0') * 10 + (prompt[1] - '0');
  *reward = 0.0f;
  if (m != DRL_KEYFORK_LEN) return DRL_OK;
  int sym[DRL_KEYFORK_LEN];
  for (int k = 0; k < DRL_KEYFORK_LEN; ++k) {
    char c = vocab[content[k]];
    if (c < 'a' || c >= 'a' + DRL_KEYFORK_SYMBOLS) return DRL_OK; /* a digit or '=' where a symbol belongs */
    sym[k] = c - 'a';
    if (k != DRL_KEYFORK_FORK0 && k != DRL_KEYFORK_FORK1 && sym[k] != 0) return DRL_OK;
  }
  int fork_sum = sym[DRL_KEYFORK_FORK0] + sym[DRL_KEYFORK_FORK1];
  *reward = fork_sum % DRL_KEYFORK_SYMBOLS == q % DRL_KEYFORK_SYMBOLS ? 1.0f : 0.0f;
  return DRL_OK;
}

static int64_t keyfork_max_response_len(int size) {
  (void)size;
  return DRL_KEYFORK_LEN + 1;
}

/* ---------------------------------------------------------------- registry */

static const task_def TASKS[] = {
    {"add", "0123456789+=.", DRL_UID_TASK_ADD, 3, 1, 9, add_gen, add_reward, add_max_response_len},
    {"sort", "0123456789=.", DRL_UID_TASK_SORT, 6, 1, 32, sort_gen, sort_reward, sort_max_response_len},
    {"keyfork", "abcdef0123456789=.", DRL_UID_TASK_KEYFORK, 32, 1, 100, keyfork_gen, keyfork_reward,
     keyfork_max_response_len},
};
#define N_TASKS ((int)(sizeof TASKS / sizeof TASKS[0]))

static const char *const TASK_NAMES[] = {"add", "sort", "keyfork", NULL};

const char *const *drl_task_names(void) { return TASK_NAMES; }

/* The task's definition, or NULL with an error listing the known tasks. */
static const task_def *find_task(const char *task) {
  for (int t = 0; task && t < N_TASKS; ++t)
    if (strcmp(TASKS[t].name, task) == 0) return &TASKS[t];
  char known[128] = "";
  for (int t = 0; t < N_TASKS; ++t) {
    size_t len = strlen(known);
    snprintf(known + len, sizeof known - len, "%s%s", t ? ", " : "", TASKS[t].name);
  }
  DRL_FAIL(DRL_ERR_INVALID_ARG, "unknown task '%s' (known tasks: %s)", task ? task : "(null)", known);
  return NULL;
}

drl_status drl_task_check(const char *task) { return find_task(task) ? DRL_OK : DRL_ERR_INVALID_ARG; }

const char *drl_task_vocab(const char *task) {
  const task_def *t = find_task(task);
  return t ? t->vocab : NULL;
}

int drl_task_default_size(const char *task) {
  const task_def *t = find_task(task);
  return t ? t->default_size : -1;
}

drl_status drl_task_size_range(const char *task, int *min_size, int *max_size) {
  const task_def *t = find_task(task);
  if (!t) return DRL_ERR_INVALID_ARG;
  if (min_size) *min_size = t->min_size;
  if (max_size) *max_size = t->max_size;
  return DRL_OK;
}

/* Resolves size 0 to the default and checks the range. */
static drl_status resolve_size(const task_def *t, int size, int *resolved) {
  if (size == 0) size = t->default_size;
  if (size < t->min_size || size > t->max_size)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s': size %d out of range %d..%d (0 = default %d)", t->name, size,
                    t->min_size, t->max_size, t->default_size);
  *resolved = size;
  return DRL_OK;
}

int64_t drl_task_max_response_len(const char *task, int size) {
  const task_def *t = find_task(task);
  if (!t || resolve_size(t, size, &size) != DRL_OK) return -1;
  return t->max_response_len(size);
}

drl_status drl_task_generate(const char *task, int64_t n, uint64_t seed, int size, drl_dataset *out) {
  if (!out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "task_generate: out is NULL");
  memset(out, 0, sizeof *out);
  const task_def *t = find_task(task);
  if (!t) return DRL_ERR_INVALID_ARG;
  if (n < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s': example count %lld is negative", t->name, (long long)n);
  if (n > DRL_DATASET_MAX_SEQS) /* a file readers would refuse */
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s': %lld examples requested, a dataset holds at most %lld", t->name,
                    (long long)n, (long long)DRL_DATASET_MAX_SEQS);
  DRL_TRY(resolve_size(t, size, &size));
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, t->uid, 0);
  char prompt[TEXT_CAP], answer[TEXT_CAP];

  /* Pass 1 sizes the flat arrays; pass 2 regenerates each example (cheap, addressed) and encodes it in place. */
  int64_t prompt_tokens = 0, answer_tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    t->gen(seed, tag, size, i, prompt, answer);
    prompt_tokens += (int64_t)strlen(prompt);
    answer_tokens += (int64_t)strlen(answer);
  }
  drl_status st = DRL_OK;
  DRL_TRY_GOTO(drl_token_seqs_alloc(&out->prompts, n, prompt_tokens));
  DRL_TRY_GOTO(drl_token_seqs_alloc(&out->answers, n, answer_tokens));
  for (int64_t i = 0; i < n; ++i) {
    t->gen(seed, tag, size, i, prompt, answer);
    int64_t np = 0, na = 0;
    int64_t po = out->prompts.offsets[i], ao = out->answers.offsets[i];
    if (drl_vocab_encode(t->vocab, prompt, out->prompts.tokens + po, prompt_tokens - po, &np) != DRL_OK ||
        drl_vocab_encode(t->vocab, answer, out->answers.tokens + ao, answer_tokens - ao, &na) != DRL_OK) {
      st = drl_fail_context(DRL_ERR_INTERNAL, "task '%s' example %lld", t->name, (long long)i);
      goto done;
    }
    out->prompts.offsets[i + 1] = po + np;
    out->answers.offsets[i + 1] = ao + na;
  }
  snprintf(out->task, sizeof out->task, "%s", t->name);
  snprintf(out->vocab, sizeof out->vocab, "%s", t->vocab);
  out->format_version = DRL_DATASET_FORMAT_VERSION;
done:
  if (st != DRL_OK) {
    drl_token_seqs_free(&out->prompts);
    drl_token_seqs_free(&out->answers);
    memset(out, 0, sizeof *out);
  }
  return st;
}

drl_status drl_task_reward(const char *task, const int32_t *prompt, int64_t prompt_len, const int32_t *response,
                           int64_t response_len, int partial, float *reward) {
  const task_def *t = find_task(task);
  if (!t) return DRL_ERR_INVALID_ARG;
  if (!reward || prompt_len < 0 || response_len < 0 || (prompt_len > 0 && !prompt) ||
      (response_len > 0 && !response))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s' reward: bad arguments (prompt_len %lld, response_len %lld)",
                    t->name, (long long)prompt_len, (long long)response_len);
  *reward = 0.0f;
  if (prompt_len >= PROMPT_CAP)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s' reward: prompt of %lld tokens is longer than any valid prompt",
                    t->name, (long long)prompt_len);
  char text[PROMPT_CAP];
  drl_status st = drl_vocab_decode(t->vocab, prompt, prompt_len, text, PROMPT_CAP);
  if (st != DRL_OK) return drl_fail_context(st, "task '%s' reward: prompt", t->name);
  int eos = drl_vocab_eos(t->vocab);
  int vsize = drl_vocab_size(t->vocab);
  int64_t m = 0; /* content length: up to the first EOS */
  while (m < response_len && response[m] != eos) {
    if (response[m] < 0 || response[m] >= vsize)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "task '%s' reward: response id %d at position %lld is outside the "
                      "vocabulary (size %d)", t->name, (int)response[m], (long long)m, vsize);
    ++m;
  }
  return t->reward(t->vocab, text, response, m, partial, reward);
}
