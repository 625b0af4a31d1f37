// Hugging Face directories in and out (engine/hf_model.h): names and shapes of the export, export -> import bit for
// bit (fp32) and at bf16 rounding, and `dynrl import` on broken directories: exit 1, a message naming the file, the
// tensor and what was expected, and nothing written.
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cli_run.h"
#include "test_util.h"

extern "C" {
#include "data/checkpoint.h"
#include "data/safetensors.h"
#include "engine/hf_model.h"
#include "kernels/float16.h"
}

namespace {

// A tiny untied Llama with GQA.
drl_hf_config tiny_llama() {
  drl_transformer_config m = {};
  m.vocab = 37;
  m.d_model = 16;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.d_ff = 24;
  m.max_seq = 32;
  m.tied_embeddings = 0;
  m.rope_theta = 10000.0f;
  m.init_std = 0.02f;
  m.norm_eps = 1e-5f;
  drl_hf_config c;
  drl_hf_config_from_model(&m, &c);
  c.bos_token_id = 1;
  c.n_eos = 2;
  c.eos_token_ids[0] = 2;
  c.eos_token_ids[1] = 3;
  return c;
}

class HfModelTest : public TempDirTest {
 protected:
  drl_hf_config cfg_ = tiny_llama();
  drl_layout lay_{};
  std::vector<float> params_;

