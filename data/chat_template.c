/* Chat templates (chat_template.h): each follows its Jinja template line for line, so the comments name the Jinja
 * construct a branch reproduces. */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "data/utf8.h"

static const char *const kNames[] = {"raw", "chatml", "qwen2", "qwen2.5", "qwen3", "qwen3:nothink", "llama3"};
#define N_NAMES ((int)(sizeof kNames / sizeof kNames[0]))

static const char *const kQwen2System = "You are a helpful assistant.";
static const char *const kQwen25System = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

const char *drl_chat_template_names(void) { return "raw, chatml, qwen2, qwen2.5, qwen3, qwen3:nothink, llama3"; }

drl_status drl_chat_template_get(const char *name, drl_chat_template *out) {
  memset(out, 0, sizeof *out);
  for (int i = 0; name && i < N_NAMES; ++i)
    if (strcmp(name, kNames[i]) == 0) {
      out->kind = (drl_chat_kind)i;
      return DRL_OK;
    }
  return DRL_FAIL(DRL_ERR_INVALID_ARG, "unknown chat template \"%.64s\" (known: %s)", name ? name : "(null)",
                  drl_chat_template_names());
}

const char *drl_chat_template_name(const drl_chat_template *t) {
  return (int)t->kind >= 0 && (int)t->kind < N_NAMES ? kNames[t->kind] : "?";
}

/* ---- text helpers ---- */

typedef struct span {
  const char *s;
  size_t n;
} span;

static span sp(const char *s) { return (span){s, strlen(s)}; }

static drl_status put(drl_text *out, span x) { return drl_text_append(out, x.s, (int64_t)x.n); }
static drl_status puts_(drl_text *out, const char *s) { return drl_text_append(out, s, (int64_t)strlen(s)); }

/* Python's str.isspace() (what Jinja's trim strips): Unicode White_Space plus the separators U+001C..U+001F. */
static int py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Jinja's `| trim` (Python's strip()) of valid UTF-8. */
static span trim(span x) {
  const uint8_t *p = (const uint8_t *)x.s;
  size_t a = 0, b = x.n;
  uint32_t c;
  int k;
  while (a < b && (k = drl_utf8_char(p + a, b - a, &c)) > 0 && py_space(c)) a += (size_t)k;
  while (b > a) {
    size_t s = b - 1;
    while (s > a && (p[s] & 0xC0) == 0x80) --s; /* back to the character's lead byte */
    if (drl_utf8_char(p + s, b - s, &c) != (int)(b - s) || !py_space(c)) break;
    b = s;
  }
  return (span){x.s + a, b - a};
}

/* Python's lstrip('\n') and rstrip('\n'). */
static span lstrip_nl(span x) {
  while (x.n && x.s[0] == '\n') ++x.s, --x.n;
  return x;
}
static span rstrip_nl(span x) {
  while (x.n && x.s[x.n - 1] == '\n') --x.n;
  return x;
}

/* Offset of the first (last = 0) or last (last = 1) occurrence of needle in x, or -1. */
static long find(span x, const char *needle, int last) {
  size_t m = strlen(needle);
  long at = -1;
  for (size_t i = 0; i + m <= x.n; ++i)
    if (memcmp(x.s + i, needle, m) == 0) {
      at = (long)i;
      if (!last) break;
    }
  return at;
}

static int starts(span x, const char *p) { size_t m = strlen(p); return x.n >= m && memcmp(x.s, p, m) == 0; }
static int ends(span x, const char *p) { size_t m = strlen(p); return x.n >= m && memcmp(x.s + x.n - m, p, m) == 0; }

static int is_role(const drl_chat_message *m, const char *role) { return strcmp(m->role, role) == 0; }

/* ---- the templates ---- */

/* <|im_start|>{role}\n{content}<|im_end|>\n */
static drl_status im_block(drl_text *out, const char *role, span content) {
  DRL_TRY(puts_(out, "<|im_start|>"));
  DRL_TRY(puts_(out, role));
  DRL_TRY(puts_(out, "\n"));
  DRL_TRY(put(out, content));
  return puts_(out, "<|im_end|>\n");
}

/* chatml, qwen2 ({% if loop.first and messages[0]['role'] != 'system' %} default), qwen2.5 (the same default before
 * the loop; the loop skips only the first system message, which was emitted already): one output for our roles. */
static drl_status render_chatml(const drl_chat_message *m, int n, const char *default_system, drl_text *out) {
  if (default_system && !is_role(&m[0], "system")) DRL_TRY(im_block(out, "system", sp(default_system)));
  for (int i = 0; i < n; ++i) DRL_TRY(im_block(out, m[i].role, sp(m[i].content)));
  return puts_(out, "<|im_start|>assistant\n");
}

