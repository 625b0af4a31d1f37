// Real text end to end, as a user runs it: a JSONL of arithmetic word problems imported with the tokenizer of a tiny
// Qwen2 policy (tests/fixtures/text, written by transformers: bench/reference/text_fixtures.py), GRPO with D3S from
// that policy rewarded by gsm8k_flexible on the decoded responses, a checkpoint, a resume that reproduces the
// uninterrupted run bit for bit, and an export that imports back to the same weights. A set made with another
// tokenizer is refused, naming both.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

extern "C" {
#include <jansson.h>

#include "data/checkpoint.h"
#include "data/dataset.h"
#include "data/h5.h"
#include "data/text_reward.h"
#include "engine/hf_model.h"
}

namespace {

const std::string kFixture = source_dir() + "/tests/fixtures/text";

class TextTrainTest : public TempDirTest {
 protected:
  std::vector<std::string> sets() const {
    return {"trainer.init_from=" + kFixture + "/qwen2", "data.path=" + path("prompts.h5"), "trainer.phases=[grpo]",
            "grpo.text_reward=gsm8k_flexible,think_format:0.5", "grpo.steps=6", "grpo.prompts_per_step=2",
            "grpo.group_size=8", "grpo.max_new_tokens=16", "data.n_train=40", "data.n_eval=8", "model.max_seq=128",
            "trainer.ckpt_every=3", "trainer.eval_every=0", "run.threads=1"};
  }
  CliExit import(const std::string &model_dir, const std::string &out) {
    return run_dynrl({"data", "import", kFixture + "/word_problems.jsonl", "--tokenizer", model_dir, "--template",
                      "chatml", "-o", out},
                     "", path("import.log"));
  }
  std::vector<float> params(const std::string &h5) {
    drl_checkpoint ck;
    EXPECT_EQ(drl_checkpoint_read(h5.c_str(), nullptr, &ck), DRL_OK) << last_error();
    std::vector<float> p(ck.params, ck.params + ck.layout.total);
    drl_checkpoint_free(&ck);
    return p;
  }
};

}  // namespace

TEST_F(TextTrainTest, ImportTrainResumeAndExport) {
  CliExit e = import(kFixture + "/qwen2", path("prompts.h5"));
  ASSERT_EQ(e.code, 0) << e.log;
  e = run_dynrl(train_args(sets(), path("full")), "", path("full.log"));
  ASSERT_EQ(e.code, 0) << e.log;
  // The same run stopped after 3 iterations and resumed.
  e = run_dynrl(train_args(sets(), path("split"), {"trainer.stop_after=3"}), "", path("split1.log"));
  ASSERT_EQ(e.code, 0) << e.log;
  e = run_dynrl(train_args(sets(), path("split"), {}, true), "", path("split2.log"));
  ASSERT_EQ(e.code, 0) << e.log;
  std::vector<float> full = params(path("full/ckpt.h5")), split = params(path("split/ckpt.h5"));
  ASSERT_EQ(full.size(), split.size());
  EXPECT_EQ(0, std::memcmp(full.data(), split.data(), full.size() * 4)) << "resume reproduces the run bit for bit";
  // It trained: some response earned a reward, and the weights moved from the pretrained ones.
  ASSERT_EQ(drl_hf_import((kFixture + "/qwen2").c_str(), path("start.h5").c_str()), DRL_OK) << last_error();
  std::vector<float> start = params(path("start.h5"));
  ASSERT_EQ(start.size(), full.size());
  EXPECT_NE(0, std::memcmp(start.data(), full.data(), full.size() * 4)) << "GRPO changed the policy";
  // Exported with its tokenizer, and back to the same weights.
  ASSERT_EQ(drl_hf_export(path("full/ckpt.h5").c_str(), path("out").c_str(), "F32", 1 << 30), DRL_OK) << last_error();
  EXPECT_TRUE(std::filesystem::exists(path("out/tokenizer.json")));
  ASSERT_EQ(drl_hf_import(path("out").c_str(), path("back.h5").c_str()), DRL_OK) << last_error();
  EXPECT_EQ(0, std::memcmp(params(path("back.h5")).data(), full.data(), full.size() * 4));
}

TEST_F(TextTrainTest, ASetOfAnotherTokenizerIsRefusedNamingBoth) {
  // The same model directory with another tokenizer (GPT-2's pre-tokenizer over the same vocabulary).
  std::string other = path("other");
  std::filesystem::create_directory(other);
  std::filesystem::copy_file(kFixture + "/qwen2/config.json", other + "/config.json");
  std::filesystem::copy_file(source_dir() + "/tests/fixtures/tokenizer/gpt2/tokenizer.json", other + "/tokenizer.json");
  CliExit e = import(other, path("prompts.h5"));
  ASSERT_EQ(e.code, 0) << e.log;
  e = run_dynrl(train_args(sets(), path("run")), "", path("run.log"));
  EXPECT_EQ(e.code, 1) << e.log;
  EXPECT_NE(e.log.find("was made with the tokenizer"), std::string::npos) << e.log;
  EXPECT_NE(e.log.find(kFixture + "/qwen2/tokenizer.json"), std::string::npos) << e.log;
}

