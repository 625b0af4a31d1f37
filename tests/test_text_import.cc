// `dynrl data import` (engine/text_import.h): a JSONL prompt set encoded with a model directory's tokenizer into a
// text prompt set (task text), read back field by field; prompts too long, a template that does not fit the line and
// a directory without a tokenizer, each named, with nothing written.
#include <fstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

extern "C" {
#include "data/bpe.h"
#include "data/checkpoint.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "engine/text_import.h"
}

namespace {

std::string slurp(const std::string &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A model directory: the tiny Qwen2 fixture's config.json (EOS id 2) and the Qwen-style fixture tokenizer.
class TextImportTest : public TempDirTest {
 protected:
  std::string model_;
  void SetUp() override {
    TempDirTest::SetUp();
    model_ = path("model");
    std::filesystem::create_directory(model_);
    std::filesystem::copy_file(source_dir() + "/tests/fixtures/hf/qwen2/config.json", model_ + "/config.json");
    std::filesystem::copy_file(source_dir() + "/tests/fixtures/tokenizer/qwen/tokenizer.json",
                               model_ + "/tokenizer.json");
  }
  std::string jsonl(const std::string &name, const std::string &text) {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
  std::vector<int32_t> encode(const std::string &text) {
    drl_tokenizer tok;
    EXPECT_EQ(drl_bpe_load((model_ + "/tokenizer.json").c_str(), &tok), DRL_OK) << last_error();
    drl_ids ids = {};
    EXPECT_EQ(drl_tokenizer_encode(&tok, text.data(), (int64_t)text.size(), 0, &ids), DRL_OK);
    std::vector<int32_t> out(ids.v, ids.v + ids.n);
    drl_ids_free(&ids);
    drl_tokenizer_free(&tok);
    return out;
  }
};

std::vector<int32_t> seq(const drl_token_seqs &s, int64_t i) {
  return std::vector<int32_t>(s.tokens + s.offsets[i], s.tokens + s.offsets[i + 1]);
}

}  // namespace

TEST_F(TextImportTest, WritesTheIdsTheAnswersAndTheirIdentity) {
  std::string in = jsonl("p.jsonl",
                         "{\"prompt\": \"What is 2 + 3? \\u00e9\\ud83d\\ude00\", \"answer\": \"5\"}\n"
                         "{\"prompt_ids\": [1, 40, 41], \"answer\": \"#### 7\"}\n");
  drl_text_import_options o = {"raw", 0, 0};
  drl_text_import_stats s;
  ASSERT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("p.h5").c_str(), &s), DRL_OK) << last_error();
  EXPECT_EQ(s.written, 2);
  EXPECT_EQ(s.dropped, 0);
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(path("p.h5").c_str(), &ds), DRL_OK) << last_error();
  EXPECT_TRUE(drl_dataset_is_text(&ds));
  EXPECT_STREQ(ds.vocab, "");
  EXPECT_EQ(ds.vocab_size, 514);
  EXPECT_STREQ(ds.template_name, "raw");
  std::string tj = slurp(model_ + "/tokenizer.json");
  char hash[17];
  drl_fnv1a64_hex(tj.data(), tj.size(), hash);
  EXPECT_STREQ(ds.tokenizer_hash, hash);
  ASSERT_EQ(ds.prompts.n, 2);
  EXPECT_EQ(seq(ds.prompts, 0), encode("What is 2 + 3? \xc3\xa9\xf0\x9f\x98\x80"));
  EXPECT_EQ(seq(ds.prompts, 1), (std::vector<int32_t>{1, 40, 41}));
  std::vector<int32_t> a1 = encode("#### 7");
  a1.push_back(2);  // the model's EOS ends each answer's tokens
  EXPECT_EQ(seq(ds.answers, 1), a1);
  EXPECT_EQ(std::string(ds.answer_text + ds.answer_text_offsets[0], ds.answer_text + ds.answer_text_offsets[1]), "5");
  EXPECT_EQ(std::string(ds.answer_text + ds.answer_text_offsets[1], ds.answer_text + ds.answer_text_offsets[2]),
            "#### 7");
  drl_dataset_free(&ds);
}