  void SetUp() override {
    TempDirTest::SetUp();
    ASSERT_EQ(drl_transformer_layout(&cfg_.model, &lay_), DRL_OK) << last_error();
    params_ = random_normal((size_t)lay_.total, 0.5f, 3);
  }
  void TearDown() override {
    drl_layout_free(&lay_);
    TempDirTest::TearDown();
  }
  // An HF directory of the model at path(name).
  std::string write_dir(const std::string &name, const char *dtype = "F32") {
    std::string d = path(name);
    EXPECT_EQ(drl_hf_write(d.c_str(), &cfg_, &lay_, params_.data(), dtype, 1 << 30, nullptr), DRL_OK) << last_error();
    return d;
  }
  // A policy checkpoint of the model, as `dynrl import` would write it.
  std::string write_policy(const std::string &name) {
    std::string d = write_dir(name + "_src");
    std::string out = path(name + ".h5");
    EXPECT_EQ(drl_hf_import(d.c_str(), out.c_str()), DRL_OK) << last_error();
    return out;
  }
};

std::vector<float> read_params(const std::string &h5) {
  drl_checkpoint ck;
  EXPECT_EQ(drl_checkpoint_read(h5.c_str(), nullptr, &ck), DRL_OK) << last_error();
  std::vector<float> p(ck.params, ck.params + ck.layout.total);
  drl_checkpoint_free(&ck);
  return p;
}

std::string slurp(const std::string &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_F(HfModelTest, ExportedNamesAndShapesAreTransformers) {
  std::string d = write_dir("hf");
  drl_safetensors st;
  ASSERT_EQ(drl_st_open(&st, d.c_str()), DRL_OK) << last_error();
  // 1 embedding + 9 per block + final norm + lm_head.
  EXPECT_EQ(st.count, 1 + 2 * 9 + 2);
  struct Want {
    const char *name;
    int ndim;
    int64_t a, b;
  } want[] = {{"model.embed_tokens.weight", 2, 37, 16},
              {"model.layers.0.input_layernorm.weight", 1, 16, 0},
              {"model.layers.0.self_attn.q_proj.weight", 2, 16, 16},
              {"model.layers.0.self_attn.k_proj.weight", 2, 8, 16},
              {"model.layers.1.self_attn.v_proj.weight", 2, 8, 16},
              {"model.layers.1.self_attn.o_proj.weight", 2, 16, 16},
              {"model.layers.1.post_attention_layernorm.weight", 1, 16, 0},
              {"model.layers.1.mlp.gate_proj.weight", 2, 24, 16},
              {"model.layers.1.mlp.up_proj.weight", 2, 24, 16},
              {"model.layers.1.mlp.down_proj.weight", 2, 16, 24},
              {"model.norm.weight", 1, 16, 0},
              {"lm_head.weight", 2, 37, 16}};
  for (const Want &w : want) {
    const drl_st_tensor *t = drl_st_find(&st, w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->ndim, w.ndim) << w.name;
    EXPECT_EQ(t->shape[0], w.a) << w.name;
    if (w.ndim == 2) {
      EXPECT_EQ(t->shape[1], w.b) << w.name;
    }
    EXPECT_STREQ(t->dtype, "F32");
  }
  drl_st_close(&st);
  std::string config = slurp(d + "/config.json"), gen = slurp(d + "/generation_config.json");
  EXPECT_NE(config.find("\"LlamaForCausalLM\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"torch_dtype\": \"float32\""), std::string::npos) << config;
  EXPECT_NE(gen.find("\"eos_token_id\": [\n    2,\n    3\n  ]"), std::string::npos) << gen;
}

TEST_F(HfModelTest, TiedPoliciesOmitTheLmHead) {
  cfg_.model.tied_embeddings = 1;
  drl_layout_free(&lay_);
  ASSERT_EQ(drl_transformer_layout(&cfg_.model, &lay_), DRL_OK);
  params_.resize((size_t)lay_.total);
  std::string d = write_dir("tied");
  drl_safetensors st;
  ASSERT_EQ(drl_st_open(&st, d.c_str()), DRL_OK) << last_error();
  EXPECT_EQ(drl_st_find(&st, "lm_head.weight"), nullptr);
  drl_st_close(&st);
}

TEST_F(HfModelTest, ExportThenImportIsBitIdentical) {
  std::string policy = write_policy("p");
  EXPECT_EQ(0, std::memcmp(read_params(policy).data(), params_.data(), params_.size() * 4)) << "import";
  // export of the imported policy, fp32: the same bits again; bf16: each parameter rounded to nearest even.
  std::string f32 = path("out32"), bf16 = path("out16");
  ASSERT_EQ(drl_hf_export(policy.c_str(), f32.c_str(), "F32", 1 << 30), DRL_OK) << last_error();
  ASSERT_EQ(drl_hf_export(policy.c_str(), bf16.c_str(), "BF16", 1 << 30), DRL_OK) << last_error();
  ASSERT_EQ(drl_hf_import(f32.c_str(), path("again.h5").c_str()), DRL_OK) << last_error();
  ASSERT_EQ(drl_hf_import(bf16.c_str(), path("half.h5").c_str()), DRL_OK) << last_error();
  EXPECT_EQ(0, std::memcmp(read_params(path("again.h5")).data(), params_.data(), params_.size() * 4));
  std::vector<float> half = read_params(path("half.h5"));
  for (size_t i = 0; i < params_.size(); ++i)
    ASSERT_EQ(bits(half[i]), (uint32_t)drl_f32_to_bf16(params_[i]) << 16) << i;
  EXPECT_NE(slurp(bf16 + "/config.json").find("\"torch_dtype\": \"bfloat16\""), std::string::npos);
  // The policy remembers where it came from.
  drl_checkpoint ck;
  ASSERT_EQ(drl_checkpoint_read(policy.c_str(), nullptr, &ck), DRL_OK);
  ASSERT_NE(ck.hf_config, nullptr);
  EXPECT_STREQ(ck.hf_model_type, "llama");
  EXPECT_NE(std::string(ck.hf_source).find("p_src"), std::string::npos) << ck.hf_source;
  char hash[17];
  std::string text = slurp(path("p_src") + "/config.json");
  drl_fnv1a64_hex(text.data(), text.size(), hash);
  EXPECT_STREQ(ck.hf_config_hash, hash);
  drl_checkpoint_free(&ck);
}

TEST_F(HfModelTest, ShardedExportReadsBack) {
  std::string policy = write_policy("p");
  std::string d = path("sharded");
  ASSERT_EQ(drl_hf_export(policy.c_str(), d.c_str(), "F32", 4096), DRL_OK) << last_error();
  EXPECT_TRUE(std::filesystem::exists(d + "/model.safetensors.index.json"));
  ASSERT_EQ(drl_hf_import(d.c_str(), path("back.h5").c_str()), DRL_OK) << last_error();
  EXPECT_EQ(0, std::memcmp(read_params(path("back.h5")).data(), params_.data(), params_.size() * 4));
}

// Each broken directory: `dynrl import` exits 1 naming the file, the tensor and what was expected, writing nothing.
TEST_F(HfModelTest, BrokenDirectoriesAreNamedAndWriteNothing) {
  struct Case {
    const char *what;
    std::function<void(const std::string &dir)> breakit;
    std::vector<std::string> want;
  };
  auto rewrite_without = [&](const std::string &dir, const std::string &drop) {
    std::vector<drl_st_source> ts;
    std::vector<std::string> names(lay_.count);
    for (int i = 0; i < lay_.count; ++i) {
      char hf[128];
      ASSERT_EQ(drl_hf_tensor_name(lay_.tensors[i].name, hf, sizeof hf), DRL_OK);
      names[i] = hf;
      if (names[i] == drop) continue;
      const drl_tensor_info &t = lay_.tensors[i];
      drl_st_source s = {names[i].c_str(), params_.data() + t.offset, t.shape[1] == 1 ? 1 : 2, {t.shape[0], t.shape[1]}};
      ts.push_back(s);
    }
    ASSERT_EQ(drl_st_write((dir + "/model.safetensors").c_str(), ts.data(), (int)ts.size(), "F32"), DRL_OK);
  };
  auto patch = [](const std::string &file, const std::string &from, const std::string &to) {
    std::string bytes = slurp(file);
    size_t at = bytes.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    ASSERT_EQ(from.size(), to.size()) << "a patch keeps every offset";
    bytes.replace(at, from.size(), to);
    std::ofstream(file, std::ios::binary) << bytes;
  };
  std::vector<Case> cases = {
      {"truncated",
       [&](const std::string &d) { std::filesystem::resize_file(d + "/model.safetensors", slurp(d + "/model.safetensors").size() - 5); },
       {"model.safetensors", "the file holds"}},
      {"lying offsets",
       [&](const std::string &d) {
         drl_safetensors st;
         ASSERT_EQ(drl_st_open(&st, d.c_str()), DRL_OK);
         const drl_st_tensor *t = drl_st_find(&st, "model.norm.weight");
         std::string from = "[" + std::to_string(t->begin) + "," + std::to_string(t->end) + "]";
         std::string to = "[" + std::to_string(t->begin) + "," + std::to_string(t->end - 4) + "]";
         if (to.size() < from.size()) to.insert(1, from.size() - to.size(), '0');
         drl_st_close(&st);
         patch(d + "/model.safetensors", from, to);
       },
       {"model.safetensors", "tensor \"model.norm.weight\""}},
      {"missing tensor", [&](const std::string &d) { rewrite_without(d, "model.layers.1.mlp.up_proj.weight"); },
       {"tensor \"model.layers.1.mlp.up_proj.weight\" is missing", "[24, 16]"}},
      {"shape disagrees",
       [&](const std::string &d) { patch(d + "/config.json", "\"intermediate_size\": 24", "\"intermediate_size\": 20"); },
       {"tensor \"model.layers.0.mlp.gate_proj.weight\"", "has shape [24, 16], config.json gives [20, 16]"}},
      {"F8 dtype",
       [&](const std::string &d) {
         // Rebuilt by hand: the final norm's 64 bytes as 64 F8_E4M3 values, every other tensor as it was.
         std::string header = "{", data;
         for (int i = 0; i < lay_.count; ++i) {
           const drl_tensor_info &t = lay_.tensors[i];
           char hf[128];
           ASSERT_EQ(drl_hf_tensor_name(t.name, hf, sizeof hf), DRL_OK);
           bool f8 = std::string(hf) == "model.norm.weight";
           int64_t n = t.shape[0] * t.shape[1];
           std::string shape = t.shape[1] == 1 ? std::to_string(f8 ? 4 * n : n)
                                               : std::to_string(t.shape[0]) + "," + std::to_string(t.shape[1]);
           header += std::string(i ? "," : "") + "\"" + hf + "\":{\"dtype\":\"" + (f8 ? "F8_E4M3" : "F32") +
                     "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                     std::to_string(data.size() + 4 * n) + "]}";
           data.append(reinterpret_cast<const char *>(params_.data() + t.offset), (size_t)(4 * n));
         }
         header += "}";
         uint64_t len = header.size();
         std::ofstream(d + "/model.safetensors", std::ios::binary)
             << std::string(reinterpret_cast<const char *>(&len), 8) << header << data;
       },
       {"tensor \"model.norm.weight\"", "has dtype F8_E4M3"}},
      {"config not JSON", [&](const std::string &d) { std::ofstream(d + "/config.json") << "{\"model_type\": llama"; },
       {"config.json: not valid JSON"}},
  };
  for (const Case &c : cases) {
    std::string d = write_dir(std::string("broken_") + std::to_string(&c - cases.data()));
    c.breakit(d);
    std::string out = path("out.h5");
    CliExit e = run_dynrl({"import", d, "-o", out}, "", path("log.txt"));
    EXPECT_EQ(e.code, 1) << c.what << "\n" << e.log;
    for (const std::string &w : c.want) EXPECT_NE(e.log.find(w), std::string::npos) << c.what << ": " << w << "\n" << e.log;
    EXPECT_NE(e.log.find(d), std::string::npos) << c.what << ": the directory is named\n" << e.log;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.what;
    std::filesystem::remove(out);
    for (const auto &f : std::filesystem::directory_iterator(dir_))
      EXPECT_EQ(f.path().filename().string().find(".tmp."), std::string::npos) << c.what << ": " << f.path();
  }
}

