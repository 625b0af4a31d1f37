#include "rollout.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nvtx.h"
#include "kernels/philox.h"
#include "kernels/sampling.h"

/* Bits of the element index that count a rollout's tokens; the rollout index sits above them. */
#define RESPONSE_BITS 20

void drl_rollout_free(drl_rollout *r) {
  if (!r) return;
  drl_kv_cache_free(&r->cache);
  free(r->logits);
  free(r->next_logits);
  free(r->active);
  free(r->tokens_in);
  free(r->prompts);
  free(r->work_idx);
  free(r->work_w);
  free(r->bad);
  memset(r, 0, sizeof *r);
}

drl_status drl_rollout_create(drl_rollout *r, const drl_transformer *m, int rows_max, int group_size, int P_max,
                              int new_max) {
  memset(r, 0, sizeof *r);
  if (rows_max < 1 || group_size < 1 || new_max > (1 << RESPONSE_BITS))
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "rollout: %d rows in groups of %d (each at least 1), responses of up to %d (at most %d)", rows_max,
                    group_size, new_max, 1 << RESPONSE_BITS);
  DRL_TRY(drl_kv_cache_create(&r->cache, m, rows_max, (rows_max + group_size - 1) / group_size, P_max, new_max));
  r->rows_max = rows_max;
  r->P_max = P_max;
  r->new_max = new_max;
  r->share_prefix = 1;
  r->V = drl_transformer_vocab_used(&m->cfg);
  r->vocab = m->cfg.vocab;
  r->n_work = omp_get_max_threads();
  size_t R = (size_t)rows_max, V = (size_t)r->V, W = (size_t)r->n_work;
  struct {
    void **p;
    size_t bytes;
    const char *what;
  } bufs[] = {{(void **)&r->logits, R * V * sizeof(float), "rollout logits"},
              {(void **)&r->next_logits, R * V * sizeof(float), "rollout next logits"},
              {(void **)&r->active, R * sizeof(int32_t), "rollout active rows"},
              {(void **)&r->tokens_in, R * sizeof(int32_t), "rollout input tokens"},
              {(void **)&r->prompts, (R * (size_t)P_max + R) * sizeof(int32_t), "rollout prompts"},
              {(void **)&r->work_idx, W * V * sizeof(int32_t), "sampling work indices"},
              {(void **)&r->work_w, W * V * sizeof(float), "sampling work weights"},
              {(void **)&r->bad, R, "rollout row flags"}};
  drl_status st = DRL_OK;
  for (size_t i = 0; st == DRL_OK && i < sizeof bufs / sizeof bufs[0]; ++i)
    st = drl_host_alloc(bufs[i].p, bufs[i].bytes, bufs[i].what);
  if (st != DRL_OK) drl_rollout_free(r);
  return st;
}

void drl_rollout_batch_free(drl_rollout_batch *b) {
  if (!b) return;
  free(b->tokens);
  free(b->row_start);
  free(b->response_len);
  free(b->logprob);
  free(b->entropy);
  free(b->mask);
  memset(b, 0, sizeof *b);
}

/* Grows the batch's buffers to rows x T. */
static drl_status batch_reserve(drl_rollout_batch *b, int rows, int T) {
  size_t cells = (size_t)rows * (size_t)T;
  if (cells > b->cap_cells) {
    int32_t *tok = (int32_t *)realloc(b->tokens, cells * sizeof(int32_t));
    if (tok) b->tokens = tok;
    float *lp = (float *)realloc(b->logprob, cells * sizeof(float));
    if (lp) b->logprob = lp;
    float *en = (float *)realloc(b->entropy, cells * sizeof(float));
    if (en) b->entropy = en;
    uint8_t *mk = (uint8_t *)realloc(b->mask, cells);
    if (mk) b->mask = mk;
    if (!tok || !lp || !en || !mk) return drl_fail_oom("rollout batch records", cells * 13, "the host");
    b->cap_cells = cells;
  }
  if ((size_t)rows > b->cap_rows) {
    int32_t *rs = (int32_t *)realloc(b->row_start, (size_t)rows * sizeof(int32_t));
    if (rs) b->row_start = rs;
    int32_t *len = (int32_t *)realloc(b->response_len, (size_t)rows * sizeof(int32_t));
    if (len) b->response_len = len;
    if (!rs || !len) return drl_fail_oom("rollout batch rows", (size_t)rows * 8, "the host");
    b->cap_rows = (size_t)rows;
  }
  return DRL_OK;
}