TEST_F(TextImportTest, LongPromptsAreAnErrorOrDroppedAndCounted) {
  std::string in = jsonl("p.jsonl", "{\"prompt\": \"hi\", \"answer\": \"1\"}\n\n"
                                    "{\"prompt\": \"a much longer prompt than the others here\", \"answer\": \"2\"}\n");
  drl_text_import_options o = {"raw", 4, 0};
  drl_text_import_stats s;
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("p.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("p.jsonl:3: the prompt has");
  EXPECT_FALSE(std::filesystem::exists(path("p.h5")));
  o.drop_long = 1;
  ASSERT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("p.h5").c_str(), &s), DRL_OK) << last_error();
  EXPECT_EQ(s.written, 1);
  EXPECT_EQ(s.dropped, 1);
  o.max_prompt = 1;
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("q.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("every prompt was dropped");
}

TEST_F(TextImportTest, BadInputIsNamedAndWritesNothing) {
  drl_text_import_options o = {"raw", 0, 0};
  drl_text_import_stats s;
  std::string in = jsonl("m.jsonl", "{\"prompt\": \"hi\", \"answer\": \"1\"}\n"
                                    "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                                    "\"assistant\", \"content\": \"a\"}], \"answer\": \"1\"}\n");
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("o.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("m.jsonl:2: ");
  EXPECT_ERROR_HAS("chat template raw: expected exactly one user message");
  drl_text_import_options unknown = {"vicuna", 0, 0};
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &unknown, path("o.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("raw, chatml, qwen2, qwen2.5, qwen3, qwen3:nothink, llama3");
  drl_text_import_options llama = {"llama3", 0, 0};  // the Qwen-style tokenizer lacks llama3's header tokens
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &llama, path("o.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("m.jsonl:1");
  in = jsonl("i.jsonl", "{\"prompt_ids\": [1, 999], \"answer\": \"1\"}\n");
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("o.h5").c_str(), &s), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("i.jsonl:1: prompt id 999 outside the tokenizer's [0, 514)");
  std::filesystem::remove(model_ + "/tokenizer.json");
  in = jsonl("p.jsonl", "{\"prompt\": \"hi\", \"answer\": \"1\"}\n");
  EXPECT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("o.h5").c_str(), &s), DRL_ERR_IO);
  EXPECT_ERROR_HAS("tokenizer.json: cannot open");
  EXPECT_FALSE(std::filesystem::exists(path("o.h5")));
}

// A text set needs a pretrained policy whose tokenizer made it: without one it is refused by name.
TEST_F(TextImportTest, TrainingOnATextSetNeedsAPretrainedPolicy) {
  std::string in = jsonl("p.jsonl", "{\"prompt\": \"hi\", \"answer\": \"1\"}\n");
  drl_text_import_options o = {"raw", 0, 0};
  drl_text_import_stats s;
  ASSERT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("p.h5").c_str(), &s), DRL_OK) << last_error();
  CliExit e = run_dynrl(train_args({"data.path=" + path("p.h5")}, path("run")), "", path("log.txt"));
  EXPECT_EQ(e.code, 1) << e.log;
  EXPECT_NE(e.log.find("is a text prompt set: it needs a pretrained policy"), std::string::npos) << e.log;
}

// A chat template renders each prompt (and its system prompt) before it is encoded: the ids are the template's.
TEST_F(TextImportTest, ChatTemplatesRenderThePrompts) {
  std::string in = jsonl("c.jsonl", "{\"prompt\": \"What is 2 + 3?\", \"answer\": \"5\"}\n"
                                    "{\"prompt\": \"Hi\", \"system\": \"Be brief.\", \"answer\": \"1\"}\n");
  drl_text_import_options o = {"qwen2.5", 0, 0};
  drl_text_import_stats s;
  ASSERT_EQ(drl_text_import(in.c_str(), model_.c_str(), &o, path("c.h5").c_str(), &s), DRL_OK) << last_error();
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(path("c.h5").c_str(), &ds), DRL_OK) << last_error();
  EXPECT_STREQ(ds.template_name, "qwen2.5");
  EXPECT_EQ(seq(ds.prompts, 0),
            encode("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_EQ(seq(ds.prompts, 1),
            encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
  drl_dataset_free(&ds);
}