/* Qwen3-0.6B's template without tools. */
static drl_status render_qwen3(const drl_chat_message *m, int n, int nothink, drl_text *out) {
  if (is_role(&m[0], "system")) DRL_TRY(im_block(out, "system", sp(m[0].content)));
  /* ns.last_query_index: the last user turn that is not a <tool_response>...</tool_response> (else the last). */
  int last_query = n - 1;
  for (int i = n - 1; i >= 0; --i) {
    span c = sp(m[i].content);
    if (is_role(&m[i], "user") && !(starts(c, "<tool_response>") && ends(c, "</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  for (int i = 0; i < n; ++i) {
    span content = sp(m[i].content);
    if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i > 0)) {
      DRL_TRY(im_block(out, m[i].role, content));
      continue;
    }
    if (!is_role(&m[i], "assistant")) continue;
    span reasoning = {"", 0};
    long close = find(content, "</think>", 1);
    if (close >= 0) {
      /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
      span before = rstrip_nl((span){content.s, (size_t)find(content, "</think>", 0)});
      long open = find(before, "<think>", 1);
      if (open >= 0) before = (span){before.s + open + 7, before.n - (size_t)open - 7};
      reasoning = lstrip_nl(before);
      /* content.split('</think>')[-1].lstrip('\n') */
      content = lstrip_nl((span){content.s + close + 8, content.n - (size_t)close - 8});
    }
    DRL_TRY(puts_(out, "<|im_start|>assistant\n"));
    if (i > last_query && (i == n - 1 || reasoning.n)) {
      DRL_TRY(puts_(out, "<think>\n"));
      DRL_TRY(put(out, rstrip_nl(lstrip_nl(reasoning))));
      DRL_TRY(puts_(out, "\n</think>\n\n"));
      content = lstrip_nl(content);
    }
    DRL_TRY(put(out, content));
    DRL_TRY(puts_(out, "<|im_end|>\n"));
  }
  DRL_TRY(puts_(out, "<|im_start|>assistant\n"));
  return nothink ? puts_(out, "<think>\n\n</think>\n\n") : DRL_OK;
}

/* <|start_header_id|>{role}<|end_header_id|>\n\n */
static drl_status header(drl_text *out, const char *role) {
  DRL_TRY(puts_(out, "<|start_header_id|>"));
  DRL_TRY(puts_(out, role));
  return puts_(out, "<|end_header_id|>\n\n");
}

/* Llama-3.2-Instruct's template without tools (3.1's renders the same for these roles). */
static drl_status render_llama3(const drl_chat_message *m, int n, const char *date, drl_text *out) {
  span system = {"", 0};
  int first = 0;
  if (is_role(&m[0], "system")) system = trim(sp(m[0].content)), first = 1;
  DRL_TRY(puts_(out, "<|begin_of_text|>"));
  DRL_TRY(header(out, "system"));
  DRL_TRY(puts_(out, "Cutting Knowledge Date: December 2023\nToday Date: "));
  DRL_TRY(puts_(out, date ? date : DRL_CHAT_DEFAULT_DATE));
  DRL_TRY(puts_(out, "\n\n"));
  DRL_TRY(put(out, system));
  DRL_TRY(puts_(out, "<|eot_id|>"));
  for (int i = first; i < n; ++i) {
    DRL_TRY(header(out, m[i].role));
    DRL_TRY(put(out, trim(sp(m[i].content))));
    DRL_TRY(puts_(out, "<|eot_id|>"));
  }
  return header(out, "assistant");
}

/* ---- the interface ---- */

static drl_status check(const drl_chat_template *t, const char *system, const drl_chat_message *msgs, int n) {
  const char *name = drl_chat_template_name(t);
  if ((int)t->kind < 0 || (int)t->kind >= N_NAMES)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template kind %d is not one of %s", (int)t->kind,
                    drl_chat_template_names());
  if (n < 1 || !msgs)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: no messages (expected at least one)", name);
  for (int i = 0; i < n; ++i) {
    if (!msgs[i].role || !msgs[i].content)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: message %d has no %s", name, i,
                      msgs[i].role ? "content" : "role");
    if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") && !is_role(&msgs[i], "assistant"))
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: message %d has role \"%.32s\" (expected system, user "
                      "or assistant)", name, i, msgs[i].role);
    size_t len = strlen(msgs[i].content), bad = drl_utf8_invalid_at((const uint8_t *)msgs[i].content, len);
    if (bad < len)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: message %d (%s): content is not valid UTF-8 at byte %zu",
                      name, i, msgs[i].role, bad);
  }
  if (system) {
    size_t len = strlen(system), bad = drl_utf8_invalid_at((const uint8_t *)system, len);
    if (bad < len)
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: system prompt is not valid UTF-8 at byte %zu", name, bad);
    if (is_role(&msgs[0], "system"))
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s: a system prompt was given and the messages start with "
                      "a system message as well (expected one of them)", name);
  }
  if (t->kind == DRL_CHAT_RAW && (system || n != 1 || !is_role(&msgs[0], "user")))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template raw: expected exactly one user message and no system prompt "
                    "(raw has no place for roles; choose a chat template)");
  return DRL_OK;
}