// `dynrl generate --temperature 0` streams what transformers' greedy generate() gives for the same prompt and policy,
// decoded by tokenizers (tests/fixtures/text/greedy.json, written by bench/reference/text_fixtures.py); several
// responses print the same text without streaming.
TEST_F(TextTrainTest, GenerateGreedyMatchesTransformers) {
  json_error_t err;
  json_t *cases = json_load_file((kFixture + "/greedy.json").c_str(), 0, &err);
  ASSERT_NE(cases, nullptr) << err.text;
  ASSERT_EQ(json_array_size(cases), 3u);
  for (size_t i = 0; i < json_array_size(cases); ++i) {
    json_t *c = json_array_get(cases, i);
    std::string prompt = json_string_value(json_object_get(c, "prompt"));
    std::string want = json_string_value(json_object_get(c, "text"));
    SCOPED_TRACE(prompt);
    std::vector<std::string> args = {"generate", kFixture + "/qwen2", "--prompt", prompt, "--temperature", "0",
                                     "--max-new-tokens", "12", "--device", "cpu"};
    CliExit e = run_dynrl(args, "", path("gen.log"));
    ASSERT_EQ(e.code, 0) << e.log;
    EXPECT_EQ(e.log.substr(0, want.size() + 1), want + "\n") << e.log;
    EXPECT_NE(e.log.find("12 new in"), std::string::npos) << e.log;
    args.insert(args.end(), {"--n", "2"});
    e = run_dynrl(args, "", path("gen2.log"));
    ASSERT_EQ(e.code, 0) << e.log;
    EXPECT_EQ(e.log.substr(0, e.log.find("dynrl generate:")),
              "--- response 1 of 2 ---\n" + want + "\n--- response 2 of 2 ---\n" + want + "\n");
  }
  json_decref(cases);
  // Sampling: the seed fixes the draws.
  std::vector<std::string> args = {"generate", kFixture + "/qwen2", "--prompt", "Sam has", "--max-new-tokens", "12",
                                   "--top-p", "0.9", "--template", "chatml", "--seed"};
  auto sample = [&](const char *seed) {
    std::vector<std::string> a = args;
    a.push_back(seed);
    CliExit e = run_dynrl(a, "", path("sample.log"));
    EXPECT_EQ(e.code, 0) << e.log;
    return e.log.substr(0, e.log.find("dynrl generate:"));
  };
  EXPECT_EQ(sample("3"), sample("3"));
  EXPECT_NE(sample("3"), sample("4"));
  CliExit e = run_dynrl({"generate", kFixture + "/qwen2", "--prompt", "x", "--tokenizer", path("none")}, "",
                        path("bad.log"));
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.log.find("no tokenizer at " + path("none") + "/tokenizer.json"), std::string::npos) << e.log;
  e = run_dynrl({"generate", kFixture + "/qwen2", "--prompt", "x", "--template", "vicuna"}, "", path("bad.log"));
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.log.find("known: raw, chatml"), std::string::npos) << e.log;
  e = run_dynrl({"generate", kFixture + "/qwen2", "--prompt", "x", "--temperature", "-1"}, "", path("bad.log"));
  EXPECT_EQ(e.code, 2) << e.log;
}

namespace {

// The /eval arrays of a `dynrl eval` file.
struct EvalFile {
  std::vector<float> reward;
  std::vector<int32_t> length;
  std::vector<uint8_t> correct;
  std::vector<std::string> response;
  double accuracy = -1, mean_reward = -1;
};

EvalFile read_eval(const std::string &file) {
  EvalFile ev;
  drl_h5_file f;
  EXPECT_EQ(drl_h5_open_read(file.c_str(), &f), DRL_OK) << last_error();
  int64_t shape[1];
  auto read = [&](const char *name, drl_h5_type type, auto &v) {
    EXPECT_EQ(drl_h5_array_shape(&f, name, type, 1, shape), DRL_OK) << name;
    v.resize((size_t)shape[0]);
    EXPECT_EQ(drl_h5_read_array_into(&f, name, type, 1, shape, v.data()), DRL_OK) << last_error();
  };
  std::vector<uint8_t> bytes;
  std::vector<int64_t> offsets;
  read("/eval/reward", DRL_H5_FLOAT32, ev.reward);
  read("/eval/length", DRL_H5_INT32, ev.length);
  read("/eval/correct", DRL_H5_UINT8, ev.correct);
  read("/eval/response", DRL_H5_UINT8, bytes);
  read("/eval/response_offsets", DRL_H5_INT64, offsets);
  for (size_t i = 0; i + 1 < offsets.size(); ++i)
    ev.response.emplace_back(bytes.begin() + offsets[i], bytes.begin() + offsets[i + 1]);
  EXPECT_EQ(drl_h5_read_attr_double(&f, "/eval", "accuracy", &ev.accuracy), DRL_OK);
  EXPECT_EQ(drl_h5_read_attr_double(&f, "/eval", "mean_reward", &ev.mean_reward), DRL_OK);
  drl_h5_close(&f);
  return ev;
}

}  // namespace

