// The tokenizer fixtures of bench/reference/tokenizer_fixtures.py: the corpus, HF's ids, the tokenizer.json files.
#pragma once
#include <jansson.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/bpe.h"
#include "data/h5.h"
}

inline std::string tok_fixture_dir() { return source_dir() + "/tests/fixtures/tokenizer/"; }

inline std::string read_text_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// corpus.jsonl: one JSON string per line.
inline std::vector<std::string> tok_corpus() {
  std::vector<std::string> out;
  std::ifstream f(tok_fixture_dir() + "corpus.jsonl", std::ios::binary);
  std::string line;
  while (std::getline(f, line)) {
    json_error_t err;
    json_t *v = json_loadb(line.data(), line.size(), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    EXPECT_TRUE(json_is_string(v)) << "corpus line " << out.size() + 1 << ": " << err.text;
    if (json_is_string(v)) out.emplace_back(json_string_value(v), json_string_length(v));
    json_decref(v);
  }
  return out;
}

// HF's ids of every corpus line: ids[offsets[i] .. offsets[i + 1]).
struct TokExpected {
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets;
  explicit TokExpected(const std::string &name) {
    drl_h5_file f{};
    std::string path = tok_fixture_dir() + "expected_" + name + ".h5";
    EXPECT_EQ(drl_h5_open_read(path.c_str(), &f), DRL_OK) << last_error();
    int64_t n = 0;
    void *data = nullptr;
    EXPECT_EQ(drl_h5_read_array(&f, "ids", DRL_H5_INT32, 1, &n, (int64_t)1 << 24, &data), DRL_OK) << last_error();
    if (data) ids.assign((int32_t *)data, (int32_t *)data + n);
    free(data);
    data = nullptr;
    EXPECT_EQ(drl_h5_read_array(&f, "offsets", DRL_H5_INT64, 1, &n, (int64_t)1 << 24, &data), DRL_OK)
        << last_error();
    if (data) offsets.assign((int64_t *)data, (int64_t *)data + n);
    free(data);
    drl_h5_close(&f);
  }
  std::vector<int32_t> line(size_t i) const {
    return std::vector<int32_t>(ids.begin() + offsets[i], ids.begin() + offsets[i + 1]);
  }
};

// A tokenizer loaded from a file or from JSON text, freed at scope end.
struct Tok {
  drl_tokenizer t{};
  drl_status st = DRL_ERR_INTERNAL;
  explicit Tok(const std::string &path) { st = drl_bpe_load(path.c_str(), &t); }
  Tok(const std::string &name, const std::string &json) {
    st = drl_bpe_load_json(name.c_str(), json.data(), json.size(), &t);
  }
  ~Tok() { drl_tokenizer_free(&t); }
  std::vector<int32_t> encode(const std::string &s, int add_special = 1) {
    drl_ids ids{};
    drl_status e = drl_tokenizer_encode(&t, s.data(), (int64_t)s.size(), add_special, &ids);
    EXPECT_EQ(e, DRL_OK) << last_error();
    std::vector<int32_t> out(ids.v, ids.v + ids.n);
    drl_ids_free(&ids);
    return out;
  }
  std::string decode(const std::vector<int32_t> &ids, int skip_special = 0) {
    drl_text text{};
    drl_status e = drl_tokenizer_decode(&t, ids.data(), (int64_t)ids.size(), skip_special, &text);
    EXPECT_EQ(e, DRL_OK) << last_error();
    std::string out(text.s ? text.s : "", (size_t)text.n);
    drl_text_free(&text);
    return out;
  }
};
