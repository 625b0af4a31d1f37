// Character vocabularies and the built-in tasks: generators (determinism, addressing, formats, histograms) and
// verifiers on hand-made responses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "kernels/philox.h"
#include "data/dataset.h"
#include "data/task.h"
#include "data/vocab.h"
}

namespace {

std::vector<int32_t> enc(const char *vocab, const std::string &text) {
  std::vector<int32_t> ids(text.size() + 1);
  int64_t n = -1;
  drl_status st = drl_vocab_encode(vocab, text.c_str(), ids.data(), (int64_t)ids.size(), &n);
  EXPECT_EQ(st, DRL_OK) << drl_last_error();
  ids.resize(st == DRL_OK ? (size_t)n : 0);
  return ids;
}

std::string dec(const char *vocab, const int32_t *ids, int64_t n) {
  std::vector<char> buf((size_t)n + 1);
  drl_status st = drl_vocab_decode(vocab, ids, n, buf.data(), (int64_t)buf.size());
  EXPECT_EQ(st, DRL_OK) << drl_last_error();
  return std::string(buf.data());
}

std::string prompt_text(const drl_dataset &ds, int64_t i) {
  return dec(ds.vocab, ds.prompts.tokens + ds.prompts.offsets[i], ds.prompts.offsets[i + 1] - ds.prompts.offsets[i]);
}

std::string answer_text(const drl_dataset &ds, int64_t i) {
  return dec(ds.vocab, ds.answers.tokens + ds.answers.offsets[i], ds.answers.offsets[i + 1] - ds.answers.offsets[i]);
}

// RAII holder of a generated dataset.
struct Gen {
  drl_dataset ds;
  drl_status st;
  Gen(const char *task, int64_t n, uint64_t seed, int size = 0) {
    memset(&ds, 0, sizeof ds);
    st = drl_task_generate(task, n, seed, size, &ds);
  }
  ~Gen() { drl_dataset_free(&ds); }
};

// The verifier's score of response_text for prompt_text, both encoded in the task's vocabulary.
float reward(const char *task, const std::string &prompt, const std::string &response, int partial = 0) {
  const char *vocab = drl_task_vocab(task);
  std::vector<int32_t> p = enc(vocab, prompt), r = enc(vocab, response);
  float out = -1.0f;
  drl_status st = drl_task_reward(task, p.data(), (int64_t)p.size(), r.data(), (int64_t)r.size(), partial, &out);
  EXPECT_EQ(st, DRL_OK) << drl_last_error();
  return out;
}

bool same_seqs(const drl_token_seqs &a, const drl_token_seqs &b, int64_t n) {
  if (a.offsets[n] != b.offsets[n]) return false;
  return memcmp(a.offsets, b.offsets, (size_t)(n + 1) * sizeof(int64_t)) == 0 &&
         memcmp(a.tokens, b.tokens, (size_t)a.offsets[n] * sizeof(int32_t)) == 0;
}

bool contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != nullptr; }

}  // namespace

// ---------------------------------------------------------------- vocab

TEST(Vocab, SizeFindEos) {
  EXPECT_EQ(drl_vocab_size("0123456789+=."), 13);
  EXPECT_EQ(drl_vocab_size(nullptr), 0);
  EXPECT_EQ(drl_vocab_find("0123456789+=.", '7'), 7);
  EXPECT_EQ(drl_vocab_find("0123456789+=.", '+'), 10);
  EXPECT_EQ(drl_vocab_find("0123456789+=.", 'x'), -1);
  EXPECT_EQ(drl_vocab_find("0123456789+=.", '\0'), -1);
  EXPECT_EQ(drl_vocab_eos("0123456789+=."), 12);
  EXPECT_EQ(drl_vocab_eos("abc"), -1);
}

TEST(Vocab, EncodeDecodeRoundTrip) {
  for (const char *const *t = drl_task_names(); *t; ++t) {
    const char *vocab = drl_task_vocab(*t);
    ASSERT_NE(vocab, nullptr);
    std::string all(vocab), text = all + std::string(all.rbegin(), all.rend()) + all.substr(1, 3);
    std::vector<int32_t> ids = enc(vocab, text);
    ASSERT_EQ(ids.size(), text.size());
    for (size_t k = 0; k < all.size(); ++k) EXPECT_EQ(ids[k], (int32_t)k) << *t;
    EXPECT_EQ(dec(vocab, ids.data(), (int64_t)ids.size()), text);
  }
  std::vector<int32_t> none = enc("ab.", "");
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(dec("ab.", none.data(), 0), "");
}

