// The public C API: a host trainer's calls, their errors, and that training through it moves the policy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

extern "C" {
#include <dynrl.h>

#include "data/dataset.h"
}

namespace {

class Api : public TempDirTest {
 protected:
  drl_engine *make(std::vector<std::string> extra = {}) {
    std::vector<std::string> sets = {"model.d_model=32", "model.n_layers=2", "model.d_ff=64",
                                     "grpo.prompts_per_step=4", "grpo.group_size=4", "d3s.n_init=2",
                                     "d3s.n_final=4", "data.n_train=200", "data.n_eval=8", "data.task=add", "data.size=2",
                                     "grpo.max_new_tokens=4", "run.quiet=true", "run.threads=2",
                                     "run.out_dir=" + path("run")};
    sets.insert(sets.end(), extra.begin(), extra.end());
    std::vector<const char *> argv;
    for (auto &s : sets) argv.push_back(s.c_str());
    drl_engine *e = nullptr;
    EXPECT_EQ(drl_engine_create(nullptr, argv.data(), (int)argv.size(), &e), DRL_OK) << last_error();
    return e;
  }
};

float always_one(const int32_t *, int, const int32_t *, int, void *user) {
  ++*(int *)user;
  return 1.0f;
}

}  // namespace

TEST_F(Api, GenerateTrainSaveLoad) {
  drl_engine *e = make();
  ASSERT_NE(e, nullptr);
  EXPECT_STREQ(drl_engine_vocab(e), "0123456789+=.");
  int32_t ids[16];
  int64_t n = 0;
  ASSERT_EQ(drl_engine_encode(e, "12+3=", ids, 16, &n), DRL_OK);
  ASSERT_EQ(n, 5);
  int64_t offsets[2] = {0, n};
  drl_rollouts r;
  ASSERT_EQ(drl_engine_generate(e, ids, offsets, 1, &r), DRL_OK) << last_error();
  EXPECT_EQ(r.rows, 4);
  EXPECT_EQ(r.prompt_len, 5);
  for (int row = 0; row < r.rows; ++row) {
    EXPECT_GE(r.response_len[row], 1);
    EXPECT_LE(r.response_len[row], 4);
    for (int t = 0; t < 5; ++t) EXPECT_EQ(r.tokens[row * r.length + t], ids[t]);
  }
  std::vector<float> rewards = {1, 0, 0, 1};
  drl_stats s;
  ASSERT_EQ(drl_engine_train(e, rewards.data(), &s), DRL_OK) << last_error();
  EXPECT_EQ(s.iteration, 1);
  EXPECT_EQ(s.reward_mean, 0.5);
  EXPECT_GT(s.optim_steps, 0);
  EXPECT_EQ(drl_engine_train(e, rewards.data(), &s), DRL_ERR_INVALID_ARG) << "rollouts are consumed";
  EXPECT_ERROR_HAS("drl_engine_generate");
  ASSERT_EQ(drl_engine_save(e, path("c.h5").c_str()), DRL_OK) << last_error();
  drl_engine *other = make();
  ASSERT_EQ(drl_engine_load(other, path("c.h5").c_str()), DRL_OK) << last_error();
  drl_stats t;
  ASSERT_EQ(drl_engine_stats(e, &t), DRL_OK);
  EXPECT_EQ(t.iteration, 1);
  drl_engine_destroy(other);
  drl_engine_destroy(e);
}

// An engine writes only where it is asked to: creating and using one leaves no run.out_dir behind.
TEST_F(Api, CreatesNoRunDirectory) {
  drl_engine *e = make();
  ASSERT_NE(e, nullptr);
  drl_stats s;
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK) << last_error();
  drl_engine_destroy(e);
  EXPECT_FALSE(std::filesystem::exists(path("run")));
}

TEST_F(Api, RewardCallbackScoresEveryRollout) {
  drl_engine *e = make();
  int calls = 0;
  ASSERT_EQ(drl_engine_set_reward(e, always_one, &calls), DRL_OK);
  drl_stats s;
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK) << last_error();
  EXPECT_EQ(calls, 16);
  EXPECT_EQ(s.reward_mean, 1.0);
  EXPECT_EQ(s.loss, 0.0) << "equal rewards: zero advantages, zero loss";
  EXPECT_EQ(s.optim_steps, 0) << "and no optimizer step: AdamW's momentum alone would move the weights";
  ASSERT_EQ(drl_engine_set_reward(e, nullptr, nullptr), DRL_OK);
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK);
  EXPECT_EQ(calls, 16) << "the task's verifier took over";
  EXPECT_EQ(s.iteration, 2);
  drl_engine_destroy(e);
}

