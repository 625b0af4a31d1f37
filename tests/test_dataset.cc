// Dataset files: round trips, in-memory validation, and every malformed file the reader must refuse.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/dataset.h"
#include "data/h5.h"
}

namespace {

namespace fs = std::filesystem;

// Every test must also leave no HDF5 object open.
class DatasetTest : public TempDirTest {
 protected:
  void TearDown() override {
    EXPECT_EQ(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0) << "an HDF5 handle leaked";
    TempDirTest::TearDown();
  }
};

const char kVocab[] = "0123456789+= ";

// Fills seqs from strings over kVocab.
void fill(drl_token_seqs *s, const std::vector<std::string> &texts) {
  int64_t total = 0;
  for (const auto &t : texts) total += (int64_t)t.size();
  ASSERT_EQ(drl_token_seqs_alloc(s, (int64_t)texts.size(), total), DRL_OK) << last_error();
  int64_t at = 0;
  for (size_t i = 0; i < texts.size(); i++) {
    for (char c : texts[i]) s->tokens[at++] = (int32_t)(strchr(kVocab, c) - kVocab);
    s->offsets[i + 1] = at;
  }
}

// A small "add" dataset; answers only when with_answers.
drl_dataset make(const std::vector<std::string> &prompts, const std::vector<std::string> &answers, bool with_answers) {
  drl_dataset ds;
  memset(&ds, 0, sizeof ds);
  snprintf(ds.task, sizeof ds.task, "add");
  snprintf(ds.vocab, sizeof ds.vocab, "%s", kVocab);
  ds.format_version = DRL_DATASET_FORMAT_VERSION;
  fill(&ds.prompts, prompts);
  if (with_answers) fill(&ds.answers, answers);
  return ds;
}

void expect_same_seqs(const drl_token_seqs &a, const drl_token_seqs &b) {
  ASSERT_EQ(a.n, b.n);
  if (!a.offsets || !b.offsets) {
    EXPECT_EQ(a.offsets == nullptr, b.offsets == nullptr);
    return;
  }
  for (int64_t i = 0; i <= a.n; i++) ASSERT_EQ(a.offsets[i], b.offsets[i]) << i;
  for (int64_t j = 0; j < a.offsets[a.n]; j++) ASSERT_EQ(a.tokens[j], b.tokens[j]) << j;
}

bool is_zeroed(const drl_dataset &ds) {
  drl_dataset zero;
  memset(&zero, 0, sizeof zero);
  return memcmp(&ds, &zero, sizeof ds) == 0;
}

// Reads p expecting a failure: the status, a zeroed dataset, and the message to check.
drl_status read_fails(const std::string &p) {
  drl_dataset ds;
  memset(&ds, 0xAB, sizeof ds);  // garbage in: the reader must not trust or free it
  drl_clear_error();
  drl_status st = drl_dataset_read(p.c_str(), &ds);
  EXPECT_NE(st, DRL_OK) << p << " was accepted";
  EXPECT_TRUE(is_zeroed(ds)) << "dataset not left empty after a failed read";
  EXPECT_NE(last_error(), "");
  if (st == DRL_OK) drl_dataset_free(&ds);
  return st;
}

const std::vector<std::string> kPrompts = {"12+34=", "5+6=", "", "999+1="};
const std::vector<std::string> kAnswers = {"46", "11", "0", "1000"};

// ---- round trips ----

TEST_F(DatasetTest, RoundTripWithAnswers) {
  drl_dataset ds = make(kPrompts, kAnswers, true);
  const std::string p = path("add.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset back;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &back), DRL_OK) << last_error();
  EXPECT_STREQ(back.task, "add");
  EXPECT_STREQ(back.vocab, kVocab);
  EXPECT_EQ(back.format_version, DRL_DATASET_FORMAT_VERSION);
  expect_same_seqs(back.prompts, ds.prompts);
  expect_same_seqs(back.answers, ds.answers);
  EXPECT_EQ(back.answers.n, 4);
  drl_dataset_free(&back);
  EXPECT_TRUE(is_zeroed(back));
  drl_dataset_free(&ds);
}

TEST_F(DatasetTest, RoundTripWithoutAnswers) {
  drl_dataset ds = make(kPrompts, {}, false);
  const std::string p = path("prompts.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset back;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &back), DRL_OK) << last_error();
  expect_same_seqs(back.prompts, ds.prompts);
  EXPECT_EQ(back.answers.n, 0);
  EXPECT_EQ(back.answers.offsets, nullptr);
  EXPECT_EQ(back.answers.tokens, nullptr);
  drl_h5_file f;
  ASSERT_EQ(drl_h5_open_read(p.c_str(), &f), DRL_OK);
  int exists = -1;
  ASSERT_EQ(drl_h5_exists(&f, "/answers", &exists), DRL_OK);
  EXPECT_EQ(exists, 0);
  drl_h5_close(&f);
  drl_dataset_free(&back);
  drl_dataset_free(&ds);
}

TEST_F(DatasetTest, RoundTripZeroPrompts) {
  for (bool with_answers : {false, true}) {
    drl_dataset ds = make({}, {}, with_answers);
    const std::string p = path("zero.h5");
    ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
    drl_dataset back;
    ASSERT_EQ(drl_dataset_read(p.c_str(), &back), DRL_OK) << last_error();
    EXPECT_EQ(back.prompts.n, 0);
    ASSERT_NE(back.prompts.offsets, nullptr);
    EXPECT_EQ(back.prompts.offsets[0], 0);
    EXPECT_EQ(back.answers.offsets != nullptr, with_answers);
    EXPECT_STREQ(back.task, "add");
    drl_dataset_free(&back);
    drl_dataset_free(&ds);
  }
}

TEST_F(DatasetTest, LargeDatasetRoundTrip) {
  // Enough tokens for several chunks.
  std::mt19937 rng(7);
  std::vector<std::string> prompts, answers;
  for (int i = 0; i < 30000; i++) {
    int a = (int)(rng() % 100000), b = (int)(rng() % 100000);
    prompts.push_back(std::to_string(a) + "+" + std::to_string(b) + "=");
    answers.push_back(std::to_string(a + b));
  }
  drl_dataset ds = make(prompts, answers, true);
  const std::string p = path("large.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset back;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &back), DRL_OK) << last_error();
  expect_same_seqs(back.prompts, ds.prompts);
  expect_same_seqs(back.answers, ds.answers);
  drl_dataset_free(&back);
  drl_dataset_free(&ds);
}

TEST_F(DatasetTest, WriteReplacesAtomically) {
  const std::string p = path("add.h5");
  drl_dataset a = make({"1+1="}, {"2"}, true);
  drl_dataset b = make({"2+2=", "3+3="}, {"4", "6"}, true);
  ASSERT_EQ(drl_dataset_write(p.c_str(), &a), DRL_OK) << last_error();
  ASSERT_EQ(drl_dataset_write(p.c_str(), &b), DRL_OK) << last_error();
  drl_dataset back;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &back), DRL_OK) << last_error();
  expect_same_seqs(back.prompts, b.prompts);
  std::vector<std::string> names;
  for (const auto &e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"add.h5"});
  // An invalid dataset is refused before anything touches the disk.
  b.prompts.tokens[0] = 99;
  EXPECT_EQ(drl_dataset_write(p.c_str(), &b), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("refusing to write invalid dataset " + p);
  EXPECT_ERROR_HAS("token 99 at position 0 (sequence 0) is outside the vocabulary [0, 13)");
  drl_dataset again;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &again), DRL_OK) << last_error();
  expect_same_seqs(again.prompts, back.prompts);
  drl_dataset_free(&again);
  drl_dataset_free(&back);
  drl_dataset_free(&a);
  drl_dataset_free(&b);
}

