// Hugging Face config.json -> transformer config (models/hf_config.h): the published configs of Qwen2.5-0.5B-Instruct
// (hub v4 style), the same written by transformers v5 (rope_parameters), Llama-3.2-1B (llama3 RoPE scaling) and
// Qwen3-0.6B (head_dim apart from hidden/heads); every unsupported feature refused by name; and the export round trip.
#include <string>

#include "test_util.h"

extern "C" {
#include "models/hf_config.h"
}

namespace {

const char *kQwen25 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

const char *kQwen25V5 = R"({
  "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896,
  "initializer_range": 0.02, "intermediate_size": 4864, "layer_types": ["full_attention", "full_attention"],
  "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "pad_token_id": null, "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "sliding_window": null,
  "tie_word_embeddings": true, "transformers_version": "5.25.0", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

const char *kLlama32 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 128256})";

const char *kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02,
  "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

drl_status parse(const std::string &text, drl_hf_config *c) {
  return drl_hf_config_parse("config.json", text.data(), text.size(), c);
}

// text with `from` replaced by `to` (which must occur).
std::string edit(std::string text, const std::string &from, const std::string &to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

}  // namespace

TEST(HfConfig, Qwen25HubConfig) {
  drl_hf_config c;
  ASSERT_EQ(parse(kQwen25, &c), DRL_OK) << last_error();
  const drl_transformer_config &m = c.model;
  EXPECT_STREQ(c.model_type, "qwen2");
  EXPECT_STREQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(m.vocab, 151936);
  EXPECT_EQ(m.d_model, 896);
  EXPECT_EQ(m.d_ff, 4864);
  EXPECT_EQ(m.n_layers, 24);
  EXPECT_EQ(m.n_heads, 14);
  EXPECT_EQ(m.n_kv_heads, 2);
  EXPECT_EQ(m.head_dim, 0) << "896 / 14 = 64: the default";
  EXPECT_EQ(m.max_seq, 32768);
  EXPECT_EQ(m.tied_embeddings, 1);
  EXPECT_EQ(m.qkv_bias, 1);
  EXPECT_EQ(m.qk_norm, 0);
  EXPECT_FLOAT_EQ(m.norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(m.rope_theta, 1e6f);
  EXPECT_EQ(m.rope_scaling.type, DRL_ROPE_SCALING_NONE);
  EXPECT_EQ(c.bos_token_id, 151643);
  ASSERT_EQ(c.n_eos, 1);
  EXPECT_EQ(c.eos_token_ids[0], 151645);
  EXPECT_STREQ(c.torch_dtype, "bfloat16");
}

TEST(HfConfig, TransformersV5KeysAreTheSame) {
  drl_hf_config c;
  ASSERT_EQ(parse(kQwen25V5, &c), DRL_OK) << last_error();
  EXPECT_FLOAT_EQ(c.model.rope_theta, 1e6f) << "rope_parameters.rope_theta";
  EXPECT_EQ(c.model.rope_scaling.type, DRL_ROPE_SCALING_NONE);
  EXPECT_STREQ(c.architecture, "Qwen2ForCausalLM") << "from model_type when architectures is absent";
  // v5 also writes a scaling into rope_parameters.
  std::string linear = edit(kQwen25V5, R"("rope_type": "default"})", R"("rope_type": "linear", "factor": 2.0})");
  ASSERT_EQ(parse(linear, &c), DRL_OK) << last_error();
  EXPECT_EQ(c.model.rope_scaling.type, DRL_ROPE_SCALING_LINEAR);
  EXPECT_FLOAT_EQ(c.model.rope_scaling.factor, 2.0f);
}

TEST(HfConfig, Llama32WithLlama3Scaling) {
  drl_hf_config c;
  ASSERT_EQ(parse(kLlama32, &c), DRL_OK) << last_error();
  const drl_transformer_config &m = c.model;
  EXPECT_EQ(m.qkv_bias, 0);
  EXPECT_EQ(m.qk_norm, 0);
  EXPECT_EQ(m.n_kv_heads, 8);
  EXPECT_EQ(m.head_dim, 0) << "2048 / 32 = 64";
  EXPECT_FLOAT_EQ(m.rope_theta, 5e5f);
  EXPECT_EQ(m.rope_scaling.type, DRL_ROPE_SCALING_LLAMA3);
  EXPECT_FLOAT_EQ(m.rope_scaling.factor, 32.0f);
  EXPECT_FLOAT_EQ(m.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(m.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(m.rope_scaling.original_max_pos, 8192);
  ASSERT_EQ(c.n_eos, 3);
  EXPECT_EQ(c.eos_token_ids[2], 128009);
  // The older spelling of the type key.
  ASSERT_EQ(parse(edit(kLlama32, R"("rope_type": "llama3")", R"("type": "llama3")"), &c), DRL_OK) << last_error();
  EXPECT_EQ(c.model.rope_scaling.type, DRL_ROPE_SCALING_LLAMA3);
}

TEST(HfConfig, Qwen3HeadDimAndNorms) {
  drl_hf_config c;
  ASSERT_EQ(parse(kQwen3, &c), DRL_OK) << last_error();
  EXPECT_EQ(c.model.head_dim, 128) << "1024 / 16 = 64, but Qwen3 says 128";
  EXPECT_EQ(c.model.qk_norm, 1);
  EXPECT_EQ(c.model.qkv_bias, 0);
}

TEST(HfConfig, UnsupportedFeaturesAreNamedWithTheirValue) {
  struct Case {
    std::string text, want;
  } cases[] = {
      {edit(kQwen25, R"("model_type": "qwen2")", R"("model_type": "gemma")"), "model_type = gemma"},
      {edit(kQwen25, R"("hidden_act": "silu")", R"("hidden_act": "gelu")"), "hidden_act = gelu"},
      {edit(kQwen25, R"("use_sliding_window": false)", R"("use_sliding_window": true)"), "use_sliding_window = true"},
      {edit(kQwen25V5, R"(["full_attention", "full_attention"])", R"(["full_attention", "sliding_attention"])"),
       "layer_types[1] = sliding_attention"},
      {edit(kLlama32, R"("rope_type": "llama3")", R"("rope_type": "yarn")"), "rope_scaling.rope_type = yarn"},
      {edit(kLlama32, R"("attention_bias": false)", R"("attention_bias": true)"), "attention_bias = true"},
      {edit(kLlama32, R"("mlp_bias": false)", R"("mlp_bias": true)"), "mlp_bias = true"},
      {edit(kQwen25, R"("architectures": ["Qwen2ForCausalLM"])", R"("architectures": ["Qwen2ForSequenceClassification"])"),
       "architectures[0] = Qwen2ForSequenceClassification"},
      {edit(kQwen25, R"("vocab_size": 151936})", R"("vocab_size": 151936, "quantization_config": {"bits": 4}})"),
       "quantization_config"},
      {edit(kQwen25, R"("model_type": "qwen2")", R"("model_type": "mistral")") + "", "architectures[0] = Qwen2ForCausalLM"},
  };
  for (const Case &c : cases) {
    drl_hf_config cfg;
    EXPECT_EQ(parse(c.text, &cfg), DRL_ERR_UNSUPPORTED) << c.want;
    EXPECT_ERROR_HAS(c.want);
    EXPECT_ERROR_HAS("config.json");
  }
  // Mistral's sliding window is live whenever it is set.
  std::string mistral = edit(edit(kQwen25, R"("model_type": "qwen2")", R"("model_type": "mistral")"),
                             R"("architectures": ["Qwen2ForCausalLM"])", R"("architectures": ["MistralForCausalLM"])");
  drl_hf_config cfg;
  EXPECT_EQ(parse(mistral, &cfg), DRL_ERR_UNSUPPORTED);
  EXPECT_ERROR_HAS("sliding_window = 32768");
  ASSERT_EQ(parse(edit(mistral, R"("sliding_window": 32768)", R"("sliding_window": null)"), &cfg), DRL_OK)
      << last_error();
  EXPECT_EQ(cfg.model.qkv_bias, 0) << "Mistral has no q/k/v biases";
}

TEST(HfConfig, MalformedConfigsAreFormatErrors) {
  drl_hf_config c;
  EXPECT_EQ(parse("{\"model_type\": \"llama\",", &c), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("config.json: not valid JSON");
  EXPECT_EQ(parse(edit(kQwen25, R"("hidden_size": 896,)", ""), &c), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("\"hidden_size\" is missing");
  EXPECT_EQ(parse(edit(kQwen25, R"("num_hidden_layers": 24)", R"("num_hidden_layers": "24")"), &c), DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("\"num_hidden_layers\" must be an integer");
  EXPECT_EQ(parse(edit(kQwen25, R"("num_key_value_heads": 2)", R"("num_key_value_heads": 3)"), &c),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("n_kv_heads 3");
  EXPECT_EQ(parse(edit(kQwen25, R"("rope_theta": 1000000.0)", R"("rope_theta": 1000000.0, "rope_theta": 1)"), &c),
            DRL_ERR_FORMAT);
  EXPECT_ERROR_HAS("duplicate");
}

TEST(HfConfig, ExportedConfigParsesBackTheSame) {
  for (const char *text : {kQwen25, kLlama32, kQwen3}) {
    drl_hf_config a, b;
    ASSERT_EQ(parse(text, &a), DRL_OK) << last_error();
    char *json = nullptr;
    ASSERT_EQ(drl_hf_config_to_json(&a, &json), DRL_OK) << last_error();
    ASSERT_EQ(parse(json, &b), DRL_OK) << last_error() << "\n" << json;
    EXPECT_EQ(0, std::memcmp(&a.model, &b.model, sizeof a.model)) << json;
    EXPECT_STREQ(a.architecture, b.architecture);
    EXPECT_EQ(a.n_eos, b.n_eos);
    EXPECT_NE(std::string(json).find("\"rope_theta\":"), std::string::npos) << "top-level RoPE keys: " << json;
    free(json);
  }
}