// trainer.init_from takes the directory or the policy file `dynrl import` made of it: the same run either way, and
// its checkpoint remembers the source.
TEST_F(HfModelTest, TrainingStartsFromTheDirectoryOrItsPolicyFile) {
  cfg_.model.vocab = 13;  // the add task's characters
  drl_layout_free(&lay_);
  ASSERT_EQ(drl_transformer_layout(&cfg_.model, &lay_), DRL_OK);
  params_ = random_normal((size_t)lay_.total, 0.5f, 4);
  std::string src = write_dir("pretrained");
  ASSERT_EQ(drl_hf_import(src.c_str(), path("policy.h5").c_str()), DRL_OK) << last_error();
  std::vector<std::string> sets = {"sft.steps=2",         "sft.batch_size=4",  "grpo.steps=1", "grpo.prompts_per_step=2",
                                   "grpo.group_size=8",   "data.n_train=64",   "data.n_eval=8", "trainer.eval_every=0",
                                   "run.threads=1"};
  for (const char *from : {"dir", "file"}) {
    std::string init = std::string(from) == "dir" ? src : path("policy.h5");
    CliExit e = run_dynrl(train_args(sets, path(std::string("run_") + from), {"trainer.init_from=" + init}), "",
                          path("log.txt"));
    ASSERT_EQ(e.code, 0) << e.log;
  }
  drl_checkpoint a, b;
  ASSERT_EQ(drl_checkpoint_read(path("run_dir/ckpt.h5").c_str(), nullptr, &a), DRL_OK) << last_error();
  ASSERT_EQ(drl_checkpoint_read(path("run_file/ckpt.h5").c_str(), nullptr, &b), DRL_OK) << last_error();
  ASSERT_EQ(a.layout.total, lay_.total);
  EXPECT_EQ(0, std::memcmp(a.params, b.params, (size_t)a.layout.total * 4)) << "the same run from either source";
  EXPECT_NE(0, std::memcmp(a.params, params_.data(), params_.size() * 4)) << "the run trained the policy";
  ASSERT_NE(a.hf_config, nullptr);
  EXPECT_STREQ(a.hf_config_hash, b.hf_config_hash);
  EXPECT_STREQ(a.hf_model_type, "llama");
  drl_checkpoint_free(&a);
  drl_checkpoint_free(&b);
}

