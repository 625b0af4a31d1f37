/* The memory table of docs/models.md: what a policy of Qwen2.5-0.5B's and Qwen2.5-1.5B's shapes holds, computed by
 * drl_transformer_memory and drl_kv_cache_device_bytes (the sizes drl_transformer_create and drl_kv_cache_create
 * allocate; tests/test_transformer_arch.cc checks they agree), for a training batch and a rollout batch on the CPU
 * and on one 80 GB GPU. bench/hf_scale.sh checks the CPU figure of one configuration against a measured run. */
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "models/kv_cache.h"
#include "models/transformer.h"

typedef struct shape {
  const char *name;
  int d_model, d_ff, layers, heads, kv_heads;
} shape;

/* Qwen2.5-0.5B/1.5B(-Instruct) config.json: vocabulary 151936, tied embeddings, q/k/v biases. */
static drl_transformer_config qwen25(const shape *s) {
  drl_transformer_config c;
  memset(&c, 0, sizeof c);
  c.vocab = 151936;
  c.d_model = s->d_model;
  c.n_layers = s->layers;
  c.n_heads = s->heads;
  c.n_kv_heads = s->kv_heads;
  c.d_ff = s->d_ff;
  c.max_seq = 32768;
  c.tied_embeddings = 1;
  c.rope_theta = 1e6f;
  c.init_std = 0.02f;
  c.norm_eps = 1e-6f;
  c.qkv_bias = 1;
  return c;
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_memory", &args)) return 2;
  drl_device cpu;
  drl_device_open(&cpu, DRL_BACKEND_CPU, 0);
  const shape shapes[] = {{"Qwen2.5-0.5B", 896, 4864, 24, 14, 2}, {"Qwen2.5-1.5B", 1536, 8960, 28, 12, 2}};
  /* training: B sequences x T tokens per forward; rollouts: rows x T positions of KV cache */
  const struct {
    const char *where;
    int B, T, rows, kv_T;
    double capacity_gb;
  } places[] = {{"CPU, 24 GB", 4, 512, 64, 1024, 24.0}, {"one 80 GB GPU", 8, 1024, 256, 2048, 80.0}};
  char body[4096];
  size_t at = (size_t)snprintf(body, sizeof body,
                               "| policy | where | training batch | parameters | gradients | AdamW | activations | "
                               "rollout KV cache | total | fits |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < 2; ++i)
    for (size_t p = 0; p < 2; ++p) {
      drl_transformer_config c = qwen25(&shapes[i]);
      drl_model_memory m;
      if (drl_transformer_memory(&c, &cpu, places[p].B, places[p].T, &m) != DRL_OK) {
        fprintf(stderr, "bench_memory: %s\n", drl_last_error());
        return 1;
      }
      /* groups of 16 rollouts share a prompt of a quarter of the positions */
      int P = places[p].kv_T / 4;
      double kv = (double)drl_kv_cache_device_bytes(&c, &cpu, places[p].rows, places[p].rows / 16, P,
                                                    places[p].kv_T - P);
      double gb = 1e9, total = (double)(m.params + m.grads + m.optimizer + m.activations + m.rope) + kv;
      at += (size_t)snprintf(body + at, sizeof body - at,
                             "| %s | %s | %d x %d | %.2f GB | %.2f GB | %.2f GB | %.2f GB | %.2f GB (%d x %d) | "
                             "%.2f GB | %s |\n",
                             shapes[i].name, places[p].where, places[p].B, places[p].T, (double)m.params / gb,
                             (double)m.grads / gb, (double)m.optimizer / gb, (double)m.activations / gb, kv / gb,
                             places[p].rows, places[p].kv_T, total / gb, total / gb < places[p].capacity_gb ? "yes" : "no");
    }
  snprintf(body + at, sizeof body - at,
           "\nfp32 everywhere; activations include the attention probabilities every block keeps for its backward "
           "(B x heads x T x T per block), the largest term at long T. The GPU rows use the CPU's scratch sizes (the "
           "GPU's CUB and attention scratch are queried from a device at run time: a few MB). The rollout KV cache "
           "holds rows x positions in groups of 16 rows whose prompt, the first quarter of the positions, is stored "
           "once per group.\n");
  return bench_emit(&args, "Memory of pretrained-size policies (bench_memory)", &cpu, body);
}
