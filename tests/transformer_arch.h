// The pretrained-architecture features of the policy (Hugging Face Llama, Qwen2, Qwen3) for the model tests: a config
// with all of them on, and vector tensors redrawn away from their initial 0 and 1, which would hide a bias or a norm
// applied in the wrong place (or not at all).
#pragma once
#include <stdint.h>

#include <cstring>
#include <random>

extern "C" {
#include "kernels/layout.h"
#include "models/transformer.h"
}

// Every feature on: heads of head_dim (apart from d_model / n_heads), q/k/v biases, q/k norms, ids [vocab_used, vocab)
// padding the vocabulary, llama3 RoPE scaling whose original context (200) puts the frequencies of head sizes 6 to 24
// in all three of its bands (kept, blended, divided).
inline void enable_all_features(drl_transformer_config *c, int head_dim, int vocab_used) {
  c->head_dim = head_dim;
  c->qkv_bias = 1;
  c->qk_norm = 1;
  c->vocab_used = vocab_used;
  c->rope_scaling.type = DRL_ROPE_SCALING_LLAMA3;
  c->rope_scaling.factor = 4.0f;
  c->rope_scaling.low_freq_factor = 1.0f;
  c->rope_scaling.high_freq_factor = 4.0f;
  c->rope_scaling.original_max_pos = 200;
}

// Whether layout tensor t is a bias (name ending in .bq, .bk or .bv).
inline bool is_bias_tensor(const drl_tensor_info &t) {
  const char *dot = std::strrchr(t.name, '.');
  return dot && (!std::strcmp(dot, ".bq") || !std::strcmp(dot, ".bk") || !std::strcmp(dot, ".bv"));
}

// Every vector tensor (shape [n, 1]) of params (host, laid out by lay) redrawn from seed: biases N(0, 0.3), norm gains
// 1 + U(-0.3, 0.3). The same seed and layout give the same values.
inline void randomize_vectors(const drl_layout &lay, float *params, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  std::uniform_real_distribution<float> ud(-0.3f, 0.3f);
  for (int i = 0; i < lay.count; ++i) {
    const drl_tensor_info &t = lay.tensors[i];
    if (t.shape[1] != 1) continue;
    bool bias = is_bias_tensor(t);
    for (int64_t j = 0; j < t.shape[0]; ++j) params[t.offset + j] = bias ? nd(rng) : 1.0f + ud(rng);
  }
}
