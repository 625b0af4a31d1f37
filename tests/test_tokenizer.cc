// The tokenizer interface (data/tokenizer.h) over both kinds: the character vocabulary of the built-in tasks and
// byte-level BPE from tokenizer.json (data/bpe.h): streaming decode, skipping special tokens, invalid input, and
// every unsupported kind of tokenizer.json refused with its path and value.
#include <jansson.h>

#include <functional>

#include "tokenizer_fixture.h"

extern "C" {
#include "data/pretok.h"
#include "data/task.h"
#include "data/utf8.h"
#include "data/vocab.h"
}

namespace {

std::string qwen_path() { return tok_fixture_dir() + "qwen/tokenizer.json"; }

// ---- the character kind ----

TEST(TokenizerChar, SameIdsAsTheVocabulary) {
  const char *vocab = drl_task_vocab("add");
  drl_tokenizer t;
  ASSERT_EQ(drl_tokenizer_char(vocab, &t), DRL_OK) << last_error();
  EXPECT_STREQ(drl_tokenizer_kind(&t), "char");
  EXPECT_EQ(drl_tokenizer_vocab_size(&t), drl_vocab_size(vocab));
  EXPECT_EQ(drl_tokenizer_token_id(&t, "."), drl_vocab_eos(vocab));
  EXPECT_EQ(drl_tokenizer_token_id(&t, "x"), -1);
  const char *text = "12+345=357.";
  int32_t want[32];
  int64_t n = 0;
  ASSERT_EQ(drl_vocab_encode(vocab, text, want, 32, &n), DRL_OK);
  drl_ids ids{};
  ASSERT_EQ(drl_tokenizer_encode(&t, text, (int64_t)strlen(text), 1, &ids), DRL_OK) << last_error();
  ASSERT_EQ(ids.n, n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(ids.v[i], want[i]);
  drl_text out{};
  ASSERT_EQ(drl_tokenizer_decode(&t, ids.v, ids.n, 1, &out), DRL_OK);
  EXPECT_STREQ(out.s, text);
  EXPECT_NE(drl_tokenizer_encode(&t, "1x", 2, 0, &ids), DRL_OK);
  EXPECT_NE(last_error().find("offset 1"), std::string::npos) << last_error();
  int32_t bad = 99;
  EXPECT_NE(drl_tokenizer_decode(&t, &bad, 1, 0, &out), DRL_OK);
  EXPECT_NE(last_error().find("id 99"), std::string::npos) << last_error();
  drl_ids_free(&ids);
  drl_text_free(&out);
  drl_tokenizer_free(&t);
}

// ---- byte-level BPE ----

TEST(TokenizerBpe, LoadsAndLooksUpSpecialTokens) {
  Tok tok(qwen_path());
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  EXPECT_STREQ(drl_tokenizer_kind(&tok.t), "bpe");
  EXPECT_EQ(drl_tokenizer_vocab_size(&tok.t), 514);
  int32_t end = drl_tokenizer_token_id(&tok.t, "<|im_end|>"), call = drl_tokenizer_token_id(&tok.t, "<tool_call>");
  EXPECT_GE(end, 0);
  EXPECT_GE(call, 0);
  EXPECT_TRUE(drl_tokenizer_is_special(&tok.t, end));
  EXPECT_FALSE(drl_tokenizer_is_special(&tok.t, call));
  EXPECT_FALSE(drl_tokenizer_is_special(&tok.t, 100));
  EXPECT_EQ(drl_tokenizer_token_id(&tok.t, "<|nope|>"), -1);
  EXPECT_EQ(tok.encode("<|im_end|>"), std::vector<int32_t>{end});
}

TEST(TokenizerBpe, SkipSpecialDropsOnlySpecialTokens) {
  Tok tok(qwen_path());
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  std::string text = "<|im_start|>user\nhi<|im_end|>\n<tool_call>x<|endoftext|>";
  std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids, 0), text);
  EXPECT_EQ(tok.decode(ids, 1), "user\nhi\n<tool_call>x");
}