TEST(Vocab, EncodeUnknownCharacterNamesItAndPosition) {
  int32_t ids[16];
  int64_t n = -1;
  EXPECT_EQ(drl_vocab_encode("0123456789+=.", "12+x=", ids, 16, &n), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "'x'")) << drl_last_error();
  EXPECT_TRUE(contains(drl_last_error(), "position 3")) << drl_last_error();
  EXPECT_EQ(drl_vocab_encode("0123456789+=.", "1\n", ids, 16, &n), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "\\x0A")) << drl_last_error();
  EXPECT_TRUE(contains(drl_last_error(), "position 1")) << drl_last_error();
}

TEST(Vocab, EncodeCapacityTooSmall) {
  int32_t ids[4] = {-7, -7, -7, -7};
  int64_t n = -1;
  EXPECT_EQ(drl_vocab_encode("0123456789+=.", "12345", ids, 3, &n), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(n, 5);  // the length needed
  EXPECT_EQ(ids[3], -7);  // nothing beyond cap
  EXPECT_EQ(drl_vocab_encode("0123456789+=.", "123", ids, 3, &n), DRL_OK);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(drl_vocab_encode("0123456789+=.", "1", nullptr, 0, &n), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_vocab_encode(nullptr, "1", ids, 4, &n), DRL_ERR_INVALID_ARG);
}

TEST(Vocab, DecodeRejectsBadIdsAndSmallBuffers) {
  char buf[8];
  const int32_t neg[] = {1, -1};
  EXPECT_EQ(drl_vocab_decode("abc.", neg, 2, buf, 8), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "id -1 at position 1")) << drl_last_error();
  const int32_t big[] = {4};
  EXPECT_EQ(drl_vocab_decode("abc.", big, 1, buf, 8), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "id 4")) << drl_last_error();
  const int32_t ok[] = {0, 1, 2, 3};
  EXPECT_EQ(drl_vocab_decode("abc.", ok, 4, buf, 4), DRL_ERR_INVALID_ARG);  // no room for the NUL
  EXPECT_EQ(drl_vocab_decode("abc.", ok, 4, buf, 5), DRL_OK);
  EXPECT_STREQ(buf, "abc.");
}

TEST(Vocab, CheckRejectsEmptyRepeatedAndOverlong) {
  EXPECT_EQ(drl_vocab_check("0123456789+=.", DRL_VOCAB_CAP), DRL_OK);
  EXPECT_EQ(drl_vocab_check("", DRL_VOCAB_CAP), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_vocab_check(nullptr, DRL_VOCAB_CAP), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_vocab_check("abca", DRL_VOCAB_CAP), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "'a' (ids 0 and 3)")) << drl_last_error();
  const char unterminated[4] = {'a', 'b', 'c', 'd'};
  EXPECT_EQ(drl_vocab_check(unterminated, 4), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_vocab_check("abc", 4), DRL_OK);
}

// ---------------------------------------------------------------- task registry

TEST(TaskApi, NamesVocabsAndSizes) {
  const char *const *names = drl_task_names();
  std::vector<std::string> got;
  for (const char *const *t = names; *t; ++t) got.push_back(*t);
  EXPECT_EQ(got, (std::vector<std::string>{"add", "sort", "keyfork"}));
  EXPECT_STREQ(drl_task_vocab("add"), "0123456789+=.");
  EXPECT_STREQ(drl_task_vocab("sort"), "0123456789=.");
  EXPECT_STREQ(drl_task_vocab("keyfork"), "abcdef0123456789=.");
  for (const std::string &t : got) {
    const char *v = drl_task_vocab(t.c_str());
    EXPECT_EQ(drl_vocab_check(v, DRL_VOCAB_CAP), DRL_OK) << t;
    EXPECT_EQ(drl_vocab_eos(v), drl_vocab_size(v) - 1) << t;  // '.' is the last id
    EXPECT_EQ(drl_task_check(t.c_str()), DRL_OK);
  }
  EXPECT_EQ(drl_task_default_size("add"), 3);
  EXPECT_EQ(drl_task_default_size("sort"), 6);
  EXPECT_EQ(drl_task_default_size("keyfork"), 32);
  int lo = 0, hi = 0;
  ASSERT_EQ(drl_task_size_range("add", &lo, &hi), DRL_OK);
  EXPECT_EQ(lo, 1);
  EXPECT_EQ(hi, 9);
  ASSERT_EQ(drl_task_size_range("sort", &lo, &hi), DRL_OK);
  EXPECT_EQ(lo, 1);
  EXPECT_EQ(hi, 32);
  ASSERT_EQ(drl_task_size_range("keyfork", &lo, &hi), DRL_OK);
  EXPECT_EQ(lo, 1);
  EXPECT_EQ(hi, 100);
  EXPECT_EQ(drl_task_max_response_len("add", 0), 5);   // 999+999=1998 and '.'
  EXPECT_EQ(drl_task_max_response_len("add", 9), 11);
  EXPECT_EQ(drl_task_max_response_len("sort", 0), 7);
  EXPECT_EQ(drl_task_max_response_len("keyfork", 0), 13);
  EXPECT_EQ(drl_task_max_response_len("add", 10), -1);
}

