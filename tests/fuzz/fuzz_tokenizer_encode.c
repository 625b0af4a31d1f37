/* Fuzz target: encoding arbitrary bytes with the fixture tokenizers (tests/fixtures/tokenizer).
 *
 * Input: one byte choosing the tokenizer (even: llama, no normalizer; odd: qwen, NFC), then the text. Valid UTF-8
 * must round-trip: decode(encode(x)) == x (qwen: NFC(decode(encode(x))) == NFC(x): like HF, it normalizes each span
 * between added tokens apart, so "<|im_end|>" + U+0338 keeps its '>' where NFC of the whole would compose it), and
 * decoding id by id through a stream gives the same text; the encoder's NFC equals utf8proc's. Invalid UTF-8 must be refused with DRL_ERR_INVALID_ARG naming the offset of the first bad byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/bpe.h"
#include "data/bpe_internal.h"
#include "data/utf8.h"
#include "fuzz.h"

static drl_tokenizer g_tok[2];

static void load_once(void) {
  static int loaded = 0;
  if (loaded) return;
  const char *names[2] = {"llama", "qwen"};
  for (int i = 0; i < 2; ++i) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", DRL_FUZZ_TOKENIZER_DIR, names[i]);
    FUZZ_CHECK(drl_bpe_load(path, &g_tok[i]) == DRL_OK, "cannot load the fixture: %s", drl_last_error());
  }
  loaded = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load_once();
  if (size == 0) return 0;
  drl_tokenizer *t = &g_tok[data[0] & 1];
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  drl_ids ids = {0};
  size_t bad = drl_utf8_invalid_at((const uint8_t *)text, n);
  drl_status st = drl_tokenizer_encode(t, text, (int64_t)n, 0, &ids);
  if (bad < n) {
    char want[64];
    snprintf(want, sizeof want, "byte offset %zu", bad);
    FUZZ_CHECK(st == DRL_ERR_INVALID_ARG && strstr(drl_last_error(), want), "invalid UTF-8 at %zu: %s", bad,
               st == DRL_OK ? "accepted" : drl_last_error());
    drl_ids_free(&ids);
    return 0;
  }
  FUZZ_CHECK(st == DRL_OK, "valid UTF-8 does not encode: %s", drl_last_error());
  drl_text out = {0}, streamed = {0};
  FUZZ_CHECK(drl_tokenizer_decode(t, ids.v, ids.n, 0, &out) == DRL_OK, "decode: %s", drl_last_error());
  const char *got = out.s, *want = text;
  size_t got_n = (size_t)out.n, want_n = n;
  utf8proc_uint8_t *norm[2] = {NULL, NULL};
  if (data[0] & 1) {
    const char *src[2] = {out.s, text};
    size_t len[2] = {got_n, n};
    for (int k = 0; k < 2; ++k) {
      utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)src[k], (utf8proc_ssize_t)len[k], &norm[k],
                                        (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      FUZZ_CHECK(m >= 0, "utf8proc refuses valid UTF-8");
      len[k] = (size_t)m;
    }
    got = (const char *)norm[0], got_n = len[0], want = (const char *)norm[1], want_n = len[1];
    /* The encoder's NFC (which skips utf8proc for code points NFC leaves alone) is utf8proc's. */
    char *mine = NULL;
    int64_t mine_n = 0;
    FUZZ_CHECK(drl_bpe_nfc(text, (int64_t)n, &mine, &mine_n) == DRL_OK, "NFC: %s", drl_last_error());
    FUZZ_CHECK((size_t)mine_n == want_n && memcmp(mine ? mine : text, want, want_n) == 0,
               "the encoder's NFC differs from utf8proc's");
    free(mine);
  }
  FUZZ_CHECK(got_n == want_n && memcmp(got, want, want_n) == 0, "decode(encode(x)) != x (%zu bytes back for %zu)",
             got_n, want_n);
  drl_decode_stream s;
  drl_decode_stream_init(&s, 0);
  FUZZ_CHECK(drl_text_append(&streamed, "", 0) == DRL_OK, "out of memory");
  for (int64_t i = 0; i < ids.n; ++i)
    FUZZ_CHECK(drl_decode_stream_push(t, &s, ids.v[i], &streamed) == DRL_OK, "stream: %s", drl_last_error());
  FUZZ_CHECK(drl_decode_stream_finish(&s, &streamed) == DRL_OK, "stream: %s", drl_last_error());
  FUZZ_CHECK(streamed.n == out.n && memcmp(streamed.s, out.s, (size_t)out.n) == 0, "streamed text differs");
  free(norm[0]), free(norm[1]);
  drl_text_free(&out);
  drl_text_free(&streamed);
  drl_ids_free(&ids);
  return 0;
}