// `dynrl eval` on a text set: every response kept with a reward that the reward spec gives its text, the accuracy and
// mean reward of the rows, each response the greedy one `dynrl generate` gives for that question; a set of another
// tokenizer is refused naming both.
TEST_F(TextTrainTest, EvalScoresAndKeepsEveryResponse) {
  ASSERT_EQ(import(kFixture + "/qwen2", path("prompts.h5")).code, 0);
  CliExit e = run_dynrl({"eval", kFixture + "/qwen2", "--data", path("prompts.h5"), "--reward",
                         "gsm8k_flexible,think_format:0.5", "--max-new-tokens", "16", "--n", "20", "--batch", "6",
                         "-o", path("out/eval.h5"), "--device", "cpu"},
                        "", path("eval.log"));
  ASSERT_EQ(e.code, 0) << e.log;
  EXPECT_NE(e.log.find("20/20"), std::string::npos) << "the progress reaches the end: " << e.log;
  EvalFile ev = read_eval(path("out/eval.h5"));
  ASSERT_EQ(ev.reward.size(), 20u);
  drl_dataset ds;
  ASSERT_EQ(drl_dataset_read(path("prompts.h5").c_str(), &ds), DRL_OK);
  drl_text_reward_spec spec;
  ASSERT_EQ(drl_text_reward_parse("gsm8k_flexible,think_format:0.5", &spec), DRL_OK);
  double sum = 0, correct = 0;
  for (size_t i = 0; i < 20; ++i) {
    const std::string answer(ds.answer_text + ds.answer_text_offsets[i],
                             ds.answer_text + ds.answer_text_offsets[i + 1]);
    double r = 0, first = 0;
    ASSERT_EQ(drl_text_reward_eval(&spec, ev.response[i].data(), ev.response[i].size(), answer.data(), answer.size(),
                                   &r), DRL_OK);
    ASSERT_EQ(drl_text_reward_score(DRL_REWARD_GSM8K_FLEXIBLE, ev.response[i].data(), ev.response[i].size(),
                                    answer.data(), answer.size(), &first), DRL_OK);
    EXPECT_EQ(ev.reward[i], (float)r) << i;
    EXPECT_EQ(ev.correct[i], first >= 1.0 ? 1 : 0) << i;
    EXPECT_GE(ev.length[i], 1);
    EXPECT_LE(ev.length[i], 16);
    sum += ev.reward[i];
    correct += ev.correct[i];
  }
  drl_dataset_free(&ds);
  EXPECT_NEAR(ev.mean_reward, sum / 20, 1e-6);
  EXPECT_NEAR(ev.accuracy, correct / 20, 1e-12);
  // Response 4 (the batch of 6 left-pads it) is what generate gives for its question alone.
  std::ifstream jsonl(kFixture + "/word_problems.jsonl");
  std::string line;
  for (int i = 0; i <= 4; ++i) std::getline(jsonl, line);
  json_error_t err;
  json_t *obj = json_loads(line.c_str(), 0, &err);
  ASSERT_NE(obj, nullptr);
  std::string question = json_string_value(json_object_get(obj, "prompt"));
  json_decref(obj);
  e = run_dynrl({"generate", kFixture + "/qwen2", "--prompt", question, "--template", "chatml", "--temperature", "0",
                 "--max-new-tokens", "16", "--device", "cpu"},
                "", path("gen.log"));
  ASSERT_EQ(e.code, 0) << e.log;
  EXPECT_EQ(e.log.substr(0, ev.response[4].size() + 1), ev.response[4] + "\n") << e.log;
  // A set of another tokenizer.
  std::string other = path("other");
  std::filesystem::create_directory(other);
  std::filesystem::copy_file(kFixture + "/qwen2/config.json", other + "/config.json");
  std::filesystem::copy_file(source_dir() + "/tests/fixtures/tokenizer/gpt2/tokenizer.json", other + "/tokenizer.json");
  ASSERT_EQ(import(other, path("other.h5")).code, 0);
  e = run_dynrl({"eval", kFixture + "/qwen2", "--data", path("other.h5")}, "", path("bad.log"));
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.log.find("was made with the tokenizer"), std::string::npos) << e.log;
  e = run_dynrl({"eval", kFixture + "/qwen2", "--data", path("prompts.h5"), "--reward", "gsm9k"}, "", path("bad.log"));
  EXPECT_EQ(e.code, 2) << "a bad reward spec is caught before the policy loads: " << e.log;
  EXPECT_NE(e.log.find("unknown reward \"gsm9k\""), std::string::npos) << e.log;
}
