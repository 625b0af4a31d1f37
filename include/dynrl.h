/* dynrl public C API: the only header a host trainer includes. */
#ifndef DYNRL_H
#define DYNRL_H

#ifdef __cplusplus
extern "C" {
#endif

#define DYNRL_VERSION_MAJOR 0
#define DYNRL_VERSION_MINOR 1
#define DYNRL_VERSION_PATCH 0
#define DYNRL_VERSION_STRING "0.1.0"

/* Every fallible call returns one of these; DRL_OK is zero. */
typedef enum drl_status {
  DRL_OK = 0,
  DRL_ERR_INVALID_ARG,  /* a caller passed something out of contract */
  DRL_ERR_CONFIG,       /* unknown key, wrong type or out-of-range value */
  DRL_ERR_IO,           /* open/read/write/rename/fsync failed */
  DRL_ERR_FORMAT,       /* a file's content is malformed or inconsistent */
  DRL_ERR_OOM,          /* an allocation failed */
  DRL_ERR_NO_DEVICE,    /* a GPU was requested and none is usable */
  DRL_ERR_CUDA,         /* CUDA runtime or cuBLAS failure */
  DRL_ERR_MPI,          /* MPI failure */
  DRL_ERR_NCCL,         /* NCCL failure */
  DRL_ERR_NUMERIC,      /* NaN/Inf where a finite value is required */
  DRL_ERR_UNSUPPORTED,  /* the build lacks the requested feature */
  DRL_ERR_INTERNAL      /* a broken invariant: a bug in dynrl */
} drl_status;

/* The message of the most recent failure on this thread ("" if none): "file:line: what happened". */
const char *drl_last_error(void);

/* A short name for a status ("DRL_ERR_IO"). */
const char *drl_status_name(drl_status s);

/* The library version as "MAJOR.MINOR.PATCH". */
const char *drl_version(void);

#include <stdint.h>

/* ---- Engine: a policy, its data and its trainer, driven by a host program ----
 * Every function returns DRL_OK or a status whose message drl_last_error() gives; nothing prints unless
 * run.log_level allows it, and nothing exits the process. An engine is used from one thread at a time. */
typedef struct drl_engine drl_engine;

/* Rollouts of the last drl_engine_generate, owned by the engine and valid until the next generate. Rows are
 * prompt i * group_size + g; each row is `length` tokens, left-padded: the prompt occupies [row_start, prompt_len),
 * the response starts at column prompt_len. Column t of logprob/entropy/mask describes token t + 1: its log-probability
 * under softmax(logits / temperature), the full-vocabulary entropy there, and 1 if it is a generated token. */
typedef struct drl_rollouts {
  int n_prompts, group_size, rows, prompt_len, length;
  const int32_t *tokens;       /* [rows, length] */
  const int32_t *row_start;    /* [rows] */
  const int32_t *response_len; /* [rows], EOS included */
  const float *logprob;        /* [rows, length] */
  const float *entropy;        /* [rows, length] */
  const uint8_t *mask;         /* [rows, length] */
  const char *const *text;     /* [rows]: each response decoded with the policy's tokenizer, special tokens skipped
                                * (NUL-terminated UTF-8; bytes that are not UTF-8 become U+FFFD) */
} drl_rollouts;

/* What one training iteration did. */
typedef struct drl_stats {
  int64_t iteration;        /* iterations trained by this engine */
  int64_t optim_steps;      /* AdamW steps, including those of a loaded checkpoint */
  double reward_mean, reward_std;
  double loss, grad_norm, clip_frac, kl, entropy;
  double usefulness;        /* share of kept rollouts with a non-zero advantage */
  int64_t kept_samples, kept_tokens, generated_tokens;
  int skipped;              /* a non-finite loss or gradient: that update and the iteration's rest were not applied */
  int64_t bad_steps;        /* iterations so far with such a skip (checkpointed) */
} drl_stats;

/* A reward for one rollout: the prompt and the response tokens (EOS included when emitted). */
typedef float (*drl_reward_fn)(const int32_t *prompt, int prompt_len, const int32_t *response, int response_len,
                               void *user);

/* A reward for one rollout as text (NUL-terminated UTF-8): the prompt as the policy saw it (chat template and special
 * tokens included), the response decoded with special tokens skipped (as verl decodes it), and the training example's
 * reference answer ("" when it has none). */
typedef float (*drl_text_reward_fn)(const char *prompt, const char *response, const char *answer, void *user);

/* Creates an engine from a YAML file (NULL: the embedded defaults) and "section.key=value" overrides: opens the
 * device, loads or generates the data, builds the policy from run.seed. */
drl_status drl_engine_create(const char *config_path, const char *const *overrides, int n_overrides,
                             drl_engine **engine);

/* Frees the engine and everything it owns; NULL is a no-op. */
void drl_engine_destroy(drl_engine *engine);

/* A built-in task's vocabulary (token id i is the character vocab[i]); "" for a text prompt set. */
const char *drl_engine_vocab(const drl_engine *engine);

/* Encodes text with the policy's tokenizer (a text set's, or the task's characters) into ids (room for cap), adding
 * what the tokenizer adds to a whole text (Llama-3's <|begin_of_text|>); *n receives the length. */
drl_status drl_engine_encode(drl_engine *engine, const char *text, int32_t *ids, int64_t cap, int64_t *n);

/* Renders a user prompt (and a system prompt; NULL for none) with the chat template the text prompt set was made
 * with, and encodes it as the set's prompts are: ids to pass to drl_engine_generate. DRL_ERR_INVALID_ARG for a
 * built-in task, which has no template. */
drl_status drl_engine_encode_chat(drl_engine *engine, const char *system, const char *prompt, int32_t *ids,
                                  int64_t cap, int64_t *n);

/* Decodes ids[0..n) into text (room for cap bytes, NUL included), skipping special tokens when skip_special; *len
 * receives the length without the NUL (DRL_ERR_INVALID_ARG, with *len set, when it does not fit). */
drl_status drl_engine_decode(const drl_engine *engine, const int32_t *ids, int64_t n, int skip_special, char *text,
                             int64_t cap, int64_t *len);

/* Samples grpo.group_size rollouts of each prompt (prompt i = tokens[offsets[i] .. offsets[i+1])) with the
 * configured temperature, top-k, top-p and max_new_tokens; the draws come from the run seed and the iteration. */
drl_status drl_engine_generate(drl_engine *engine, const int32_t *prompt_tokens, const int64_t *prompt_offsets,
                               int n_prompts, drl_rollouts *rollouts);

/* One GRPO (+ D3S) iteration on the last generated rollouts with the caller's rewards [rows]. An update whose loss or
 * gradient is not finite changes nothing and ends the iteration's updates (stats->skipped; the iteration counts);
 * the trainer.max_bad_steps-th such iteration in a row returns DRL_ERR_NUMERIC (stats are filled all the same). */
drl_status drl_engine_train(drl_engine *engine, const float *rewards, drl_stats *stats);

/* Makes drl_engine_iterate score rollouts with fn, replacing any callback set before (NULL restores the run's own
 * scoring: the task's verifier, or grpo.text_reward for a text set). */
drl_status drl_engine_set_reward(drl_engine *engine, drl_reward_fn fn, void *user);

/* As drl_engine_set_reward, with a callback on decoded text. */
drl_status drl_engine_set_text_reward(drl_engine *engine, drl_text_reward_fn fn, void *user);

/* Draws grpo.prompts_per_step training prompts, generates, scores (a callback, or the run's own scoring) and trains. */
drl_status drl_engine_iterate(drl_engine *engine, drl_stats *stats);

/* Held-out exact-match accuracy of greedy decoding; -1 when the config holds out nothing. */
drl_status drl_engine_evaluate(drl_engine *engine, double *accuracy);

/* Writes a checkpoint (policy, optimizer, iteration) to path, atomically. */
drl_status drl_engine_save(drl_engine *engine, const char *path);

/* Loads a checkpoint written by drl_engine_save or dynrl train; its layout must match the engine's policy. */
drl_status drl_engine_load(drl_engine *engine, const char *path);

/* The stats of the last iteration. */
drl_status drl_engine_stats(const drl_engine *engine, drl_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* DYNRL_H */