TEST(TaskApi, UnknownTaskListsKnownTasks) {
  drl_dataset ds;
  memset(&ds, 0, sizeof ds);
  EXPECT_EQ(drl_task_generate("mul", 4, 1, 0, &ds), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "unknown task 'mul'")) << drl_last_error();
  EXPECT_TRUE(contains(drl_last_error(), "add, sort, keyfork")) << drl_last_error();
  EXPECT_EQ(ds.prompts.tokens, nullptr);
  const int32_t p[] = {1, 10, 2, 11}, r[] = {3};
  float rw = -1;
  EXPECT_EQ(drl_task_reward("Add", p, 4, r, 1, 0, &rw), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "add, sort, keyfork")) << drl_last_error();
  EXPECT_EQ(drl_task_check(nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_task_vocab("flow"), nullptr);
  EXPECT_EQ(drl_task_default_size("flow"), -1);
  EXPECT_EQ(drl_task_size_range("", nullptr, nullptr), DRL_ERR_INVALID_ARG);
}

TEST(TaskApi, RejectsBadCountAndSize) {
  {
    Gen g("add", -1, 1);
    EXPECT_EQ(g.st, DRL_ERR_INVALID_ARG);
    EXPECT_TRUE(contains(drl_last_error(), "negative")) << drl_last_error();
  }
  const struct {
    const char *task;
    int bad_lo, bad_hi;
  } cases[] = {{"add", -1, 10}, {"sort", -3, 33}, {"keyfork", -1, 101}};
  for (const auto &c : cases) {
    Gen lo(c.task, 3, 1, c.bad_lo), hi(c.task, 3, 1, c.bad_hi);
    EXPECT_EQ(lo.st, DRL_ERR_INVALID_ARG) << c.task;
    EXPECT_EQ(hi.st, DRL_ERR_INVALID_ARG) << c.task;
    EXPECT_TRUE(contains(drl_last_error(), "out of range")) << drl_last_error();
    EXPECT_EQ(hi.ds.prompts.tokens, nullptr);
    Gen edge(c.task, 3, 1, c.bad_hi - 1);
    EXPECT_EQ(edge.st, DRL_OK) << drl_last_error();
  }
  EXPECT_EQ(drl_task_generate("add", 1, 1, 0, nullptr), DRL_ERR_INVALID_ARG);
  {
    Gen huge("keyfork", DRL_DATASET_MAX_SEQS + 1, 1);  // more than a dataset file may hold: refused before work
    EXPECT_EQ(huge.st, DRL_ERR_INVALID_ARG);
    EXPECT_TRUE(contains(drl_last_error(), "at most")) << drl_last_error();
  }
}

TEST(TaskApi, EmptyDataset) {
  Gen g("sort", 0, 5);
  ASSERT_EQ(g.st, DRL_OK) << drl_last_error();
  EXPECT_EQ(g.ds.prompts.n, 0);
  EXPECT_EQ(g.ds.answers.n, 0);
  ASSERT_NE(g.ds.prompts.offsets, nullptr);
  EXPECT_EQ(g.ds.prompts.offsets[0], 0);
  EXPECT_STREQ(g.ds.task, "sort");
  EXPECT_EQ(drl_dataset_validate(&g.ds), DRL_OK) << drl_last_error();
}