TEST(TokenizerBpe, LlamaPrependsBeginOfTextOnlyWithAddSpecial) {
  Tok tok(tok_fixture_dir() + "llama/tokenizer.json");
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  int32_t bos = drl_tokenizer_token_id(&tok.t, "<|begin_of_text|>");
  std::vector<int32_t> with = tok.encode("hello", 1), without = tok.encode("hello", 0);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], bos);
  EXPECT_EQ(tok.encode("", 1), std::vector<int32_t>{bos});
  EXPECT_TRUE(tok.encode("", 0).empty());
  // ignore_merges: the entry no merge reaches is one token.
  EXPECT_EQ(tok.encode(" zyzzyva", 0).size(), 1u);
}

TEST(TokenizerBpe, StreamingHoldsBackPartialUtf8) {
  Tok tok(qwen_path());
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  std::string text = "a \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 \xE4\xB8\xAD\xE6\x96\x87<|im_end|>\xC3\xA9!";
  std::vector<int32_t> ids = tok.encode(text, 0);
  drl_decode_stream s;
  drl_decode_stream_init(&s, 0);
  drl_text out{};
  int held = 0;
  for (int32_t id : ids) {
    int64_t before = out.n;
    ASSERT_EQ(drl_decode_stream_push(&tok.t, &s, id, &out), DRL_OK) << last_error();
    held += out.n == before;
    // What has come out so far is always complete UTF-8 and a prefix of the text.
    EXPECT_EQ(drl_utf8_invalid_at((const uint8_t *)out.s, (size_t)out.n), (size_t)out.n);
    EXPECT_EQ(text.compare(0, (size_t)out.n, out.s, (size_t)out.n), 0);
  }
  EXPECT_GT(held, 0) << "no token ended inside a character: the test text no longer exercises hold-back";
  ASSERT_EQ(drl_decode_stream_finish(&s, &out), DRL_OK);
  EXPECT_EQ(std::string(out.s, (size_t)out.n), text);
  // A stream ending inside a character, or an added token arriving there, completes it as U+FFFD.
  std::vector<int32_t> e = tok.encode("\xE4\xB8\xAD", 0);
  ASSERT_GT(e.size(), 1u) << "the character is one token: pick another";
  drl_decode_stream_init(&s, 1);
  out.n = 0;
  ASSERT_EQ(drl_decode_stream_push(&tok.t, &s, e[0], &out), DRL_OK);
  EXPECT_EQ(out.n, 0);
  ASSERT_EQ(drl_decode_stream_finish(&s, &out), DRL_OK);
  EXPECT_EQ(std::string(out.s, (size_t)out.n), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({e[0], drl_tokenizer_token_id(&tok.t, "<tool_call>"), e[1]}),
            "\xEF\xBF\xBD<tool_call>\xEF\xBF\xBD");
  // A skipped special token does not interrupt a character (HF drops it before decoding).
  std::vector<int32_t> split = {e[0], drl_tokenizer_token_id(&tok.t, "<|im_end|>")};
  split.insert(split.end(), e.begin() + 1, e.end());
  EXPECT_EQ(tok.decode(split, 1), "\xE4\xB8\xAD");
  drl_text_free(&out);
}

TEST(TokenizerBpe, InvalidInputIsAnErrorNamingTheOffset) {
  Tok tok(qwen_path());
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  drl_ids ids{};
  const char bad[] = "abc\xFF" "def";
  EXPECT_EQ(drl_tokenizer_encode(&tok.t, bad, 7, 0, &ids), DRL_ERR_INVALID_ARG);
  EXPECT_NE(last_error().find("byte offset 3"), std::string::npos) << last_error();
  const char surrogate[] = "\xED\xA0\x80";
  EXPECT_EQ(drl_tokenizer_encode(&tok.t, surrogate, 3, 0, &ids), DRL_ERR_INVALID_ARG);
  // NUL is a character like any other.
  EXPECT_EQ(drl_tokenizer_encode(&tok.t, "a\0b", 3, 0, &ids), DRL_OK) << last_error();
  drl_text out{};
  EXPECT_EQ(drl_tokenizer_decode(&tok.t, ids.v, ids.n, 0, &out), DRL_OK);
  EXPECT_EQ(std::string(out.s, (size_t)out.n), std::string("a\0b", 3));
  int32_t id = 514;
  EXPECT_EQ(drl_tokenizer_decode(&tok.t, &id, 1, 0, &out), DRL_ERR_INVALID_ARG);
  EXPECT_NE(last_error().find("id 514"), std::string::npos) << last_error();
  drl_ids_free(&ids);
  drl_text_free(&out);
}