// The file is plain HDF5: h5dump reads it (skipped where the tool is not installed).
TEST_F(DatasetTest, FileOpensInH5dump) {
  if (system("command -v h5dump > /dev/null 2>&1") != 0) GTEST_SKIP() << "h5dump not installed";
  drl_dataset ds = make(kPrompts, kAnswers, true);
  const std::string p = path("add.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset_free(&ds);
  const std::string out = path("dump.txt");
  ASSERT_EQ(system(("h5dump " + p + " > " + out + " 2>&1").c_str()), 0);
  std::ifstream in(out);
  std::string dump((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(dump.find("DATASET \"offsets\""), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"0123456789+= \""), std::string::npos) << dump;
  EXPECT_NE(dump.find("ATTRIBUTE \"format_version\""), std::string::npos) << dump;
}

// ---- in-memory validation ----

TEST_F(DatasetTest, ValidateNamesEachProblem) {
  drl_dataset ds = make(kPrompts, kAnswers, true);
  ASSERT_EQ(drl_dataset_validate(&ds), DRL_OK) << last_error();

  ds.prompts.offsets[0] = 1;
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("prompts offsets: offsets[0] = 1, expected 0");
  ds.prompts.offsets[0] = 0;

  int64_t saved = ds.prompts.offsets[2];
  ds.prompts.offsets[2] = ds.prompts.offsets[1] - 1;
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("prompts offsets: offsets[2] = 5 is less than offsets[1] = 6 (offsets must be non-decreasing)");
  ds.prompts.offsets[2] = saved;

  ds.answers.tokens[3] = -1;
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("answers tokens: token -1 at position 3 (sequence 1) is outside the vocabulary [0, 13)");
  ds.answers.tokens[3] = 1;

  int32_t saved_token = ds.prompts.tokens[5];
  ds.prompts.tokens[5] = 13;
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("prompts tokens: token 13 at position 5 (sequence 0)");
  ds.prompts.tokens[5] = saved_token;

  char vocab[DRL_VOCAB_CAP];
  memcpy(vocab, ds.vocab, sizeof vocab);
  ds.vocab[0] = '\0';
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("vocab is empty");
  snprintf(ds.vocab, sizeof ds.vocab, "0123456789+=1");
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("vocab repeats character '1' (0x31) at ids 1 and 12");
  memset(ds.vocab, 'x', sizeof ds.vocab);
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("vocab is not NUL-terminated");
  memcpy(ds.vocab, vocab, sizeof vocab);

  ds.task[0] = '\0';
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("task is empty");
  snprintf(ds.task, sizeof ds.task, "add");

  ds.answers.n = 3;
  EXPECT_EQ(drl_dataset_validate(&ds), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("answers: 3 sequences but 4 prompts");
  ds.answers.n = 4;

  ASSERT_EQ(drl_dataset_validate(&ds), DRL_OK) << last_error();
  drl_dataset_free(&ds);
  EXPECT_EQ(drl_dataset_validate(nullptr), DRL_ERR_INVALID_ARG);
}

// ---- malformed files ----

// Writes a dataset file piece by piece, so each test can get one piece wrong.
struct RawFile {
  drl_h5_writer w;
  explicit RawFile(const std::string &p) { EXPECT_EQ(drl_h5_writer_open(&w, p.c_str()), DRL_OK) << last_error(); }
  RawFile &attrs(const char *vocab = kVocab, const char *task = "add", int64_t version = DRL_DATASET_FORMAT_VERSION) {
    if (vocab) {
      EXPECT_EQ(drl_h5_write_attr_string(&w.file, "/", "vocab", vocab), DRL_OK);
    }
    if (task) {
      EXPECT_EQ(drl_h5_write_attr_string(&w.file, "/", "task", task), DRL_OK);
    }
    if (version >= 0) {
      EXPECT_EQ(drl_h5_write_attr_int64(&w.file, "/", "format_version", version), DRL_OK);
    }
    return *this;
  }
  RawFile &seqs(const char *group, std::vector<int32_t> tokens, std::vector<int64_t> offsets) {
    std::string t = std::string("/") + group + "/tokens", o = std::string("/") + group + "/offsets";
    EXPECT_EQ(drl_h5_write_array1d(&w.file, t.c_str(), DRL_H5_INT32, (int64_t)tokens.size(), tokens.data()), DRL_OK);
    EXPECT_EQ(drl_h5_write_array1d(&w.file, o.c_str(), DRL_H5_INT64, (int64_t)offsets.size(), offsets.data()),
              DRL_OK);
    return *this;
  }
  void commit() { EXPECT_EQ(drl_h5_writer_commit(&w), DRL_OK) << last_error(); }
};

TEST_F(DatasetTest, HandWrittenValidFileIsAccepted) {
  // The control for the tests below: the same construction with nothing wrong reads fine.
  const std::string p = path("ok.h5");
  RawFile(p).attrs().seqs("prompts", {1, 10, 2, 11}, {0, 4}).seqs("answers", {3}, {0, 1}).commit();
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(p.c_str(), &ds), DRL_OK) << last_error();
  EXPECT_EQ(ds.prompts.n, 1);
  EXPECT_EQ(ds.prompts.tokens[3], 11);
  EXPECT_EQ(ds.answers.tokens[0], 3);
  drl_dataset_free(&ds);
}

TEST_F(DatasetTest, RejectsMissingAndNonHdf5Files) {
  EXPECT_EQ(read_fails(path("absent.h5")), DRL_ERR_IO);
  EXPECT_ERROR_HAS("cannot open " + path("absent.h5") + ": No such file or directory");
  const std::string text = path("text.h5");
  std::ofstream(text) << "prompt,answer\n1+1=,2\n";
  EXPECT_EQ(read_fails(text), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS(text + " is not an HDF5 file");
}

TEST_F(DatasetTest, RejectsTruncatedFiles) {
  drl_dataset ds = make(kPrompts, kAnswers, true);
  const std::string p = path("add.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset_free(&ds);
  std::ifstream in(p, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 200u);
  for (size_t len : {bytes.size() / 2, (size_t)100, (size_t)0}) {
    const std::string cut = path("cut.h5");
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), (std::streamsize)len);
    read_fails(cut);
    EXPECT_ERROR_HAS(cut);
    if (len > 0) {
      EXPECT_ERROR_HAS("truncated");
    } else {
      EXPECT_ERROR_HAS("not an HDF5 file");
    }
  }
}

TEST_F(DatasetTest, RejectsCorruptedMiddle) {
  std::vector<std::string> prompts(2000, "123+456="), answers(2000, "579");
  drl_dataset ds = make(prompts, answers, true);
  const std::string p = path("add.h5");
  ASSERT_EQ(drl_dataset_write(p.c_str(), &ds), DRL_OK) << last_error();
  drl_dataset_free(&ds);
  std::ifstream in(p, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(99);
  for (size_t i = 0; i < 32; i++) bytes[bytes.size() / 2 + i] ^= (char)(1 + rng() % 255);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), (std::streamsize)bytes.size());
  read_fails(p);
  EXPECT_ERROR_HAS(p);
  EXPECT_ERROR_HAS("checksum");
}

TEST_F(DatasetTest, RejectsOffsetsOfWrongType) {
  const std::string p = path("float_offsets.h5");
  RawFile f(p);
  f.attrs();
  const int32_t tokens[2] = {1, 2};
  const float offsets[2] = {0.0f, 2.0f};
  EXPECT_EQ(drl_h5_write_array1d(&f.w.file, "/prompts/tokens", DRL_H5_INT32, 2, tokens), DRL_OK);
  EXPECT_EQ(drl_h5_write_array1d(&f.w.file, "/prompts/offsets", DRL_H5_FLOAT32, 2, offsets), DRL_OK);
  f.commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/offsets in " + p + ": expected int64, found float32");

  const std::string q = path("int64_tokens.h5");
  RawFile g(q);
  g.attrs();
  const int64_t tokens64[2] = {1, 2}, offsets64[2] = {0, 2};
  EXPECT_EQ(drl_h5_write_array1d(&g.w.file, "/prompts/tokens", DRL_H5_INT64, 2, tokens64), DRL_OK);
  EXPECT_EQ(drl_h5_write_array1d(&g.w.file, "/prompts/offsets", DRL_H5_INT64, 2, offsets64), DRL_OK);
  g.commit();
  EXPECT_EQ(read_fails(q), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/tokens in " + q + ": expected int32, found int64");
}

TEST_F(DatasetTest, RejectsNonMonotoneOffsets) {
  const std::string p = path("nonmono.h5");
  RawFile(p).attrs().seqs("prompts", {1, 2, 3, 4}, {0, 3, 1, 4}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/offsets in " + p + ": offsets[2] = 1 is less than offsets[1] = 3");
}

TEST_F(DatasetTest, RejectsOffsetsNotStartingAtZero) {
  const std::string p = path("start.h5");
  RawFile(p).attrs().seqs("prompts", {1, 2, 3, 4}, {1, 4}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/offsets in " + p + ": offsets[0] = 1, expected 0");
}

TEST_F(DatasetTest, RejectsOffsetsPastTheEnd) {
  const std::string p = path("past.h5");
  RawFile(p).attrs().seqs("prompts", {1, 2, 3, 4}, {0, 2, 1000000}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/offsets in " + p + ": offsets end at 1000000 but /prompts/tokens has 4 tokens");
  // Too few offsets for the tokens is as wrong as too many.
  const std::string q = path("short.h5");
  RawFile(q).attrs().seqs("prompts", {1, 2, 3, 4}, {0, 2}).commit();
  EXPECT_EQ(read_fails(q), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("offsets end at 2 but /prompts/tokens has 4 tokens");
  // No offsets at all (n + 1 must be at least 1).
  const std::string r = path("none.h5");
  RawFile(r).attrs().seqs("prompts", {}, {}).commit();
  EXPECT_EQ(read_fails(r), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/prompts/offsets in " + r + ": no entries");
}

TEST_F(DatasetTest, RejectsTokenOutsideVocabulary) {
  const std::string p = path("oov.h5");
  RawFile(p).attrs().seqs("prompts", {1, 2, 3}, {0, 1, 3}).seqs("answers", {4, 13}, {0, 1, 2}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/answers/tokens in " + p + ": token 13 at position 1 (sequence 1) is outside the vocabulary");
}

TEST_F(DatasetTest, RejectsAnswersOfOtherLength) {
  const std::string p = path("answers.h5");
  RawFile(p).attrs().seqs("prompts", {1, 2, 3}, {0, 1, 3}).seqs("answers", {4}, {0, 1}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/answers in " + p + ": 1 answers but 2 prompts");
  const std::string q = path("half_answers.h5");
  RawFile g(q);
  g.attrs().seqs("prompts", {1, 2, 3}, {0, 1, 3});
  const int32_t t[1] = {4};
  EXPECT_EQ(drl_h5_write_array1d(&g.w.file, "/answers/tokens", DRL_H5_INT32, 1, t), DRL_OK);
  g.commit();
  EXPECT_EQ(read_fails(q), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/answers/offsets in " + q + ": not found");
}

TEST_F(DatasetTest, RejectsMissingAttributes) {
  const char *names[] = {"vocab", "task", "format_version"};
  for (int missing = 0; missing < 3; missing++) {
    const std::string p = path(std::string("no_") + names[missing] + ".h5");
    RawFile(p)
        .attrs(missing == 0 ? nullptr : kVocab, missing == 1 ? nullptr : "add", missing == 2 ? -1 : 1)
        .seqs("prompts", {1}, {0, 1})
        .commit();
    EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
    EXPECT_ERROR_HAS(std::string("attribute '") + names[missing] + "' of / in " + p + ": not found");
  }
}

TEST_F(DatasetTest, RejectsBadVocabAndTask) {
  const std::string p = path("dup.h5");
  RawFile(p).attrs("abca").seqs("prompts", {1}, {0, 1}).commit();
  EXPECT_EQ(read_fails(p), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/ in " + p + ": vocab repeats character 'a' (0x61) at ids 0 and 3");
  const std::string q = path("empty_vocab.h5");
  RawFile(q).attrs("").seqs("prompts", {}, {0}).commit();
  EXPECT_EQ(read_fails(q), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("/ in " + q + ": vocab is empty");
  const std::string r = path("long_task.h5");
  RawFile(r).attrs(kVocab, "a-task-name-longer-than-thirty-one-bytes").seqs("prompts", {}, {0}).commit();
  EXPECT_EQ(read_fails(r), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("attribute 'task' of / in " + r + ": string of 40 bytes exceeds the limit of 31");
  const std::string s = path("wrong_vocab_type.h5");
  RawFile g(s);
  g.attrs(nullptr);
  EXPECT_EQ(drl_h5_write_attr_int64(&g.w.file, "/", "vocab", 5), DRL_OK);
  g.seqs("prompts", {}, {0}).commit();
  EXPECT_EQ(read_fails(s), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("attribute 'vocab' of / in " + s + ": expected string, found int64");
}

TEST_F(DatasetTest, RejectsOtherFormatVersions) {
  const std::string newer = path("v2.h5");
  RawFile(newer).attrs(kVocab, "add", DRL_DATASET_FORMAT_VERSION + 1).seqs("prompts", {1}, {0, 1}).commit();
  EXPECT_EQ(read_fails(newer), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS(newer + ": dataset format_version 2 found, this build reads format_version 1 (written by a newer");
  const std::string older = path("v0.h5");
  RawFile(older).attrs(kVocab, "add", 0).seqs("prompts", {1}, {0, 1}).commit();
  EXPECT_EQ(read_fails(older), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS(older + ": dataset format_version 0 found, this build reads format_version 1");
}

}  // namespace