TEST(TaskApi, RewardRejectsBadArguments) {
  const char *v = drl_task_vocab("add");
  std::vector<int32_t> p = enc(v, "1+2="), r = enc(v, "3.");
  float rw = -1;
  EXPECT_EQ(drl_task_reward("add", p.data(), 4, r.data(), 2, 0, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_task_reward("add", p.data(), 4, r.data(), -1, 0, &rw), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_task_reward("add", p.data(), 4, nullptr, 2, 0, &rw), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_task_reward("add", p.data(), 4, nullptr, 0, 0, &rw), DRL_OK);  // empty response
  EXPECT_EQ(rw, 0.0f);
  // A response id outside the vocabulary before the EOS is a caller bug; after the EOS it is ignored.
  const int32_t bad[] = {3, 13};
  EXPECT_EQ(drl_task_reward("add", p.data(), 4, bad, 2, 0, &rw), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "id 13 at position 1")) << drl_last_error();
  const int32_t after_eos[] = {3, 12, 99, -5};
  ASSERT_EQ(drl_task_reward("add", p.data(), 4, after_eos, 4, 0, &rw), DRL_OK) << drl_last_error();
  EXPECT_EQ(rw, 1.0f);
  std::vector<int32_t> long_prompt(1000, 1);  // longer than any prompt the verifier accepts: an error, no overflow
  EXPECT_EQ(drl_task_reward("add", long_prompt.data(), 1000, r.data(), 2, 0, &rw), DRL_ERR_INVALID_ARG);
  const int32_t bad_prompt[] = {1, 10, 2, 40};
  EXPECT_EQ(drl_task_reward("add", bad_prompt, 4, r.data(), 2, 0, &rw), DRL_ERR_INVALID_ARG);
  EXPECT_TRUE(contains(drl_last_error(), "prompt")) << drl_last_error();
}

// ---------------------------------------------------------------- generators, every task

class TaskGen : public ::testing::TestWithParam<const char *> {};

TEST_P(TaskGen, LayoutAndMetadata) {
  const char *task = GetParam();
  Gen g(task, 50, 7);
  ASSERT_EQ(g.st, DRL_OK) << drl_last_error();
  const drl_dataset &ds = g.ds;
  EXPECT_STREQ(ds.task, task);
  EXPECT_STREQ(ds.vocab, drl_task_vocab(task));
  EXPECT_EQ(ds.format_version, DRL_DATASET_FORMAT_VERSION);
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_OK) << drl_last_error();
  ASSERT_EQ(ds.prompts.n, 50);
  ASSERT_EQ(ds.answers.n, 50);
  int vsize = drl_vocab_size(ds.vocab), eos = drl_vocab_eos(ds.vocab);
  for (const drl_token_seqs *s : {&ds.prompts, &ds.answers}) {
    EXPECT_EQ(s->offsets[0], 0);
    for (int64_t i = 0; i < 50; ++i) EXPECT_LT(s->offsets[i], s->offsets[i + 1]);
    for (int64_t k = 0; k < s->offsets[50]; ++k) {
      EXPECT_GE(s->tokens[k], 0);
      EXPECT_LT(s->tokens[k], vsize);
    }
  }
  for (int64_t i = 0; i < 50; ++i) {
    // Prompts carry no EOS; answers end with exactly one.
    for (int64_t k = ds.prompts.offsets[i]; k < ds.prompts.offsets[i + 1]; ++k) EXPECT_NE(ds.prompts.tokens[k], eos);
    int64_t a0 = ds.answers.offsets[i], a1 = ds.answers.offsets[i + 1];
    EXPECT_EQ(ds.answers.tokens[a1 - 1], eos);
    for (int64_t k = a0; k < a1 - 1; ++k) EXPECT_NE(ds.answers.tokens[k], eos);
  }
}

TEST_P(TaskGen, SameSeedSameDataOtherSeedDiffers) {
  const char *task = GetParam();
  Gen a(task, 100, 42), b(task, 100, 42), c(task, 100, 43), d(task, 100, 42 + (1ull << 32));
  ASSERT_EQ(a.st, DRL_OK);
  ASSERT_EQ(b.st, DRL_OK);
  ASSERT_EQ(c.st, DRL_OK);
  ASSERT_EQ(d.st, DRL_OK);
  EXPECT_TRUE(same_seqs(a.ds.prompts, b.ds.prompts, 100));
  EXPECT_TRUE(same_seqs(a.ds.answers, b.ds.answers, 100));
  EXPECT_FALSE(same_seqs(a.ds.prompts, c.ds.prompts, 100));
  EXPECT_FALSE(same_seqs(a.ds.prompts, d.ds.prompts, 100));  // the seed's high word matters too
  // Not one repeated example: the examples within a dataset vary.
  int distinct = 0;
  for (int64_t i = 1; i < 100; ++i) distinct += prompt_text(a.ds, i) != prompt_text(a.ds, 0);
  EXPECT_GT(distinct, 50);
}