// The provenance group: read on its own without the parameters, and a config.json that does not hash to the recorded
// value is refused.
TEST_F(HfModelTest, ProvenanceReadsAloneAndItsHashIsChecked) {
  drl_checkpoint ck;
  std::memset(&ck, 0, sizeof ck);
  ck.layout = lay_;
  ck.params = params_.data();
  std::string text = "{\"model_type\": \"llama\"}";
  ck.hf_config = &text[0];
  std::snprintf(ck.hf_model_type, sizeof ck.hf_model_type, "llama");
  std::snprintf(ck.hf_source, sizeof ck.hf_source, "somewhere");
  drl_fnv1a64_hex(text.data(), text.size(), ck.hf_config_hash);
  ASSERT_EQ(drl_checkpoint_write(path("ok.h5").c_str(), &ck), DRL_OK) << last_error();
  std::snprintf(ck.hf_config_hash, sizeof ck.hf_config_hash, "0123456789abcdef");
  ASSERT_EQ(drl_checkpoint_write(path("bad.h5").c_str(), &ck), DRL_OK) << last_error();
  drl_checkpoint got;
  ASSERT_EQ(drl_checkpoint_read_provenance(path("ok.h5").c_str(), &got), DRL_OK) << last_error();
  EXPECT_EQ(got.params, nullptr) << "the parameters are not read";
  ASSERT_NE(got.hf_config, nullptr);
  EXPECT_EQ(std::string(got.hf_config), text);
  EXPECT_STREQ(got.hf_source, "somewhere");
  drl_checkpoint_free(&got);
  EXPECT_EQ(drl_checkpoint_read_provenance(path("bad.h5").c_str(), &got), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("its config_hash attribute says 0123456789abcdef");
  EXPECT_EQ(drl_checkpoint_read(path("bad.h5").c_str(), nullptr, &got), DRL_ERR_FORMAT);
}

// generation_config.json's EOS ids join config.json's (generation stops on any); a broken one is named.
TEST_F(HfModelTest, GenerationConfigEosIdsJoin) {
  std::string d = write_dir("gen");
  std::ofstream(d + "/generation_config.json") << "{\"eos_token_id\": [2, 5], \"bos_token_id\": 1}";
  drl_hf_source src;
  int found = 0;
  ASSERT_EQ(drl_hf_source_open(d.c_str(), &src, &found), DRL_OK) << last_error();
  ASSERT_EQ(src.cfg.n_eos, 3);
  EXPECT_EQ(src.cfg.eos_token_ids[0], 2);
  EXPECT_EQ(src.cfg.eos_token_ids[1], 3);
  EXPECT_EQ(src.cfg.eos_token_ids[2], 5);
  drl_hf_source_free(&src);
  std::ofstream(d + "/generation_config.json") << "{\"eos_token_id\": [2, 500]}";
  EXPECT_EQ(drl_hf_source_open(d.c_str(), &src, &found), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("generation_config.json: eos_token_id must be ids in [0, 37)");
  std::ofstream(d + "/generation_config.json") << "{\"eos_token_id\": ";
  EXPECT_EQ(drl_hf_source_open(d.c_str(), &src, &found), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("generation_config.json: not valid JSON");
}
