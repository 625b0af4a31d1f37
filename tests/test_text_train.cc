// Real text end to end, as a user runs it: a JSONL of arithmetic word problems imported with the tokenizer of a tiny
// Qwen2 policy (tests/fixtures/text, written by transformers: bench/reference/text_fixtures.py), GRPO with D3S from
// that policy rewarded by gsm8k_flexible on the decoded responses, a checkpoint, a resume that reproduces the
// uninterrupted run bit for bit, and an export that imports back to the same weights. A set made with another
// tokenizer is refused, naming both.
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
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