TEST_P(TaskGen, ExampleIndependentOfN) {
  const char *task = GetParam();
  Gen small(task, 10, 9), big(task, 100, 9);
  ASSERT_EQ(small.st, DRL_OK);
  ASSERT_EQ(big.st, DRL_OK);
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(prompt_text(small.ds, i), prompt_text(big.ds, i)) << i;
    EXPECT_EQ(answer_text(small.ds, i), answer_text(big.ds, i)) << i;
  }
  EXPECT_TRUE(same_seqs(small.ds.prompts, big.ds.prompts, 10));
}

TEST_P(TaskGen, StoredAnswersScoreOne) {
  const char *task = GetParam();
  int lo = 0, hi = 0;
  ASSERT_EQ(drl_task_size_range(task, &lo, &hi), DRL_OK);
  for (int size : {lo, 0, hi}) {
    Gen g(task, 300, 11, size);
    ASSERT_EQ(g.st, DRL_OK) << drl_last_error();
    const drl_dataset &ds = g.ds;
    for (int64_t i = 0; i < ds.prompts.n; ++i) {
      const int32_t *p = ds.prompts.tokens + ds.prompts.offsets[i];
      int64_t np = ds.prompts.offsets[i + 1] - ds.prompts.offsets[i];
      const int32_t *a = ds.answers.tokens + ds.answers.offsets[i];
      int64_t na = ds.answers.offsets[i + 1] - ds.answers.offsets[i];
      ASSERT_LE(na, drl_task_max_response_len(task, size));
      for (int partial : {0, 1}) {
        for (int64_t len : {na, na - 1}) {  // with and without the EOS
          float r = -1;
          ASSERT_EQ(drl_task_reward(task, p, np, a, len, partial, &r), DRL_OK) << drl_last_error();
          EXPECT_EQ(r, 1.0f) << task << " " << prompt_text(ds, i) << " -> " << answer_text(ds, i);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tasks, TaskGen, ::testing::Values("add", "sort", "keyfork"),
                         [](const ::testing::TestParamInfo<const char *> &info) { return std::string(info.param); });

// ---------------------------------------------------------------- add

TEST(TaskAdd, PromptsParseAndSumsMatch) {
  for (int size : {1, 3, 9}) {
    Gen g("add", 2000, 3, size);
    ASSERT_EQ(g.st, DRL_OK) << drl_last_error();
    for (int64_t i = 0; i < 2000; ++i) {
      std::string p = prompt_text(g.ds, i), a = answer_text(g.ds, i);
      long long x = -1, y = -1, z = -1;
      int used = 0;
      ASSERT_EQ(sscanf(p.c_str(), "%lld+%lld=%n", &x, &y, &used), 2) << p;
      ASSERT_EQ((size_t)used, p.size()) << p;
      ASSERT_EQ(sscanf(a.c_str(), "%lld.%n", &z, &used), 1) << a;
      ASSERT_EQ((size_t)used, a.size()) << a;
      EXPECT_EQ(x + y, z) << p << a;
      // Canonical decimal: no sign, no leading zeros, at most size digits per operand.
      EXPECT_EQ(p, std::to_string(x) + "+" + std::to_string(y) + "=");
      EXPECT_EQ(a, std::to_string(z) + ".");
      EXPECT_LE(std::to_string(x).size(), (size_t)size);
      EXPECT_LE(std::to_string(y).size(), (size_t)size);
    }
  }
}

TEST(TaskAdd, DigitCountHistogram) {
  for (int size : {3, 9}) {
    Gen g("add", 10000, 2024, size);
    ASSERT_EQ(g.st, DRL_OK);
    std::vector<int> count_a(size + 1, 0), count_b(size + 1, 0);
    for (int64_t i = 0; i < 10000; ++i) {
      std::string p = prompt_text(g.ds, i);
      size_t plus = p.find('+');
      ASSERT_NE(plus, std::string::npos);
      ++count_a[plus];
      ++count_b[p.size() - plus - 2];
    }
    // The digit count is uniform in 1..size (expected 10000/size each; the bounds are > 6 standard deviations).
    double expect = 10000.0 / size;
    for (int d = 1; d <= size; ++d) {
      EXPECT_GT(count_a[d], expect * 0.75) << "size " << size << " digits " << d;
      EXPECT_LT(count_a[d], expect * 1.25) << "size " << size << " digits " << d;
      EXPECT_GT(count_b[d], expect * 0.75) << "size " << size << " digits " << d;
      EXPECT_LT(count_b[d], expect * 1.25) << "size " << size << " digits " << d;
    }
  }
}

TEST(TaskAdd, ExactRewards) {
  EXPECT_EQ(reward("add", "123+456=", "579."), 1.0f);
  EXPECT_EQ(reward("add", "123+456=", "579"), 1.0f);          // missing EOS: the content is the whole response
  EXPECT_EQ(reward("add", "123+456=", "579.12+=.9"), 1.0f);   // anything after the EOS is ignored
  EXPECT_EQ(reward("add", "123+456=", "589."), 0.0f);
  EXPECT_EQ(reward("add", "123+456=", "5790."), 0.0f);
  EXPECT_EQ(reward("add", "123+456=", "0579."), 0.0f);        // leading zero: not the canonical answer
  EXPECT_EQ(reward("add", "123+456=", "57."), 0.0f);
  EXPECT_EQ(reward("add", "123+456=", ""), 0.0f);
  EXPECT_EQ(reward("add", "123+456=", "."), 0.0f);
  EXPECT_EQ(reward("add", "123+456=", "5+9."), 0.0f);
  EXPECT_EQ(reward("add", "999+1=", "1000."), 1.0f);          // carry into a new digit
  EXPECT_EQ(reward("add", "0+0=", "0."), 1.0f);
  EXPECT_EQ(reward("add", "007+5=", "12."), 1.0f);            // operands with leading zeros still parse
  EXPECT_EQ(reward("add", "999999999+999999999=", "1999999998."), 1.0f);
  // Long operands: the verifier adds digit strings, so it is not bounded by int64.
  EXPECT_EQ(reward("add", "99999999999999999999999999999+1=", "100000000000000000000000000000."), 1.0f);
}

TEST(TaskAdd, PartialRewards) {
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "589.", 1), 2.0f / 3.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "579.", 1), 1.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "579", 1), 1.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "79.", 1), 2.0f / 3.0f);    // aligned from the right
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "9.", 1), 1.0f / 3.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "1579.", 1), 3.0f / 4.0f);  // over the longer of the two
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "000.", 1), 0.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "589.+++", 1), 2.0f / 3.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "5+9.", 1), 0.0f);          // malformed
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "579=", 1), 0.0f);          // malformed
  EXPECT_FLOAT_EQ(reward("add", "123+456=", "", 1), 0.0f);
  EXPECT_FLOAT_EQ(reward("add", "123+456=", ".", 1), 0.0f);
  EXPECT_FLOAT_EQ(reward("add", "999+1=", "000.", 1), 3.0f / 4.0f);
}

