/* Token rollout: G sampled continuations of each prompt, prefilled once per prompt and decoded with the KV cache
 * (models/kv_cache.h), with temperature, top-k, top-p, a stop token and a length cap.
 *
 * Layout: the training forward's, so the records compare with it position by position. Prompts are LEFT-padded to
 * the longest, P tokens; row r = prompt i * G + g (the rollouts of a prompt are adjacent); T = P + max_new_tokens
 * columns; row_start[r] = P - (length of its prompt). The padding id is the EOS id, before the prompt and after the
 * response (masked, and never seen by a scored position).
 *
 * Sampling the s-th response token of row r (column t = P + s): z = logits / temperature over the model's first
 * vocab_used ids (padding ids beyond are never scored, so never drawn); keep the top_k most likely;
 * of those keep the smallest set whose probability reaches top_p (kernels/sampling.h: ties go to the lower id);
 * renormalise; draw by inverse CDF with one uniform from the rollout's own Philox stream:
 *   u = drl_rng_uniform(seed, step, drl_rng_tag(DRL_RNG_ROLLOUT, uid, 0), (rollout << 20) | s),
 *   rollout = first_rollout + r (a global index < 2^44), s < 2^20.
 * So a draw depends on neither the batch composition nor the thread count, and any rank can regenerate it.
 *
 * Records, column t of row r: logprob[t] = log-probability of token t+1 under the FULL softmax(logits / temperature),
 * not the top-k/top-p truncated distribution it was drawn from: that is what the training forward computes for the
 * same token (drl_transformer_forward with targets = next tokens and the same temperature), so the first PPO ratio
 * starts at 1; entropy[t] = the full-vocabulary entropy of that distribution; mask[t] = 1 when token t+1 is a
 * generated token (EOS included, nothing after it). Columns with mask 0 hold 0. */
#ifndef DRL_ROLLOUT_H
#define DRL_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "models/kv_cache.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_rollout_params {
  int group_size;         /* G: rollouts per prompt, >= 1 */
  int max_new_tokens;     /* response length cap, 1 .. 2^20 */
  float temperature;      /* > 0: divides the logits */
  int top_k;              /* keep the k most likely tokens; 0 = off */
  float top_p;            /* nucleus mass in (0, 1]; 1 = off */
  int eos;                /* stop token id (ends a response, included in it) and padding id; < vocab_used */
  uint64_t seed;          /* Philox key: the run seed */
  uint32_t step;          /* training step: the stream's counter word */
  uint32_t uid;           /* rank or uid, in the stream tag (16 bits) */
  uint64_t first_rollout; /* global index of this batch's first rollout */
  const int32_t *stop_ids; /* n_stop more ids that end a response like eos (a model's other EOS ids); may be NULL */
  int n_stop;
  /* Called after each decode step with every token just drawn (row, id), rows in increasing order, for streaming;
   * may be NULL. */
  void (*on_token)(void *user, int row, int32_t id);
  void *on_token_user;
} drl_rollout_params;

/* One batch of rollouts, host memory owned by the struct (grown by drl_rollout_generate, freed by
 * drl_rollout_batch_free; start from a zeroed struct). */
typedef struct drl_rollout_batch {
  int n_prompts, G, rows, P, T;  /* rows = n_prompts * G, T = P + max_new_tokens */
  int32_t *tokens;               /* [rows, T] */
  int32_t *row_start;            /* [rows] */
  int32_t *response_len;         /* [rows]: generated tokens, EOS included */
  float *logprob, *entropy;      /* [rows, T] */
  uint8_t *mask;                 /* [rows, T] */
  int64_t generated_tokens;      /* sum of response_len: the throughput counter */
  size_t cap_cells, cap_rows;    /* allocated sizes */
} drl_rollout_batch;

/* The sampler: a KV cache for rows_max sequences (prompts of up to P_max tokens, responses of up to new_max) and its
 * host buffers. */
typedef struct drl_rollout {
  drl_kv_cache cache;
  int rows_max, P_max, new_max, V; /* V: the ids scored and sampled (the model's vocab_used) */
  int share_prefix;             /* 1 (set by create): a prompt's G rows share its cached keys and values; 0: each row
                                   keeps a copy (needs a sampler created with group_size 1; tests compare the two) */
  int vocab;                   /* the ids a prompt may hold (the model's vocab) */
  float *logits, *next_logits; /* host [rows_max, V]: logits of the active rows, this step and the next */
  int32_t *active, *tokens_in; /* host [rows_max]: active rows (= cache slots), their newest tokens */
  int32_t *prompts;            /* host [rows_max * P_max + rows_max]: the left-padded prompt block, then its row starts */
  int32_t *work_idx;           /* host [n_work, V]: per-thread candidate ids */
  float *work_w;               /* host [n_work, V]: per-thread candidate weights */
  uint8_t *bad;                /* host [rows_max]: rows whose logits were not finite */
  int n_work;
  int64_t generated_tokens;    /* total over the sampler's life */
} drl_rollout;

/* Creates a sampler for m (its config and device) for up to rows_max rollouts, in groups of group_size rows that share
 * a prompt (a call may use any G with at most rows_max / group_size prompts, rounded up), prompts of up to P_max
 * tokens and responses of up to new_max (P_max + new_max <= max_seq). The KV cache holds
 * ceil(rows_max / group_size) x P_max + rows_max x new_max positions per layer. */
drl_status drl_rollout_create(drl_rollout *r, const drl_transformer *m, int rows_max, int group_size, int P_max,
                              int new_max);

/* Frees the sampler; safe on a zeroed one. */
void drl_rollout_free(drl_rollout *r);

/* Generates G rollouts of each of n_prompts prompts (prompt i = prompt_tokens[offsets[i] .. offsets[i+1]), at least
 * one token each) into out, as laid out above. Decodes until every row has emitted EOS or max_new_tokens. Overwrites
 * the model's saved activations (prefill runs drl_transformer_forward). On the GPU the logits come to the host each
 * step and sampling runs on the CPU (rows x V floats per step). */
drl_status drl_rollout_generate(drl_rollout *r, drl_transformer *m, const int32_t *prompt_tokens,
                                const int64_t *prompt_offsets, int n_prompts, const drl_rollout_params *p,
                                drl_rollout_batch *out);

/* Frees a batch's buffers; safe on a zeroed one. */
void drl_rollout_batch_free(drl_rollout_batch *b);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ROLLOUT_H */