// A built-in task's rollouts carry their responses as text: the characters of the response tokens.
TEST_F(Api, RolloutsCarryTheirDecodedText) {
  drl_engine *e = make();
  ASSERT_NE(e, nullptr);
  const std::string vocab = drl_engine_vocab(e);
  int32_t ids[8];
  int64_t n = 0;
  ASSERT_EQ(drl_engine_encode(e, "7+5=", ids, 8, &n), DRL_OK);
  int64_t offsets[2] = {0, n};
  drl_rollouts r;
  ASSERT_EQ(drl_engine_generate(e, ids, offsets, 1, &r), DRL_OK) << last_error();
  ASSERT_NE(r.text, nullptr);
  for (int row = 0; row < r.rows; ++row) {
    std::string want;
    for (int t = 0; t < r.response_len[row]; ++t) want += vocab[(size_t)r.tokens[row * r.length + r.prompt_len + t]];
    EXPECT_EQ(std::string(r.text[row]), want) << "row " << row;
  }
  char text[8];
  int64_t len = 0;
  ASSERT_EQ(drl_engine_decode(e, ids, n, 1, text, sizeof text, &len), DRL_OK);
  EXPECT_STREQ(text, "7+5=");
  EXPECT_EQ(len, 4);
  EXPECT_EQ(drl_engine_decode(e, ids, n, 1, text, 4, &len), DRL_ERR_INVALID_ARG) << "no room for the NUL";
  EXPECT_EQ(len, 4);
  EXPECT_EQ(drl_engine_encode_chat(e, nullptr, "7+5=", ids, 8, &n), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("no chat template");
  drl_engine_destroy(e);
}

TEST_F(Api, ErrorsAreStatusesWithMessages) {
  drl_engine *e = nullptr;
  const char *bad[] = {"model.d_modle=3"};
  EXPECT_EQ(drl_engine_create(nullptr, bad, 1, &e), DRL_ERR_CONFIG);
  EXPECT_ERROR_HAS("model.d_modle");
  EXPECT_EQ(e, nullptr);
  EXPECT_EQ(drl_engine_create(path("missing.yaml").c_str(), nullptr, 0, &e), DRL_ERR_IO);
  const char *spsa[] = {"optim.name=spsa"};
  EXPECT_EQ(drl_engine_create(nullptr, spsa, 1, &e), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("dynrl train");
  EXPECT_EQ(e, nullptr);
  const char *flow[] = {"trainer.phases=flow_pretrain,flow_grpo"};
  EXPECT_EQ(drl_engine_create(nullptr, flow, 1, &e), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("flow phases (flow_pretrain)");
  EXPECT_EQ(e, nullptr);
  e = make();
  int32_t ids[4] = {1, 10, 2, 11};
  int64_t offsets[6] = {0, 4, 4, 4, 4, 4};
  drl_rollouts r;
  EXPECT_EQ(drl_engine_generate(e, ids, offsets, 5, &r), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("prompts_per_step");
  EXPECT_EQ(drl_engine_generate(e, nullptr, offsets, 1, &r), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_engine_load(e, path("missing.h5").c_str()), DRL_ERR_IO);
  drl_engine *big = make({"model.d_model=64"});
  ASSERT_EQ(drl_engine_save(big, path("big.h5").c_str()), DRL_OK);
  EXPECT_EQ(drl_engine_load(e, path("big.h5").c_str()), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("tok_emb");
  drl_engine_destroy(big);
  drl_engine_destroy(e);
  drl_engine_destroy(nullptr);
}

// A text prompt set (word problems imported with the tiny Qwen2 fixture's tokenizer and chatml): the text callback
// receives the prompt as the policy saw it, the response decoded without special tokens and the example's answer;
// its rewards are the ones trained on; drl_engine_encode_chat encodes a question as the set's prompts are.
namespace {

struct TextCalls {
  std::vector<std::string> prompts, responses, answers;
  std::vector<float> given;
};

float record_text(const char *prompt, const char *response, const char *answer, void *user) {
  TextCalls *c = static_cast<TextCalls *>(user);
  c->prompts.push_back(prompt);
  c->responses.push_back(response);
  c->answers.push_back(answer);
  c->given.push_back((float)(std::string(response).size() % 3));  // varied rewards: non-zero advantages
  return c->given.back();
}

}  // namespace

TEST_F(Api, TextRewardCallbackSeesDecodedTextAndTrainsOnItsRewards) {
  const std::string fixture = source_dir() + "/tests/fixtures/text";
  CliExit imp = run_dynrl({"data", "import", fixture + "/word_problems.jsonl", "--tokenizer", fixture + "/qwen2",
                           "--template", "chatml", "-o", path("prompts.h5")},
                          "", path("import.log"));
  ASSERT_EQ(imp.code, 0) << imp.log;
  std::vector<std::string> sets = {"trainer.init_from=" + fixture + "/qwen2", "data.path=" + path("prompts.h5"),
                                   "grpo.prompts_per_step=2", "grpo.group_size=4", "d3s.n_init=2", "d3s.n_final=4", "grpo.max_new_tokens=8",
                                   "data.n_train=40", "data.n_eval=4", "model.max_seq=128", "run.quiet=true",
                                   "run.threads=1", "run.out_dir=" + path("run")};
  std::vector<const char *> argv;
  for (auto &x : sets) argv.push_back(x.c_str());
  drl_engine *e = nullptr;
  ASSERT_EQ(drl_engine_create(nullptr, argv.data(), (int)argv.size(), &e), DRL_OK) << last_error();
  EXPECT_STREQ(drl_engine_vocab(e), "") << "a text set has no character vocabulary";
  TextCalls calls;
  ASSERT_EQ(drl_engine_set_text_reward(e, record_text, &calls), DRL_OK);
  drl_stats s;
  ASSERT_EQ(drl_engine_iterate(e, &s), DRL_OK) << last_error();
  ASSERT_EQ(calls.given.size(), 8u);
  double mean = 0.0;
  for (float g : calls.given) mean += g / 8.0;
  EXPECT_NEAR(s.reward_mean, mean, 1e-6) << "trained on the callback's rewards";
  std::ifstream jsonl(fixture + "/word_problems.jsonl");
  std::string all((std::istreambuf_iterator<char>(jsonl)), std::istreambuf_iterator<char>());
  for (size_t i = 0; i < calls.prompts.size(); ++i) {
    const std::string &p = calls.prompts[i];
    EXPECT_EQ(p.rfind("<|im_start|>", 0), 0u) << "the template's special tokens are kept: " << p;
    EXPECT_NE(p.find("How many"), std::string::npos) << p;
    EXPECT_EQ(p.substr(p.size() - 22), "<|im_start|>assistant\n") << p;
    // The answer is the one on the prompt's own line of the JSONL.
    std::string question = p.substr(p.find("user\n") + 5);
    question = question.substr(0, question.find("<|im_end|>"));
    size_t line = all.find("\"prompt\": \"" + question + "\"");
    ASSERT_NE(line, std::string::npos) << question;
    EXPECT_NE(all.find("\"answer\": \"" + calls.answers[i] + "\"}", line), std::string::npos) << calls.answers[i];
    EXPECT_EQ(calls.responses[i].find("<|im_end|>"), std::string::npos) << "special tokens skipped";
  }
  // The question of the set's first line, encoded as the set encodes it: the first prompt of prompts.h5.
  int32_t ids[256];
  int64_t n = 0;
  const std::string q = "Sam has 6 apples and gets 3 more. How many apples now? Answer after ####.";
  ASSERT_EQ(drl_engine_encode_chat(e, nullptr, q.c_str(), ids, 256, &n), DRL_OK) << last_error();
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(path("prompts.h5").c_str(), &ds), DRL_OK);
  ASSERT_EQ(n, ds.prompts.offsets[1]);
  EXPECT_EQ(std::vector<int32_t>(ids, ids + n), std::vector<int32_t>(ds.prompts.tokens, ds.prompts.tokens + n));
  drl_dataset_free(&ds);
  // Generated rollouts decode to the same text the callback would see.
  int64_t offsets[2] = {0, n};
  drl_rollouts r;
  ASSERT_EQ(drl_engine_generate(e, ids, offsets, 1, &r), DRL_OK) << last_error();
  for (int row = 0; row < r.rows; ++row) {
    char text[512];
    int64_t len = 0;
    ASSERT_EQ(drl_engine_decode(e, r.tokens + row * r.length + r.prompt_len, r.response_len[row], 1, text,
                                sizeof text, &len),
              DRL_OK);
    EXPECT_STREQ(r.text[row], text);
  }
  drl_engine_destroy(e);
}