TEST(TaskAdd, MalformedPromptIsError) {
  const char *v = drl_task_vocab("add");
  std::vector<int32_t> r = enc(v, "3.");
  for (const char *p : {"12+=", "+3=", "12+3", "12+3=4", "1=2+", "", "1+2+3=", "12=", "1+2==", "."}) {
    std::vector<int32_t> ids = enc(v, p);
    float rw = -1;
    EXPECT_EQ(drl_task_reward("add", ids.data(), (int64_t)ids.size(), r.data(), 2, 0, &rw), DRL_ERR_INVALID_ARG)
        << p;
    EXPECT_TRUE(contains(drl_last_error(), "A+B=")) << drl_last_error();
  }
}

// ---------------------------------------------------------------- sort

TEST(TaskSort, PromptsParseAndAnswersSorted) {
  for (int size : {1, 6, 32}) {
    Gen g("sort", 1000, 5, size);
    ASSERT_EQ(g.st, DRL_OK) << drl_last_error();
    std::vector<int> digit_count(10, 0);
    for (int64_t i = 0; i < 1000; ++i) {
      std::string p = prompt_text(g.ds, i), a = answer_text(g.ds, i);
      ASSERT_EQ(p.size(), (size_t)size + 1) << p;
      ASSERT_EQ(p.back(), '=');
      std::string s = p.substr(0, size);
      for (char c : s) {
        ASSERT_TRUE(c >= '0' && c <= '9') << p;
        ++digit_count[c - '0'];
      }
      std::sort(s.begin(), s.end());
      EXPECT_EQ(a, s + ".");
    }
    for (int d = 0; d < 10; ++d) EXPECT_GT(digit_count[d], 0) << "size " << size << " digit " << d;
  }
}

