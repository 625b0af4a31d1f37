// Incremental decoding and token rollout on the CPU: KV-cache logits against the full-sequence forward, recorded
// log-probs against the training forward, reproducibility (threads, seeds, steps, batch composition), EOS, the length
// cap, argument checks, and a throughput figure for the default model.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>  // before the C headers: they include <math.h> inside extern "C"
#include <cstring>
#include <random>
#include <vector>

#include "test_util.h"
#include "transformer_arch.h"

extern "C" {
#include "kernels/device.h"
#include "models/kv_cache.h"
#include "models/transformer.h"
#include "samplers/rollout.h"
}

namespace {

drl_transformer_config small_config(int tied = 1) {
  drl_transformer_config c = {};
  c.vocab = 11;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;  // GQA
  c.d_ff = 48;
  c.max_seq = 40;
  c.tied_embeddings = tied;
  c.rope_theta = 10000.0f;
  c.init_std = 0.3f;  // far from uniform attention and logits
  c.norm_eps = 1e-5f;
  return c;
}

struct Prompts {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets{0};
  int n() const { return (int)offsets.size() - 1; }
  void add(const std::vector<int32_t> &p) {
    tokens.insert(tokens.end(), p.begin(), p.end());
    offsets.push_back((int64_t)tokens.size());
  }
};

Prompts random_prompts(const std::vector<int> &lengths, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  Prompts p;
  for (int len : lengths) {
    std::vector<int32_t> t(len);
    for (auto &x : t) x = (int32_t)(rng() % vocab);
    p.add(t);
  }
  return p;
}

drl_rollout_params params(int G, int max_new, int eos) {
  drl_rollout_params p;
  p.group_size = G;
  p.max_new_tokens = max_new;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.eos = eos;
  p.seed = 1234;
  p.step = 0;
  p.uid = 0;
  p.first_rollout = 0;
  p.stop_ids = nullptr;
  p.n_stop = 0;
  p.on_token = nullptr;
  p.on_token_user = nullptr;
  return p;
}

// Owns a model, a sampler and a batch.
struct Sampler {
  drl_device dev = cpu_device();
  drl_transformer model{};
  drl_rollout ro{};
  drl_rollout_batch batch{};
  // A sampler for rows rollouts of prompts up to P_max tokens and responses up to new_max, in groups of group_size.
  Sampler(const drl_transformer_config &c, int rows, int P_max, int new_max, uint64_t seed = 5, int group_size = 1) {
    EXPECT_EQ(drl_transformer_create(&model, &c, &dev, rows, P_max + new_max, seed), DRL_OK) << drl_last_error();
    EXPECT_EQ(drl_rollout_create(&ro, &model, rows, group_size, P_max, new_max), DRL_OK) << drl_last_error();
  }
  ~Sampler() {
    drl_rollout_batch_free(&batch);
    drl_rollout_free(&ro);
    drl_transformer_free(&model);
  }
  drl_status run(const Prompts &p, const drl_rollout_params &rp) {
    return drl_rollout_generate(&ro, &model, p.tokens.data(), p.offsets.data(), p.n(), &rp, &batch);
  }
  std::vector<int32_t> tokens() const {
    return std::vector<int32_t>(batch.tokens, batch.tokens + (size_t)batch.rows * batch.T);
  }
  std::vector<float> logprobs() const {
    return std::vector<float>(batch.logprob, batch.logprob + (size_t)batch.rows * batch.T);
  }
};

}  // namespace

// ---------------------------------------------------------------- KV cache

// The config of small_config with every pretrained-architecture feature on: heads of 12 (not 32 / 4), q/k/v biases,
// q/k norms, ids 9 and 10 padding the vocabulary, llama3 RoPE scaling.
drl_transformer_config all_features_config(int tied = 0) {
  drl_transformer_config c = small_config(tied);
  enable_all_features(&c, 12, 9);
  return c;
}