static drl_status check_params(const drl_rollout *r, const drl_rollout_params *p, int n_prompts) {
  if (n_prompts < 1 || p->group_size < 1 || (int64_t)n_prompts * p->group_size > r->rows_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: %d prompts x %d rollouts outside 1..%d rows", n_prompts,
                    p->group_size, r->rows_max);
  if (p->max_new_tokens < 1 || p->max_new_tokens > r->new_max)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: max_new_tokens %d outside the sampler's 1..%d", p->max_new_tokens,
                    r->new_max);
  if (!(p->temperature > 0.0f) || !isfinite(p->temperature))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: temperature %g must be positive and finite",
                    (double)p->temperature);
  if (p->top_k < 0) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: top_k %d must be >= 0 (0 = off)", p->top_k);
  if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: top_p %g outside (0, 1] (1 = off)", (double)p->top_p);
  if (p->eos < 0 || p->eos >= r->V)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: eos id %d outside the sampled vocabulary [0, %d)", p->eos, r->V);
  if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop_ids))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: %d stop ids at %p", p->n_stop, (const void *)p->stop_ids);
  for (int i = 0; i < p->n_stop; ++i)
    if (p->stop_ids[i] < 0 || p->stop_ids[i] >= r->V)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: stop id %d outside the sampled vocabulary [0, %d)",
                      p->stop_ids[i], r->V);
  uint64_t rows = (uint64_t)n_prompts * (uint64_t)p->group_size;
  if (p->first_rollout > (UINT64_C(1) << (64 - RESPONSE_BITS)) - rows)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: first_rollout %llu leaves no room for %llu rollouts below 2^%d",
                    (unsigned long long)p->first_rollout, (unsigned long long)rows, 64 - RESPONSE_BITS);
  return DRL_OK;
}

/* Prompt lengths, P and the host checks of the prompt tokens. */
static drl_status check_prompts(const drl_rollout *r, const int32_t *tokens, const int64_t *off, int n, int *P) {
  if (!tokens || !off) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: NULL prompt tokens or offsets");
  *P = 0;
  for (int i = 0; i < n; ++i) {
    int64_t len = off[i + 1] - off[i];
    if (off[i] < 0 || len < 1 || len > r->P_max)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: prompt %d spans [%lld, %lld): needs 1..%d tokens", i,
                      (long long)off[i], (long long)off[i + 1], r->P_max);
    for (int64_t j = off[i]; j < off[i + 1]; ++j)
      if (tokens[j] < 0 || tokens[j] >= r->vocab)
        return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: token %d of prompt %d is outside the vocabulary [0, %d)",
                        tokens[j], i, r->vocab);
    if (len > *P) *P = (int)len;
  }
  return DRL_OK;
}

/* Samples the next token of every active row from its logits row and records it at column t. Rows are independent:
 * the thread count changes nothing. Non-finite logits mark the row in r->bad. */
/* Whether token ends a response: eos or one of the stop ids. */
static int ends_response(const drl_rollout_params *p, int32_t token) {
  if (token == p->eos) return 1;
  for (int i = 0; i < p->n_stop; ++i)
    if (token == p->stop_ids[i]) return 1;
  return 0;
}

static void sample_step(drl_rollout *r, const drl_rollout_params *p, drl_rollout_batch *out, int n_active, int s) {
  const int V = r->V, T = out->T, t = out->P + s;
  const uint32_t tag = drl_rng_tag(DRL_RNG_ROLLOUT, p->uid, 0);
  int threads = omp_get_max_threads(); /* the caller's pin, within the work arrays made at create */
  if (threads > r->n_work) threads = r->n_work;
#pragma omp parallel for schedule(static) num_threads(threads) if (n_active > 1)
  for (int a = 0; a < n_active; ++a) {
    int row = r->active[a];
    const float *z = r->logits + (size_t)a * V;
    int finite = 1;
    for (int j = 0; j < V; ++j) finite &= isfinite(z[j]) != 0;
    if (!finite) {
      r->bad[row] = 1;
      continue;
    }
    int w = omp_get_thread_num();
    int32_t *idx = r->work_idx + (size_t)w * V;
    float *wt = r->work_w + (size_t)w * V;
    int n = drl_sample_candidates(z, V, p->top_k, p->top_p, idx, wt);
    uint64_t element = ((p->first_rollout + (uint64_t)row) << RESPONSE_BITS) | (uint64_t)s;
    int32_t tok = drl_sample_draw(idx, wt, n, drl_rng_uniform(p->seed, p->step, tag, element));
    drl_lse lse = drl_sample_row_lse(z, V);
    size_t cell = (size_t)row * T + (size_t)t;
    out->tokens[cell] = tok;
    out->logprob[cell - 1] = drl_lse_logprob(lse, z[tok]);
    out->entropy[cell - 1] = drl_lse_entropy(lse);
    out->mask[cell - 1] = 1;
    out->response_len[row] = s + 1;
    r->tokens_in[a] = tok;
  }
}