// The documented stream layout (task.h): digit k of example i is word i * DRL_TASK_RNG_STRIDE + k of the sort
// stream, reduced mod 10, so examples own disjoint words and any range of examples can be regenerated alone.
TEST(TaskSort, StreamAddressing) {
  const uint64_t seed = 0x1234567890ull;
  Gen g("sort", 40, seed, 32);
  ASSERT_EQ(g.st, DRL_OK);
  const uint32_t tag = drl_rng_tag(DRL_RNG_DATA, 2, 0);
  for (int64_t i = 0; i < 40; ++i) {
    std::string p = prompt_text(g.ds, i);
    for (int k = 0; k < 32; ++k)
      EXPECT_EQ(p[k] - '0', (int)(drl_rng_u32(seed, 0, tag, (uint64_t)i * DRL_TASK_RNG_STRIDE + k) % 10))
          << "example " << i << " digit " << k;
  }
}

TEST(TaskSort, ExactRewards) {
  EXPECT_EQ(reward("sort", "3141=", "1134."), 1.0f);
  EXPECT_EQ(reward("sort", "3141=", "1134"), 1.0f);        // missing EOS
  EXPECT_EQ(reward("sort", "3141=", "1134.99=."), 1.0f);   // garbage after the EOS
  EXPECT_EQ(reward("sort", "3141=", "1143."), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", "3141."), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", "113."), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", "11345."), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", "11=4."), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", ""), 0.0f);
  EXPECT_EQ(reward("sort", "3141=", "."), 0.0f);
  EXPECT_EQ(reward("sort", "7=", "7."), 1.0f);
}

TEST(TaskSort, PartialRewards) {
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "1143.", 1), 0.5f);
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "1134.", 1), 1.0f);
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "113.", 1), 0.75f);    // aligned from the left, over the longer
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "11345.", 1), 0.8f);
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "4311.", 1), 0.0f);
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "1143.=", 1), 0.5f);
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "11=4.", 1), 0.0f);    // malformed
  EXPECT_FLOAT_EQ(reward("sort", "3141=", "", 1), 0.0f);
}

TEST(TaskSort, MalformedPromptIsError) {
  const char *v = drl_task_vocab("sort");
  std::vector<int32_t> r = enc(v, "1.");
  for (const char *p : {"=", "12", "1=2", "12==", ""}) {
    std::vector<int32_t> ids = enc(v, p);
    float rw = -1;
    EXPECT_EQ(drl_task_reward("sort", ids.data(), (int64_t)ids.size(), r.data(), 2, 0, &rw), DRL_ERR_INVALID_ARG)
        << p;
  }
}

// ---------------------------------------------------------------- keyfork

namespace {

// A keyfork response: all 'a' except the two forks.
std::string keyfork_response(int s3, int s8) {
  std::string r(DRL_KEYFORK_LEN, 'a');
  r[DRL_KEYFORK_FORK0] = (char)('a' + s3);
  r[DRL_KEYFORK_FORK1] = (char)('a' + s8);
  return r;
}

std::string keyfork_prompt(int q) {
  char p[8];
  snprintf(p, sizeof p, "%02d=", q);
  return p;
}

}  // namespace

TEST(TaskKeyfork, PromptsAndCanonicalAnswers) {
  Gen g("keyfork", 500, 1);
  ASSERT_EQ(g.st, DRL_OK);
  for (int64_t i = 0; i < 500; ++i) {
    std::string p = prompt_text(g.ds, i);
    ASSERT_EQ(p.size(), 3u);
    int q = (p[0] - '0') * 10 + (p[1] - '0');
    EXPECT_LT(q, 32);
    EXPECT_EQ(p, keyfork_prompt(q));
    EXPECT_EQ(answer_text(g.ds, i), keyfork_response(0, q % 6) + ".");
  }
  // Symbol s is token id s, so the answer ids are the symbol indices.
  const int32_t *a = g.ds.answers.tokens;
  for (int k = 0; k < DRL_KEYFORK_LEN; ++k) {
    EXPECT_GE(a[k], 0);
    EXPECT_LT(a[k], DRL_KEYFORK_SYMBOLS);
  }
  EXPECT_EQ(a[DRL_KEYFORK_LEN], drl_vocab_eos(g.ds.vocab));
}

TEST(TaskKeyfork, EveryForkCombination) {
  for (int q : {0, 1, 5, 6, 11, 31, 99}) {
    for (int s3 = 0; s3 < 6; ++s3)
      for (int s8 = 0; s8 < 6; ++s8) {
        float want = (s3 + s8) % 6 == q % 6 ? 1.0f : 0.0f;
        EXPECT_EQ(reward("keyfork", keyfork_prompt(q), keyfork_response(s3, s8) + "."), want)
            << "q " << q << " forks " << s3 << "," << s8;
        EXPECT_EQ(reward("keyfork", keyfork_prompt(q), keyfork_response(s3, s8) + ".", 1), want);
      }
  }
}