// Prefill + one decode per token gives the logits of drl_transformer_forward + drl_transformer_logits_at on the whole
// sequence at every position, for left-padded rows, tied and untied heads, GQA, slots out of order, the G copies of a
// prefill, a prefill that runs in chunks of the model's B_max, and the pretrained-architecture features (with biases
// and norm gains redrawn, and padding ids among the inputs).
TEST(KvCache, IncrementalLogitsMatchFullForward) {
  for (int variant = 0; variant < 8; ++variant) {
    int tied = variant % 2 == 0, all = variant % 4 >= 2, share = variant < 4;
    SCOPED_TRACE(testing::Message() << "tied=" << tied << " all features=" << all << " shared prompt=" << share);
    drl_device dev = cpu_device();
    drl_transformer_config c = all ? all_features_config(tied) : small_config(tied);
    const int B = 3, P = 6, S = 7, T = P + S, G = 2, V = drl_transformer_vocab_used(&c);
    const std::vector<int32_t> rs = {0, 2, 5};  // prompt lengths 6, 4, 1
    std::mt19937 rng(3);
    std::vector<int32_t> full((size_t)B * T);
    for (auto &x : full) x = (int32_t)(rng() % c.vocab);
    std::vector<int32_t> prompts((size_t)B * P);
    for (int b = 0; b < B; ++b) std::copy_n(&full[(size_t)b * T], P, &prompts[(size_t)b * P]);
    // The model's B_max = 2 < B: the prefill runs in two chunks.
    drl_transformer m, ref;
    ASSERT_EQ(drl_transformer_create(&m, &c, &dev, 2, P, 9), DRL_OK) << drl_last_error();
    ASSERT_EQ(drl_transformer_create(&ref, &c, &dev, B, T, 9), DRL_OK);
    if (all) {
      randomize_vectors(m.ps.layout, m.ps.params, 10);
      randomize_vectors(ref.ps.layout, ref.ps.params, 10);
    }
    drl_kv_cache cache;
    ASSERT_EQ(drl_kv_cache_create(&cache, &m, B * G + 1, share ? B : B * G, P, S), DRL_OK) << drl_last_error();
    std::vector<float> got((size_t)B * V), want((size_t)B * V);
    const float temp = 0.8f;
    ASSERT_EQ(drl_kv_cache_prefill(&cache, &m, prompts.data(), rs.data(), B, P, G, share, temp, got.data()), DRL_OK)
        << drl_last_error();
    ASSERT_EQ(drl_transformer_forward(&ref, full.data(), nullptr, rs.data(), B, T, temp, nullptr, nullptr), DRL_OK);
    double worst = 0, scale = 0;
    auto compare = [&](const std::vector<float> &g, int t, const char *what) {
      std::vector<int> t_of(B, t);
      ASSERT_EQ(drl_transformer_logits_at(&ref, t_of.data(), temp, want.data()), DRL_OK);
      for (int b = 0; b < B; ++b)
        for (int v = 0; v < V; ++v) {
          double d = std::fabs((double)g[(size_t)b * V + v] - want[(size_t)b * V + v]);
          worst = std::fmax(worst, d);
          scale = std::fmax(scale, std::fabs((double)want[(size_t)b * V + v]));
          ASSERT_LE(d, 2e-5 * (1 + std::fabs(want[(size_t)b * V + v]))) << what << " row " << b << " position " << t;
        }
    };
    compare(got, P - 1, "prefill");
    // Copy g = 1 decodes rows in reverse slot order; copy g = 0 follows in order: both must match.
    for (int g : {1, 0})
      for (int s = 0; s < S - 1; ++s) {
        int t = P + s;
        std::vector<int32_t> tok(B), slots(B);
        for (int i = 0; i < B; ++i) {
          int b = g == 1 ? B - 1 - i : i;
          tok[i] = full[(size_t)b * T + t];
          slots[i] = b * G + g;
        }
        std::vector<float> out((size_t)B * V);
        ASSERT_EQ(drl_kv_cache_decode(&cache, &m, tok.data(), slots.data(), B, temp, out.data()), DRL_OK)
            << drl_last_error();
        for (int i = 0; i < B; ++i) {
          int b = g == 1 ? B - 1 - i : i;
          std::copy_n(&out[(size_t)i * V], V, &got[(size_t)b * V]);
        }
        compare(got, t, "decode");
      }
    for (int b = 0; b < B; ++b)
      for (int g = 0; g < G; ++g) EXPECT_EQ(cache.len[b * G + g], T - 1);
    std::printf("[ measured ] KV-cache vs full forward logits (tied=%d, all features=%d, shared=%d): max |diff| %.3g "
                "(max |logit| %.3g)\n",
                tied, all, share, worst, scale);
    drl_kv_cache_free(&cache);
    drl_transformer_free(&m);
    drl_transformer_free(&ref);
  }
}