drl_status drl_rollout_generate(drl_rollout *r, drl_transformer *m, const int32_t *prompt_tokens,
                                const int64_t *prompt_offsets, int n_prompts, const drl_rollout_params *p,
                                drl_rollout_batch *out) {
  DRL_RANGE("rollout");
  if (!r->cache.block) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: used before drl_rollout_create");
  if (!p || !out) return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: NULL params or batch");
  if (m->cfg.vocab != r->vocab || drl_transformer_vocab_used(&m->cfg) != r->V)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "rollout: created for another vocabulary");
  DRL_TRY(check_params(r, p, n_prompts));
  int P = 0;
  DRL_TRY(check_prompts(r, prompt_tokens, prompt_offsets, n_prompts, &P));
  const int G = p->group_size, rows = n_prompts * G, T = P + p->max_new_tokens, V = r->V;
  if ((r->share_prefix ? n_prompts : rows) > r->cache.n_groups)
    return DRL_FAIL(DRL_ERR_INVALID_ARG,
                    "rollout: %d prompts x %d rollouts need %d cached prompts (%s); the sampler holds %d", n_prompts, G,
                    r->share_prefix ? n_prompts : rows, r->share_prefix ? "shared" : "one per row", r->cache.n_groups);
  DRL_TRY(batch_reserve(out, rows, T));
  out->n_prompts = n_prompts;
  out->G = G;
  out->rows = rows;
  out->P = P;
  out->T = T;
  out->generated_tokens = 0;
  size_t cells = (size_t)rows * T;
  for (size_t i = 0; i < cells; ++i) out->tokens[i] = p->eos;
  memset(out->logprob, 0, cells * sizeof(float));
  memset(out->entropy, 0, cells * sizeof(float));
  memset(out->mask, 0, cells);
  memset(r->bad, 0, (size_t)rows);

  /* The left-padded prompt block [n, P] for prefill, and each row's copy of its prompt. */
  int32_t *block = r->prompts, *block_rs = r->prompts + (size_t)n_prompts * P;
  for (int i = 0; i < n_prompts; ++i) {
    int len = (int)(prompt_offsets[i + 1] - prompt_offsets[i]), rs = P - len;
    block_rs[i] = rs;
    for (int t = 0; t < P; ++t) block[(size_t)i * P + t] = t < rs ? p->eos : prompt_tokens[prompt_offsets[i] + t - rs];
    for (int g = 0; g < G; ++g) {
      int row = i * G + g;
      out->row_start[row] = rs;
      out->response_len[row] = 0;
      memcpy(out->tokens + (size_t)row * T, block + (size_t)i * P, (size_t)P * sizeof(int32_t));
    }
  }
  DRL_TRY(drl_kv_cache_prefill(&r->cache, m, block, block_rs, n_prompts, P, G, r->share_prefix, p->temperature,
                               r->next_logits));
  for (int row = 0; row < rows; ++row) {
    r->active[row] = row;
    memcpy(r->logits + (size_t)row * V, r->next_logits + (size_t)(row / G) * V, (size_t)V * sizeof(float));
  }
  int n_active = rows;
  for (int s = 0; s < p->max_new_tokens && n_active > 0; ++s) {
    sample_step(r, p, out, n_active, s);
    for (int a = 0; a < n_active; ++a)
      if (r->bad[r->active[a]])
        return DRL_FAIL(DRL_ERR_NUMERIC, "rollout: non-finite logits for row %d at response token %d",
                        r->active[a], s);
    if (p->on_token)
      for (int a = 0; a < n_active; ++a) p->on_token(p->on_token_user, r->active[a], r->tokens_in[a]);
    /* Rows that emitted EOS leave the batch; the rest keep their order (and their cache slots). */
    int kept = 0;
    for (int a = 0; a < n_active; ++a)
      if (!ends_response(p, r->tokens_in[a])) {
        r->active[kept] = r->active[a];
        r->tokens_in[kept] = r->tokens_in[a];
        ++kept;
      }
    n_active = kept;
    if (n_active == 0 || s + 1 == p->max_new_tokens) break;
    DRL_TRY(drl_kv_cache_decode(&r->cache, m, r->tokens_in, r->active, n_active, p->temperature, r->next_logits));
    float *x = r->logits;
    r->logits = r->next_logits;
    r->next_logits = x;
  }
  for (int row = 0; row < rows; ++row) out->generated_tokens += out->response_len[row];
  r->generated_tokens += out->generated_tokens;
  return DRL_OK;
}