TEST(TaskKeyfork, FillerViolations) {
  for (int pos = 0; pos < DRL_KEYFORK_LEN; ++pos) {
    if (pos == DRL_KEYFORK_FORK0 || pos == DRL_KEYFORK_FORK1) continue;
    for (char c : {'b', 'c', 'd', 'e', 'f', '0', '='}) {
      std::string r = keyfork_response(2, 5);  // (2 + 5) mod 6 = 1 = q mod 6 for q = 7
      ASSERT_EQ(reward("keyfork", "07=", r + "."), 1.0f);
      r[pos] = c;
      EXPECT_EQ(reward("keyfork", "07=", r + "."), 0.0f) << "position " << pos << " holds " << c;
    }
  }
  // A digit at a fork is malformed, never a symbol.
  std::string r = keyfork_response(0, 1);
  r[DRL_KEYFORK_FORK0] = '0';
  EXPECT_EQ(reward("keyfork", "01=", r), 0.0f);
}

TEST(TaskKeyfork, LengthAndEos) {
  std::string ok = keyfork_response(0, 3);
  EXPECT_EQ(reward("keyfork", "03=", ok + "."), 1.0f);
  EXPECT_EQ(reward("keyfork", "03=", ok), 1.0f);                 // exactly 12 symbols and no EOS
  EXPECT_EQ(reward("keyfork", "03=", ok + ".fff07=."), 1.0f);    // garbage after the EOS
  EXPECT_EQ(reward("keyfork", "03=", ok + "a."), 0.0f);          // 13 symbols
  EXPECT_EQ(reward("keyfork", "03=", ok + "a"), 0.0f);
  EXPECT_EQ(reward("keyfork", "03=", ok.substr(0, 11) + "."), 0.0f);
  EXPECT_EQ(reward("keyfork", "03=", ok.substr(0, 9) + "." + ok.substr(9)), 0.0f);  // EOS inside
  EXPECT_EQ(reward("keyfork", "03=", ""), 0.0f);
  EXPECT_EQ(reward("keyfork", "03=", "."), 0.0f);
}

TEST(TaskKeyfork, QHistogram) {
  Gen g("keyfork", 10000, 77);
  ASSERT_EQ(g.st, DRL_OK);
  std::vector<int> count(32, 0);
  for (int64_t i = 0; i < 10000; ++i) {
    std::string p = prompt_text(g.ds, i);
    int q = (p[0] - '0') * 10 + (p[1] - '0');
    ASSERT_LT(q, 32);
    ++count[q];
  }
  // Uniform q: expected 312.5 each, standard deviation about 17.4.
  for (int q = 0; q < 32; ++q) {
    EXPECT_GT(count[q], 220) << "q " << q;
    EXPECT_LT(count[q], 410) << "q " << q;
  }
  // size sets the number of distinct prompts.
  Gen wide("keyfork", 10000, 77, 100);
  ASSERT_EQ(wide.st, DRL_OK);
  std::vector<int> seen(100, 0);
  for (int64_t i = 0; i < 10000; ++i) {
    std::string p = prompt_text(wide.ds, i);
    ++seen[(p[0] - '0') * 10 + (p[1] - '0')];
  }
  for (int q = 0; q < 100; ++q) EXPECT_GT(seen[q], 0) << "q " << q;
}

TEST(TaskKeyfork, StreamAddressing) {
  const uint64_t seed = 99;
  Gen g("keyfork", 200, seed);
  ASSERT_EQ(g.st, DRL_OK);
  const uint32_t tag = drl_rng_tag(DRL_RNG_DATA, 3, 0);
  for (int64_t i = 0; i < 200; ++i) {
    uint32_t word = drl_rng_u32(seed, 0, tag, (uint64_t)i * DRL_TASK_RNG_STRIDE);
    EXPECT_EQ(prompt_text(g.ds, i), keyfork_prompt((int)(word % 32))) << i;
  }
}

TEST(TaskKeyfork, MalformedPromptIsError) {
  const char *v = drl_task_vocab("keyfork");
  std::vector<int32_t> r = enc(v, keyfork_response(0, 0) + ".");
  for (const char *p : {"7=", "007=", "ab=", "07", "07==", "="}) {
    std::vector<int32_t> ids = enc(v, p);
    float rw = -1;
    EXPECT_EQ(drl_task_reward("keyfork", ids.data(), (int64_t)ids.size(), r.data(), (int64_t)r.size(), 0, &rw),
              DRL_ERR_INVALID_ARG)
        << p;
  }
}