drl_status drl_chat_render(const drl_chat_template *t, const char *system, const drl_chat_message *msgs, int n,
                           drl_text *out) {
  DRL_TRY(check(t, system, msgs, n));
  out->n = 0;
  DRL_TRY(drl_text_append(out, "", 0)); /* an empty rendering is still a NUL-terminated string */
  if (t->kind == DRL_CHAT_RAW) return puts_(out, msgs[0].content);
  /* The system prompt becomes messages[0], as a caller of apply_chat_template would write it. */
  const drl_chat_message *m = msgs;
  drl_chat_message *all = NULL;
  if (system) {
    all = (drl_chat_message *)malloc((size_t)(n + 1) * sizeof *all);
    if (!all) return DRL_FAIL(DRL_ERR_OOM, "chat template: out of memory for %d messages", n + 1);
    all[0].role = (char *)"system";
    all[0].content = (char *)system;
    memcpy(all + 1, msgs, (size_t)n * sizeof *all);
    m = all;
    ++n;
  }
  drl_status st;
  switch (t->kind) {
    case DRL_CHAT_CHATML: st = render_chatml(m, n, NULL, out); break;
    case DRL_CHAT_QWEN2: st = render_chatml(m, n, kQwen2System, out); break;
    case DRL_CHAT_QWEN25: st = render_chatml(m, n, kQwen25System, out); break;
    case DRL_CHAT_QWEN3: st = render_qwen3(m, n, 0, out); break;
    case DRL_CHAT_QWEN3_NOTHINK: st = render_qwen3(m, n, 1, out); break;
    default: st = render_llama3(m, n, t->date, out); break;
  }
  free(all);
  return st;
}

drl_status drl_chat_render_prompt(const drl_chat_template *t, const char *system, const char *prompt, drl_text *out) {
  drl_chat_message user = {(char *)"user", (char *)prompt};
  return drl_chat_render(t, system, &user, 1, out);
}

/* The tokens the template's text is built of must be added tokens of tok, or they would be encoded as plain text. */
static drl_status require_tokens(const drl_chat_template *t, const drl_tokenizer *tok) {
  static const char *const kChatml[] = {"<|im_start|>", "<|im_end|>", NULL};
  static const char *const kLlama3[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                        NULL};
  const char *const *need = t->kind == DRL_CHAT_RAW ? NULL : t->kind == DRL_CHAT_LLAMA3 ? kLlama3 : kChatml;
  for (; need && *need; ++need) {
    int32_t id = drl_tokenizer_token_id(tok, *need);
    const uint8_t *bytes;
    int64_t len;
    int flags = 0;
    if (id < 0 || tok->ops->token_bytes(tok->impl, id, &bytes, &len, &flags) != DRL_OK || !(flags & DRL_TOKEN_ADDED))
      return DRL_FAIL(DRL_ERR_INVALID_ARG, "chat template %s needs the added token %s, which the %s tokenizer %s "
                      "(a tokenizer of another model family?)", drl_chat_template_name(t), *need,
                      drl_tokenizer_kind(tok), id < 0 ? "lacks" : "has only as an ordinary token");
  }
  return DRL_OK;
}

drl_status drl_chat_encode(const drl_chat_template *t, drl_tokenizer *tok, const char *system,
                           const drl_chat_message *msgs, int n, drl_ids *ids) {
  DRL_TRY(check(t, system, msgs, n));
  DRL_TRY(require_tokens(t, tok));
  drl_text text = {0};
  drl_status st = drl_chat_render(t, system, msgs, n, &text);
  if (st == DRL_OK) st = drl_tokenizer_encode(tok, text.s, text.n, 0, ids);
  drl_text_free(&text);
  return st;
}

drl_status drl_chat_encode_prompt(const drl_chat_template *t, drl_tokenizer *tok, const char *system,
                                  const char *prompt, drl_ids *ids) {
  drl_chat_message user = {(char *)"user", (char *)prompt};
  return drl_chat_encode(t, tok, system, &user, 1, ids);
}