TEST(KvCache, RejectsBadCalls) {
  drl_device dev = cpu_device();
  drl_transformer_config c = small_config();
  drl_transformer m;
  ASSERT_EQ(drl_transformer_create(&m, &c, &dev, 2, 8, 1), DRL_OK);
  drl_kv_cache cache;
  EXPECT_EQ(drl_kv_cache_create(&cache, &m, 2, 2, c.max_seq, 1), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_kv_cache_create(&cache, &m, 2, 0, 3, 5), DRL_ERR_INVALID_ARG);
  ASSERT_EQ(drl_kv_cache_create(&cache, &m, 2, 2, 3, 5), DRL_OK);
  std::vector<int32_t> tok = {1, 2, 3, 4, 5, 6}, rs = {0, 1};
  std::vector<float> logits(2 * c.vocab);
  drl_clear_error();
  std::vector<int32_t> one = {1, 1};
  EXPECT_EQ(drl_kv_cache_decode(&cache, &m, one.data(), nullptr, 2, 1.0f, logits.data()), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("needs a prefill");
  EXPECT_EQ(drl_kv_cache_prefill(&cache, &m, tok.data(), rs.data(), 2, 3, 2, 1, 1.0f, logits.data()), DRL_ERR_INVALID_ARG)
      << "4 slots needed, 2 allocated";
  std::vector<int32_t> empty = {0, 3};
  EXPECT_EQ(drl_kv_cache_prefill(&cache, &m, tok.data(), empty.data(), 2, 3, 1, 1, 1.0f, logits.data()),
            DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("no real token");
  ASSERT_EQ(drl_kv_cache_prefill(&cache, &m, tok.data(), rs.data(), 2, 3, 1, 1, 1.0f, logits.data()), DRL_OK)
      << drl_last_error();
  std::vector<int32_t> dup = {1, 1}, bad_tok = {1, 11};
  EXPECT_EQ(drl_kv_cache_decode(&cache, &m, one.data(), dup.data(), 2, 1.0f, logits.data()), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("repeated");
  EXPECT_EQ(drl_kv_cache_decode(&cache, &m, bad_tok.data(), nullptr, 2, 1.0f, logits.data()), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("vocabulary");
  EXPECT_EQ(drl_kv_cache_decode(&cache, &m, one.data(), nullptr, 2, 0.0f, logits.data()), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(cache.len[0], 3) << "a rejected decode changes nothing";
  // fill to the end: positions 3..7, then no room
  for (int t = 3; t < 8; ++t)
    ASSERT_EQ(drl_kv_cache_decode(&cache, &m, one.data(), nullptr, 2, 1.0f, logits.data()), DRL_OK) << drl_last_error();
  EXPECT_EQ(drl_kv_cache_decode(&cache, &m, one.data(), nullptr, 2, 1.0f, logits.data()), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("room");
  drl_kv_cache_free(&cache);
  drl_transformer_free(&m);
}

// ---------------------------------------------------------------- rollout

// The recorded log-probs and entropies against the training forward on the same tokens (targets = next tokens, same
// row_start and temperature), with top-k and top-p on: the record is of the full distribution; plain, and with every
// pretrained-architecture feature (padding ids in the prompts).
TEST(Rollout, LogprobsMatchTrainingForward) {
  for (int all : {0, 1}) {
    SCOPED_TRACE(all ? "all pretrained-architecture features" : "plain");
    drl_transformer_config c = all ? all_features_config() : small_config();
    const int G = 3, max_new = 9;
    Prompts pr = random_prompts({7, 3, 5, 1}, c.vocab, 17);
    const int rows = pr.n() * G, T = 7 + max_new;
    Sampler s(c, rows, 7, max_new);
    if (all) randomize_vectors(s.model.ps.layout, s.model.ps.params, 18);
    drl_rollout_params p = params(G, max_new, 4);
    p.temperature = 0.7f;
    p.top_k = 6;
    p.top_p = 0.9f;
    ASSERT_EQ(s.run(pr, p), DRL_OK) << drl_last_error();
    const drl_rollout_batch &b = s.batch;
    ASSERT_EQ(b.rows, rows);
    ASSERT_EQ(b.P, 7);
    ASSERT_EQ(b.T, T);
    std::vector<int32_t> targets((size_t)rows * T, -1);
    int64_t masked = 0;
    for (int r = 0; r < rows; ++r)
      for (int t = 0; t + 1 < T; ++t)
        if (b.mask[(size_t)r * T + t]) {
          targets[(size_t)r * T + t] = b.tokens[(size_t)r * T + t + 1];
          ++masked;
        }
    EXPECT_EQ(masked, b.generated_tokens);
    std::vector<float> lp((size_t)rows * T), ent((size_t)rows * T);
    ASSERT_EQ(drl_transformer_forward(&s.model, b.tokens, targets.data(), b.row_start, rows, T, p.temperature,
                                      lp.data(), ent.data()),
              DRL_OK)
        << drl_last_error();
    double worst_lp = 0, worst_ent = 0;
    int64_t identical = 0;
    for (size_t i = 0; i < lp.size(); ++i) {
      if (!b.mask[i]) {
        EXPECT_EQ(b.logprob[i], 0.0f);
        EXPECT_EQ(b.entropy[i], 0.0f);
        continue;
      }
      worst_lp = std::fmax(worst_lp, std::fabs((double)b.logprob[i] - lp[i]));
      worst_ent = std::fmax(worst_ent, std::fabs((double)b.entropy[i] - ent[i]));
      identical += memcmp(&b.logprob[i], &lp[i], 4) == 0;
      EXPECT_LE(b.logprob[i], 0.0f);
    }
    std::printf("[ measured ] rollout vs training log-probs over %lld tokens (all features=%d): max |diff| %.3g, "
                "entropy %.3g, %lld bit-identical\n",
                (long long)masked, all, worst_lp, worst_ent, (long long)identical);
    EXPECT_LT(worst_lp, 1e-5);
    EXPECT_LT(worst_ent, 1e-5);
  }
}

// Ids [vocab_used, vocab) pad the vocabulary: a rollout never emits one, although the LM head's padding rows are set
// to give them by far the largest logits (the twin model that scores every id shows they would win every draw), and
// padding ids in a prompt are ordinary inputs. An EOS among the padding ids is refused.
TEST(Rollout, NeverSamplesPaddingIds) {
  drl_transformer_config c = small_config(0);  // untied: the LM head's rows are free to set
  c.vocab = 16;
  c.vocab_used = 11;
  const int G = 4, max_new = 12, C = c.d_model, P = 6;
  Prompts pr = random_prompts({5, 3, 6}, c.vocab, 51);
  const int rows = pr.n() * G, T = P + max_new;
  Sampler s(c, rows, P, max_new);
  const drl_tensor_info *head = drl_layout_find(&s.model.ps.layout, "lm_head");
  float *W = s.model.ps.params + head->offset;
  // Rows 11..15 are +-1000 e_0, +-1000 e_1, +1000 e_2: one of them scores 1000 max(|x_0|, |x_1|) for any hidden x.
  const int dir[5][2] = {{0, 1}, {0, -1}, {1, 1}, {1, -1}, {2, 1}};
  for (int r = 0; r < 5; ++r) {
    for (int i = 0; i < C; ++i) W[(size_t)(11 + r) * C + i] = 0.0f;
    W[(size_t)(11 + r) * C + dir[r][0]] = 1000.0f * (float)dir[r][1];
  }
  {
    drl_transformer_config full = c;
    full.vocab_used = 0;
    drl_transformer twin;
    ASSERT_EQ(drl_transformer_create(&twin, &full, &s.dev, pr.n(), P, 1), DRL_OK);
    ASSERT_EQ(twin.ps.layout.total, s.model.ps.layout.total);
    memcpy(twin.ps.params, s.model.ps.params, (size_t)twin.ps.layout.total * sizeof(float));
    std::vector<int32_t> block((size_t)pr.n() * P, 0), rs(pr.n());
    for (int i = 0; i < pr.n(); ++i) {
      int len = (int)(pr.offsets[i + 1] - pr.offsets[i]);
      rs[i] = P - len;
      for (int t = 0; t < len; ++t) block[(size_t)i * P + rs[i] + t] = pr.tokens[pr.offsets[i] + t];
    }
    ASSERT_EQ(drl_transformer_forward(&twin, block.data(), nullptr, rs.data(), pr.n(), P, 1.0f, nullptr, nullptr),
              DRL_OK);
    std::vector<int> t_of(pr.n(), P - 1);
    std::vector<float> logits((size_t)pr.n() * c.vocab);
    ASSERT_EQ(drl_transformer_logits_at(&twin, t_of.data(), 1.0f, logits.data()), DRL_OK);
    for (int i = 0; i < pr.n(); ++i) {
      const float *z = &logits[(size_t)i * c.vocab];
      int best = (int)(std::max_element(z, z + c.vocab) - z);
      EXPECT_GE(best, 11) << "prompt " << i << ": the twin's favourite is a padding id";
      EXPECT_GT(z[best] - *std::max_element(z, z + 11), 50.0f) << "by far";
    }
    drl_transformer_free(&twin);
  }
  int64_t padding_in_prompts = 0;
  for (int32_t t : pr.tokens) padding_in_prompts += t >= 11;
  EXPECT_GT(padding_in_prompts, 0) << "the prompts hold padding ids";
  for (int top_k : {0, 1}) {
    drl_rollout_params p = params(G, max_new, 3);
    p.temperature = 2.0f;
    p.top_k = top_k;
    ASSERT_EQ(s.run(pr, p), DRL_OK) << drl_last_error();
    EXPECT_GT(s.batch.generated_tokens, rows) << "more than one token per row";
    for (int r = 0; r < rows; ++r)
      for (int t = P; t < P + s.batch.response_len[r]; ++t)
        EXPECT_LT(s.batch.tokens[(size_t)r * T + t], 11) << "row " << r << " column " << t << " top_k " << top_k;
  }
  drl_rollout_params bad = params(G, max_new, 12);
  EXPECT_EQ(s.run(pr, bad), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("eos id 12");
}

// A model's other EOS ids (generation_config.json lists several) end a response like eos: the greedy continuation
// stops at the first of them, which stays the response's last token, and eos pads the rest.
TEST(Rollout, StopsOnAnyEosId) {
  drl_transformer_config c = small_config();
  const int G = 1, max_new = 6;
  Prompts pr = random_prompts({4, 3}, c.vocab, 31);
  Sampler s(c, pr.n() * G, 4, max_new);
  drl_rollout_params p = params(G, max_new, 0);
  p.top_k = 1;
  std::vector<int> used(c.vocab, 0);
  for (int unused_eos = 0; unused_eos < 2; ++unused_eos) {  // find an eos the greedy continuation never emits
    ASSERT_EQ(s.run(pr, p), DRL_OK);
    for (int r = 0; r < s.batch.rows; ++r)
      for (int t = s.batch.P; t < s.batch.P + s.batch.response_len[r]; ++t) used[s.batch.tokens[(size_t)r * s.batch.T + t]] = 1;
    for (int v = 0; v < c.vocab; ++v)
      if (!used[v]) p.eos = v;
  }
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  ASSERT_EQ(s.batch.response_len[0], max_new) << "this eos never stops the greedy continuation";
  std::vector<int32_t> full(s.batch.tokens + s.batch.P, s.batch.tokens + s.batch.P + max_new);
  const int32_t stop = full[2];  // the third greedy token of the first prompt
  int first = 0;
  while (full[first] != stop) ++first;
  p.stop_ids = &stop;
  p.n_stop = 1;
  ASSERT_EQ(s.run(pr, p), DRL_OK) << drl_last_error();
  EXPECT_EQ(s.batch.response_len[0], first + 1);
  EXPECT_EQ(s.batch.tokens[s.batch.P + first], stop);
  for (int t = s.batch.P + first + 1; t < s.batch.T; ++t) EXPECT_EQ(s.batch.tokens[t], p.eos) << "padded with eos";
  const int32_t bad = c.vocab;
  p.stop_ids = &bad;
  EXPECT_EQ(s.run(pr, p), DRL_ERR_INVALID_ARG);
}

TEST(Rollout, LayoutMaskEosAndPadding) {
  drl_transformer_config c = small_config();
  c.vocab = 4;  // EOS (id 0) comes often
  const int G = 4, max_new = 8;
  Prompts pr = random_prompts({2, 5, 3}, c.vocab, 23);
  const int rows = pr.n() * G, T = 5 + max_new;
  Sampler s(c, rows, 5, max_new);
  drl_rollout_params p = params(G, max_new, 0);
  p.temperature = 1.5f;
  ASSERT_EQ(s.run(pr, p), DRL_OK) << drl_last_error();
  const drl_rollout_batch &b = s.batch;
  int stopped_early = 0;
  int64_t total = 0;
  for (int r = 0; r < rows; ++r) {
    int i = r / G, len = (int)(pr.offsets[i + 1] - pr.offsets[i]), L = b.response_len[r];
    const int32_t *row = b.tokens + (size_t)r * T;
    ASSERT_EQ(b.row_start[r], b.P - len);
    for (int t = 0; t < b.row_start[r]; ++t) EXPECT_EQ(row[t], p.eos) << "left padding";
    for (int t = 0; t < len; ++t) EXPECT_EQ(row[b.row_start[r] + t], pr.tokens[pr.offsets[i] + t]) << "prompt";
    ASSERT_GE(L, 1);
    ASSERT_LE(L, max_new);
    for (int s2 = 0; s2 + 1 < L; ++s2) EXPECT_NE(row[b.P + s2], p.eos) << "EOS ends a response";
    if (L < max_new) {
      EXPECT_EQ(row[b.P + L - 1], p.eos) << "a short response ends with EOS";
      ++stopped_early;
    }
    for (int t = b.P + L; t < T; ++t) EXPECT_EQ(row[t], p.eos) << "padded with EOS after the response";
    for (int t = 0; t < T; ++t)
      EXPECT_EQ(b.mask[(size_t)r * T + t], t >= b.P - 1 && t < b.P - 1 + L) << "row " << r << " column " << t;
    total += L;
  }
  EXPECT_GT(stopped_early, 0) << "with 4 tokens EOS should stop some rows";
  EXPECT_EQ(b.generated_tokens, total);
  EXPECT_EQ(s.ro.generated_tokens, total);
  // greedy with EOS = the greedy first token of prompt 0: its rows stop after one token
  drl_rollout_params g = p;
  g.top_k = 1;
  ASSERT_EQ(s.run(pr, g), DRL_OK);
  g.eos = s.batch.tokens[b.P];
  ASSERT_EQ(s.run(pr, g), DRL_OK);
  for (int r = 0; r < G; ++r) EXPECT_EQ(s.batch.response_len[r], 1);
}

TEST(Rollout, MaxNewTokensCaps) {
  drl_transformer_config c = small_config();
  const int G = 2, max_new = 6;
  Prompts pr = random_prompts({4, 2}, c.vocab, 29);
  Sampler s(c, pr.n() * G, 4, max_new);
  drl_rollout_params p = params(G, max_new, 0);
  p.top_k = 1;  // greedy: the continuation does not depend on the EOS id
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  std::vector<int> used(c.vocab, 0);
  for (int r = 0; r < s.batch.rows; ++r)
    for (int t = s.batch.P; t < s.batch.P + s.batch.response_len[r]; ++t) used[s.batch.tokens[(size_t)r * s.batch.T + t]] = 1;
  int unused = -1;
  for (int v = 0; v < c.vocab && unused < 0; ++v)
    if (!used[v]) unused = v;
  ASSERT_GE(unused, 0) << "6 greedy tokens x 2 prompts leave some of 11 ids unused";
  p.eos = unused;
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  for (int r = 0; r < s.batch.rows; ++r) {
    EXPECT_EQ(s.batch.response_len[r], max_new);
    int m = 0;
    for (int t = 0; t < s.batch.T; ++t) m += s.batch.mask[(size_t)r * s.batch.T + t];
    EXPECT_EQ(m, max_new);
    EXPECT_EQ(s.batch.T, s.batch.P + max_new);
  }
  EXPECT_EQ(s.batch.generated_tokens, (int64_t)s.batch.rows * max_new);
}

// A prompt's G rows reading one stored copy of its keys and values give the rollouts of rows that each keep their own
// copy, bit for bit: tokens, log-probs, entropies, masks and lengths, with rows that stop early, at 1 and 2 threads.
TEST(Rollout, SharedPromptGivesThePerRowCopiesRollouts) {
  drl_transformer_config c = small_config();
  const int max_new = 12;
  Prompts pr = random_prompts({7, 2, 5}, c.vocab, 57);
  int saved = drl_cpu_threads();
  for (int G : {3, 16})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "G=" << G << " threads=" << threads);
      drl_cpu_set_threads(threads);
      Sampler shared(c, pr.n() * G, 7, max_new, 5, G), copies(c, pr.n() * G, 7, max_new, 5, 1);
      copies.ro.share_prefix = 0;
      drl_rollout_params p = params(G, max_new, 3);
      ASSERT_EQ(shared.run(pr, p), DRL_OK) << drl_last_error();
      ASSERT_EQ(copies.run(pr, p), DRL_OK) << drl_last_error();
      const drl_rollout_batch &a = shared.batch, &b = copies.batch;
      ASSERT_EQ(a.rows, b.rows);
      ASSERT_EQ(a.T, b.T);
      size_t cells = (size_t)a.rows * a.T;
      EXPECT_EQ(0, memcmp(a.tokens, b.tokens, cells * sizeof(int32_t)));
      EXPECT_EQ(0, memcmp(a.logprob, b.logprob, cells * sizeof(float)));
      EXPECT_EQ(0, memcmp(a.entropy, b.entropy, cells * sizeof(float)));
      EXPECT_EQ(0, memcmp(a.mask, b.mask, cells));
      EXPECT_EQ(0, memcmp(a.response_len, b.response_len, (size_t)a.rows * sizeof(int32_t)));
      int early = 0, full = 0;
      for (int r = 0; r < a.rows; ++r) (a.response_len[r] < max_new ? early : full) += 1;
      EXPECT_GT(early, 0) << "some rows stop early";
      EXPECT_GT(full, 0) << "some rows run to max_new";
      EXPECT_EQ(shared.ro.cache.n_groups, pr.n());
      EXPECT_EQ(copies.ro.cache.n_groups, pr.n() * G);
    }
  drl_cpu_set_threads(saved);
}

// The KV cache holds each prompt once per group: with b = 2 x layers x kv heads x head size x 4 bytes per position,
// (R / G) x P x b for the prompts and R x L_r x b for the responses (R rows, G per prompt, P prompt columns, L_r new
// tokens), against R x (P + L_r) x b when every row keeps its own prompt.
TEST(Rollout, KvCacheBytesFollowTheSharedPrefixFormula) {
  drl_transformer_config c = small_config();
  const int R = 128, G = 16, P = 8, Lr = 16;
  const int64_t b = 2LL * c.n_layers * c.n_kv_heads * (c.d_model / c.n_heads) * 4;
  Sampler shared(c, R, P, Lr, 5, G), copies(c, R, P, Lr, 5, 1);
  EXPECT_EQ(shared.ro.cache.kv_bytes, (int64_t)(R / G) * P * b + (int64_t)R * Lr * b);
  EXPECT_EQ(copies.ro.cache.kv_bytes, (int64_t)R * (P + Lr) * b);
  EXPECT_EQ(shared.ro.cache.kv_bytes, drl_kv_cache_kv_bytes(&c, R, R / G, P, Lr));
  EXPECT_LT(shared.ro.cache.device_bytes, copies.ro.cache.device_bytes);
}

TEST(Rollout, SameSeedSameRolloutsWithOneOrTwoThreads) {
  drl_transformer_config c = small_config();
  const int G = 4, max_new = 10;
  Prompts pr = random_prompts({6, 2, 4}, c.vocab, 31);
  Sampler s(c, pr.n() * G, 6, max_new);
  drl_rollout_params p = params(G, max_new, 3);
  p.top_p = 0.95f;
  int saved = drl_cpu_threads();
  drl_cpu_set_threads(1);
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  std::vector<int32_t> one = s.tokens();
  std::vector<float> lp1 = s.logprobs();
  drl_cpu_set_threads(2);
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  std::vector<int32_t> two = s.tokens();
  std::vector<float> lp2 = s.logprobs();
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  EXPECT_EQ(s.tokens(), two) << "a rerun with the same seed";
  drl_cpu_set_threads(saved);
  EXPECT_EQ(one, two) << "1 vs 2 threads";
  double worst = 0;
  for (size_t i = 0; i < lp1.size(); ++i) worst = std::fmax(worst, std::fabs((double)lp1[i] - lp2[i]));
  std::printf("[ measured ] log-probs, 1 vs 2 threads: max |diff| %.3g%s\n", worst,
              memcmp(lp1.data(), lp2.data(), lp1.size() * 4) == 0 ? " (bit-identical)" : "");
  EXPECT_LT(worst, 1e-5);
}

TEST(Rollout, SeedsStepsAndGroupMembersDiffer) {
  drl_transformer_config c = small_config();
  const int G = 6, max_new = 8;
  Prompts pr = random_prompts({5, 3}, c.vocab, 37);
  Sampler s(c, pr.n() * G, 5, max_new);
  drl_rollout_params p = params(G, max_new, 10);
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  std::vector<int32_t> base = s.tokens();
  const int T = s.batch.T, P = s.batch.P;
  // the G rollouts of a prompt differ from each other
  for (int i = 0; i < pr.n(); ++i) {
    int distinct_pairs = 0;
    for (int g = 0; g < G; ++g)
      for (int h = g + 1; h < G; ++h)
        distinct_pairs += memcmp(&base[((size_t)i * G + g) * T + P], &base[((size_t)i * G + h) * T + P],
                                 max_new * sizeof(int32_t)) != 0;
    EXPECT_GE(distinct_pairs, G * (G - 1) / 2 - 1) << "prompt " << i;
  }
  drl_rollout_params q = p;
  q.seed = 1235;
  ASSERT_EQ(s.run(pr, q), DRL_OK);
  EXPECT_NE(s.tokens(), base) << "another seed";
  q = p;
  q.step = 1;
  ASSERT_EQ(s.run(pr, q), DRL_OK);
  EXPECT_NE(s.tokens(), base) << "another step";
  q = p;
  q.uid = 1;
  ASSERT_EQ(s.run(pr, q), DRL_OK);
  EXPECT_NE(s.tokens(), base) << "another uid";
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  EXPECT_EQ(s.tokens(), base) << "the same seed and step again";
}

// A rollout's draws are addressed by its global index: prompt 1 alone (first_rollout = G) continues exactly as it did
// inside the batch, although its padding, the batch size and every GEMM shape differ.
TEST(Rollout, DrawsDoNotDependOnBatchComposition) {
  drl_transformer_config c = small_config();
  const int G = 3, max_new = 8;
  Prompts pr = random_prompts({6, 2, 4}, c.vocab, 41);
  Sampler s(c, pr.n() * G, 6, max_new);
  drl_rollout_params p = params(G, max_new, 10);
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  std::vector<int32_t> all = s.tokens();
  std::vector<int32_t> len_all(s.batch.response_len, s.batch.response_len + s.batch.rows);
  const int T = s.batch.T, P = s.batch.P;
  Prompts one;
  one.add(std::vector<int32_t>(pr.tokens.begin() + pr.offsets[1], pr.tokens.begin() + pr.offsets[2]));
  drl_rollout_params q = p;
  q.first_rollout = G;
  ASSERT_EQ(s.run(one, q), DRL_OK);
  ASSERT_EQ(s.batch.P, 2);
  for (int g = 0; g < G; ++g) {
    EXPECT_EQ(s.batch.response_len[g], len_all[G + g]);
    for (int k = 0; k < max_new; ++k)
      EXPECT_EQ(s.batch.tokens[(size_t)g * s.batch.T + s.batch.P + k], all[((size_t)G + g) * T + P + k])
          << "rollout " << g << " token " << k;
  }
}

TEST(Rollout, RejectsBadArguments) {
  drl_transformer_config c = small_config();
  Prompts pr = random_prompts({3, 2}, c.vocab, 43);
  Sampler s(c, 4, 3, 5);
  drl_rollout_params p = params(2, 5, 1);
  drl_clear_error();
  drl_rollout_params q = p;
  q.eos = c.vocab;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("eos");
  q = p;
  q.top_p = 0.0f;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  q.top_p = 1.5f;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  q = p;
  q.top_k = -1;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  q = p;
  q.temperature = 0.0f;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  q = p;
  q.group_size = 3;  // 6 rows > 4
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  q = p;
  q.max_new_tokens = 6;  // > 5
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("sampler's 1..5");
  Prompts longer;
  longer.add({1, 2, 3, 4});  // > 3
  EXPECT_EQ(s.run(longer, p), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("1..3 tokens");
  q = p;
  q.first_rollout = UINT64_C(1) << 44;
  EXPECT_EQ(s.run(pr, q), DRL_ERR_INVALID_ARG);
  Prompts bad = pr;
  bad.tokens[1] = c.vocab;
  EXPECT_EQ(s.run(bad, p), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("vocabulary");
  Prompts empty;
  empty.add({1, 2});
  empty.add({});
  EXPECT_EQ(s.run(empty, p), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("prompt 1");
  EXPECT_EQ(s.run(pr, p), DRL_OK) << "and a good call still works: " << drl_last_error();
}

// A figure, not an assertion: generated tokens per second for the default model (d_model 128, 4 layers, 4 heads,
// d_ff 512, vocab 13) with 8 prompts x 16 rollouts and 6 new tokens.
TEST(Rollout, ThroughputDefaultModel) {
  drl_transformer_config c = {};
  c.vocab = 13;
  c.d_model = 128;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.d_ff = 512;
  c.max_seq = 64;
  c.tied_embeddings = 1;
  c.rope_theta = 10000.0f;
  c.init_std = 0.02f;
  c.norm_eps = 1e-5f;
  const int G = 16, max_new = 6;
  Prompts pr = random_prompts({8, 9, 10, 8, 7, 10, 9, 8}, c.vocab, 47);
  Sampler s(c, pr.n() * G, 10, max_new);
  drl_rollout_params p = params(G, max_new, 12);
  ASSERT_EQ(s.run(pr, p), DRL_OK) << drl_last_error();  // warm-up
  int64_t tokens = 0;
  int iters = 0;
  auto t0 = std::chrono::steady_clock::now();
  double sec = 0;
  while (sec < 1.0 || iters < 3) {
    p.step = (uint32_t)iters;
    ASSERT_EQ(s.run(pr, p), DRL_OK);
    tokens += s.batch.generated_tokens;
    ++iters;
    sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::printf("[ measured ] rollout, default model, 8 prompts x 16 x 6 new tokens, %d threads: %.0f tokens/s "
              "(%d batches, %.1f ms each)\n",
              drl_cpu_threads(), tokens / sec, iters, 1e3 * sec / iters);
  EXPECT_GT(tokens, 0);
}

// The streaming hook sees every drawn token once, in its row's order: the stream spells the batch's responses (EOS
// included).
TEST(Rollout, OnTokenStreamsEveryResponseTokenInOrder) {
  drl_transformer_config c = small_config();
  const int G = 3, max_new = 9;
  Prompts pr = random_prompts({5, 2}, c.vocab, 41);
  Sampler s(c, pr.n() * G, 5, max_new);
  struct Seen {
    std::vector<std::vector<int32_t>> rows;
    int calls = 0;
  } seen;
  seen.rows.resize((size_t)pr.n() * G);
  drl_rollout_params p = params(G, max_new, 2);
  p.on_token = [](void *user, int row, int32_t id) {
    Seen *v = static_cast<Seen *>(user);
    v->rows.at((size_t)row).push_back(id);
    ++v->calls;
  };
  p.on_token_user = &seen;
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  int64_t total = 0;
  for (int r = 0; r < s.batch.rows; ++r) {
    const int32_t *resp = s.batch.tokens + (size_t)r * s.batch.T + s.batch.P;
    EXPECT_EQ(seen.rows[r], std::vector<int32_t>(resp, resp + s.batch.response_len[r])) << "row " << r;
    total += s.batch.response_len[r];
  }
  EXPECT_EQ(seen.calls, total);
  EXPECT_GT(total, s.batch.rows) << "some row decoded more than one token";
}

// top_k = 1 is greedy decoding: at every step the id of the largest logit of the full forward over the sequence so
// far (ties to the lower id), which is how held-out evaluation defines it.
TEST(Rollout, TopKOneIsTheArgmaxOfTheFullForward) {
  drl_transformer_config c = all_features_config();
  const int G = 1, max_new = 8, P = 5, V = drl_transformer_vocab_used(&c);
  Prompts pr = random_prompts({5, 3, 1}, c.vocab, 43);
  Sampler s(c, pr.n() * G, P, max_new, 17);
  drl_rollout_params p = params(G, max_new, 0);
  p.top_k = 1;
  p.temperature = 0.7f;  // any temperature: the argmax does not move
  ASSERT_EQ(s.run(pr, p), DRL_OK);
  drl_device dev = cpu_device();
  drl_transformer ref;
  ASSERT_EQ(drl_transformer_create(&ref, &c, &dev, 1, P + max_new, 17), DRL_OK);
  for (int r = 0; r < s.batch.rows; ++r) {
    const int32_t *row = s.batch.tokens + (size_t)r * s.batch.T;
    for (int k = 0; k < s.batch.response_len[r]; ++k) {
      int T = s.batch.P + k, last = T - 1, rs = s.batch.row_start[r];
      std::vector<float> logits((size_t)V);
      ASSERT_EQ(drl_transformer_forward(&ref, row, nullptr, &rs, 1, T, 1.0f, nullptr, nullptr), DRL_OK);
      ASSERT_EQ(drl_transformer_logits_at(&ref, &last, 1.0f, logits.data()), DRL_OK);
      int best = (int)(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ASSERT_EQ(row[T], best) << "row " << r << " response token " << k;
    }
  }
  drl_transformer_free(&ref);
}