TEST(TokenizerBpe, LongRunsAndTheCache) {
  Tok tok(qwen_path());
  ASSERT_EQ(tok.st, DRL_OK) << last_error();
  std::string spaces(100000, ' '), letters(100000, 'x'), mixed;
  for (int i = 0; i < 3000; ++i) mixed += "word" + std::to_string(i % 97) + " ";
  for (const std::string &s : {spaces, letters, mixed, mixed}) EXPECT_EQ(tok.decode(tok.encode(s, 0)), s);
}

TEST(TokenizerUtf8, LossyReplacesEachMaximalInvalidSubpart) {
  drl_text out{};
  size_t used = 0;
  // Python: b"a\xe4\xb8b\xff\xf0\x9f".decode(errors="replace") == "a\ufffdb\ufffd\ufffd"
  const uint8_t s[] = {'a', 0xE4, 0xB8, 'b', 0xFF, 0xF0, 0x9F};
  ASSERT_EQ(drl_utf8_lossy(s, sizeof s, 1, &out, &used), DRL_OK);
  EXPECT_EQ(std::string(out.s, (size_t)out.n), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
  out.n = 0;
  ASSERT_EQ(drl_utf8_lossy(s, sizeof s, 0, &out, &used), DRL_OK);
  EXPECT_EQ(used, sizeof s - 2); // the trailing F0 9F may still become a character
  drl_text_free(&out);
}

// Oniguruma's \s, not PCRE2's: U+180E is no white space.
TEST(TokenizerPretok, WhitespaceClassLeavesOutU180E) {
  drl_pretok_regex re;
  const char *pat = "\\s+|\\S+";
  ASSERT_EQ(drl_pretok_compile(pat, strlen(pat), &re), DRL_OK) << last_error();
  std::string text = "a\xE1\xA0\x8E\xE3\x80\x80" "b";  // a U+180E U+3000 b
  drl_spans spans{};
  ASSERT_EQ(drl_pretok_split(&re, text.data(), drl_span{0, (int64_t)text.size()}, &spans), DRL_OK);
  ASSERT_EQ(spans.n, 3);
  EXPECT_EQ(spans.v[0].len, 4); // "a" + U+180E
  EXPECT_EQ(spans.v[1].len, 3); // U+3000
  drl_spans_free(&spans);
  drl_pretok_free(&re);
  const char *inside = "[^\\S]";
  EXPECT_EQ(drl_pretok_compile(inside, strlen(inside), &re), DRL_ERR_FORMAT);
}

// ---- refused kinds ----

struct Refusal {
  const char *what;
  std::function<void(json_t *)> edit;
  const char *path, *value;
};

json_t *obj(const char *text) { return json_loads(text, 0, nullptr); }

TEST(TokenizerBpe, UnsupportedKindsAreRefusedByName) {
  const std::vector<Refusal> cases = {
      {"Unigram", [](json_t *r) { json_object_set_new(json_object_get(r, "model"), "type", json_string("Unigram")); },
       "model.type", "Unigram"},
      {"WordPiece",
       [](json_t *r) { json_object_set_new(json_object_get(r, "model"), "type", json_string("WordPiece")); },
       "model.type", "WordPiece"},
      {"byte_fallback",
       [](json_t *r) { json_object_set_new(json_object_get(r, "model"), "byte_fallback", json_true()); },
       "model.byte_fallback", "true"},
      {"dropout", [](json_t *r) { json_object_set_new(json_object_get(r, "model"), "dropout", json_real(0.1)); },
       "model.dropout", "number"},
      {"NFKC", [](json_t *r) { json_object_set_new(r, "normalizer", obj("{\"type\":\"NFKC\"}")); },
       "normalizer.type", "NFKC"},
      {"Lowercase in a sequence",
       [](json_t *r) {
         json_object_set_new(r, "normalizer",
                             obj("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Lowercase\"}]}"));
       },
       "normalizer.normalizers[1]", "Lowercase"},
      {"Metaspace",
       [](json_t *r) { json_object_set_new(r, "pre_tokenizer", obj("{\"type\":\"Metaspace\",\"replacement\":\"_\"}")); },
       "pre_tokenizer", "Metaspace"},
      {"no pre-tokenizer", [](json_t *r) { json_object_set_new(r, "pre_tokenizer", json_null()); }, "pre_tokenizer",
       "null"},
      {"Removed",
       [](json_t *r) {
         json_t *s = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 0);
         json_object_set_new(s, "behavior", json_string("Removed"));
       },
       "pre_tokenizer.pretokenizers[0].behavior", "Removed"},
      {"bad regex",
       [](json_t *r) {
         json_t *s = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 0);
         json_object_set_new(s, "pattern", obj("{\"Regex\":\"(unclosed\"}"));
       },
       "pre_tokenizer.pretokenizers[0].pattern.Regex", "compile"},
      {"prefix space",
       [](json_t *r) {
         json_t *s = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 1);
         json_object_set_new(s, "add_prefix_space", json_true());
       },
       "pre_tokenizer.pretokenizers[1].add_prefix_space", "true"},
      {"Metaspace decoder", [](json_t *r) { json_object_set_new(r, "decoder", obj("{\"type\":\"Metaspace\"}")); },
       "decoder.type", "Metaspace"},
      {"BertProcessing",
       [](json_t *r) { json_object_set_new(r, "post_processor", obj("{\"type\":\"BertProcessing\"}")); },
       "post_processor", "BertProcessing"},
      {"lstrip",
       [](json_t *r) { json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "lstrip", json_true()); },
       "added_tokens[0].lstrip", "true"},
      {"truncation", [](json_t *r) { json_object_set_new(r, "truncation", obj("{\"max_length\":8}")); }, "truncation",
       "object"},
      {"merge outside the vocabulary",
       [](json_t *r) {
         json_array_set_new(json_object_get(json_object_get(r, "model"), "merges"), 0, obj("[\"zz\",\"q\"]"));
       },
       "model.merges[0]", "zz"},
      {"missing byte",
       [](json_t *r) { json_object_del(json_object_get(json_object_get(r, "model"), "vocab"), "!"); },
       "model", "0x21"},
      {"negative id",
       [](json_t *r) { json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zzz", json_integer(-3)); },
       "model.vocab[\"zzz\"]", "-3"},
  };
  json_error_t err;
  for (const Refusal &c : cases) {
    json_t *root = json_load_file(qwen_path().c_str(), 0, &err);
    ASSERT_NE(root, nullptr) << err.text;
    c.edit(root);
    char *text = json_dumps(root, 0);
    json_decref(root);
    Tok tok("edited/tokenizer.json", text);
    free(text);
    EXPECT_EQ(tok.st, DRL_ERR_FORMAT) << c.what;
    std::string msg = last_error();
    EXPECT_NE(msg.find("edited/tokenizer.json"), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.path), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.value), std::string::npos) << c.what << ": " << msg;
  }
  Tok junk("junk.json", "{\"model\": ");
  EXPECT_EQ(junk.st, DRL_ERR_FORMAT);
  EXPECT_NE(last_error().find("not valid JSON"), std::string::npos) << last_error();
  Tok missing(tok_fixture_dir() + "none/tokenizer.json");
  EXPECT_EQ(missing.st, DRL_ERR_IO);
}

}  // namespace
