/* JSONL prompt sets into text prompt set files (text_import.h). */
#include "text_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/prompt_jsonl.h"
#include "data/tokenizer.h"
#include "engine/hf_model.h"

/* A growable byte or id array for the set being built. */
typedef struct grow {
  void *p;
  int64_t n, cap;
  size_t elem;
} grow;

static drl_status grow_append(grow *g, const void *items, int64_t n) {
  if (g->n + n > g->cap) {
    int64_t cap = g->cap ? g->cap : 1024;
    while (cap < g->n + n) cap *= 2;
    void *p = realloc(g->p, (size_t)cap * g->elem);
    if (!p) return DRL_FAIL(DRL_ERR_OOM, "out of memory building the prompt set");
    g->p = p;
    g->cap = cap;
  }
  memcpy((char *)g->p + (size_t)g->n * g->elem, items, (size_t)n * g->elem);
  g->n += n;
  return DRL_OK;
}

/* The prompt of r as ids: prompt_ids as they are, else rendered by the chat template and encoded. */
static drl_status encode_prompt(const char *jsonl, const drl_prompt_record *r, const drl_chat_template *tmpl,
                                drl_tokenizer *tok, drl_ids *ids) {
  if (r->prompt_ids) {
    ids->n = 0;
    for (int64_t i = 0; i < r->n_ids; ++i) DRL_TRY(drl_ids_push(ids, r->prompt_ids[i]));
    return DRL_OK;
  }
  drl_status st = r->messages ? drl_chat_encode(tmpl, tok, r->system, r->messages, r->n_messages, ids)
                              : drl_chat_encode_prompt(tmpl, tok, r->system, r->prompt, ids);
  return st == DRL_OK ? st : drl_fail_context(st, "%s:%lld", jsonl, (long long)r->line);
}

drl_status drl_text_import(const char *jsonl, const char *model_dir, const drl_text_import_options *opt,
                           const char *out_h5, drl_text_import_stats *stats) {
  memset(stats, 0, sizeof *stats);
  drl_prompt_set set;
  DRL_TRY(drl_prompt_jsonl_read(jsonl, &set));
  drl_tokenizer tok = {0};
  drl_hf_source src;
  int found = 0;
  drl_dataset ds;
  memset(&ds, 0, sizeof ds);
  drl_ids ids = {0}, ans = {0};
  grow pt = {NULL, 0, 0, sizeof(int32_t)}, po = {NULL, 0, 0, sizeof(int64_t)};
  grow at = {NULL, 0, 0, sizeof(int32_t)}, ao = {NULL, 0, 0, sizeof(int64_t)};
  grow tt = {NULL, 0, 0, 1}, to = {NULL, 0, 0, sizeof(int64_t)};
  drl_chat_template tmpl;
  drl_status st = drl_chat_template_get(opt->template_name, &tmpl);
  if (st == DRL_OK) st = drl_hf_source_open(model_dir, &src, &found);
  if (st == DRL_OK && found != 1)
    st = DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: not a model directory (no config.json)", model_dir);
  if (st == DRL_OK && src.cfg.n_eos < 1)
    st = DRL_FAIL(DRL_ERR_FORMAT, "%s/config.json: no eos_token_id (answers end with it)", model_dir);
  char tj[4200];
  snprintf(tj, sizeof tj, "%s/tokenizer.json", model_dir);
  if (st == DRL_OK) st = drl_bpe_load_hashed(tj, &tok, ds.tokenizer_hash);
  int64_t zero = 0;
  if (st == DRL_OK) st = grow_append(&po, &zero, 1);
  if (st == DRL_OK) st = grow_append(&ao, &zero, 1);
  if (st == DRL_OK) st = grow_append(&to, &zero, 1);
  const int32_t eos = src.cfg.eos_token_ids[0];
  for (int64_t i = 0; st == DRL_OK && i < set.n; ++i) {
    const drl_prompt_record *r = &set.records[i];
    st = encode_prompt(jsonl, r, &tmpl, &tok, &ids);
    if (st != DRL_OK) break;
    if (opt->max_prompt > 0 && ids.n > opt->max_prompt) {
      if (opt->drop_long) {
        ++stats->dropped;
        continue;
      }
      st = DRL_FAIL(DRL_ERR_INVALID_ARG, "%s:%lld: the prompt has %lld tokens, more than the %d allowed (model.max_seq "
                    "minus the response length; drop such prompts with --drop-long)", jsonl, (long long)r->line,
                    (long long)ids.n, opt->max_prompt);
      break;
    }
    for (int64_t k = 0; k < ids.n && st == DRL_OK; ++k)
      if (ids.v[k] < 0 || ids.v[k] >= drl_tokenizer_vocab_size(&tok))
        st = DRL_FAIL(DRL_ERR_INVALID_ARG, "%s:%lld: prompt id %d outside the tokenizer's [0, %d)", jsonl,
                      (long long)r->line, (int)ids.v[k], (int)drl_tokenizer_vocab_size(&tok));
    if (st == DRL_OK) st = drl_tokenizer_encode(&tok, r->answer, (int64_t)strlen(r->answer), 0, &ans);
    if (st == DRL_OK) st = drl_ids_push(&ans, eos);
    if (st == DRL_OK) st = grow_append(&pt, ids.v, ids.n);
    if (st == DRL_OK) st = grow_append(&po, &pt.n, 1);
    if (st == DRL_OK) st = grow_append(&at, ans.v, ans.n);
    if (st == DRL_OK) st = grow_append(&ao, &at.n, 1);
    if (st == DRL_OK) st = grow_append(&tt, r->answer, (int64_t)strlen(r->answer));
    if (st == DRL_OK) st = grow_append(&to, &tt.n, 1);
    if (ids.n > stats->longest_prompt) stats->longest_prompt = ids.n;
  }
  if (st == DRL_OK && po.n == 1)
    st = DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: every prompt was dropped (longer than %d tokens)", jsonl, opt->max_prompt);
  if (st == DRL_OK) {
    snprintf(ds.task, sizeof ds.task, DRL_TEXT_TASK);
    snprintf(ds.template_name, sizeof ds.template_name, "%s", opt->template_name);
    ds.vocab_size = drl_tokenizer_vocab_size(&tok);
    ds.prompts = (drl_token_seqs){po.n - 1, (int32_t *)pt.p, (int64_t *)po.p};
    ds.answers = (drl_token_seqs){ao.n - 1, (int32_t *)at.p, (int64_t *)ao.p};
    ds.answer_text = tt.p ? (char *)tt.p : (char *)calloc(1, 1);
    ds.answer_text_offsets = (int64_t *)to.p;
    pt.p = po.p = at.p = ao.p = tt.p = to.p = NULL;
    st = drl_dataset_write(out_h5, &ds);
    stats->written = ds.prompts.n;
  }
  drl_dataset_free(&ds);
  free(pt.p);
  free(po.p);
  free(at.p);
  free(ao.p);
  free(tt.p);
  free(to.p);
  drl_ids_free(&ids);
  drl_ids_free(&ans);
  drl_tokenizer_free(&tok);
  drl_hf_source_free(&src);
  drl_prompt_set_free(&set);
  return st;
}
