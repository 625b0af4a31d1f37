/* parity_init: writes the starting point of the PyTorch parity fixture (llm.c's test_gpt2 pattern: the reference
 * implementation reads our initial weights, so the comparison does not depend on reimplementing our Philox init).
 *
 *   usage: parity_init OUT.h5
 *
 * OUT.h5 is a dynrl checkpoint of the freshly initialised tiny model (/model/params, /model/layout, /rng/seed, ...)
 * plus what the reference needs to run the same computation:
 *   /parity/config          attributes: vocab, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq,
 *                           tied_embeddings, seed (int64); rope_theta, init_std, norm_eps (double)
 *   /parity/batch/tokens    int32 [B, T]   right-padded with token 0
 *   /parity/batch/targets   int32 [B, T]   next token on answer positions, -1 elsewhere (prompt and padding)
 *
 * bench/reference/transformer_ref.py turns this into tests/fixtures/transformer_parity.h5 (its header comment has
 * the full regeneration command). Not a test itself: it only ever runs when the fixture is regenerated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "data/h5.h"
#include "kernels/philox.h"
#include "models/transformer.h"

#define PARITY_B 3
#define PARITY_T 12
#define PARITY_SEED 1234

static int fail(const char *what) {
  fprintf(stderr, "parity_init: %s: %s\n", what, drl_last_error());
  return 1;
}

/* Three SFT-shaped rows: (prompt length, total length) = (4, 12), (3, 9), (5, 6); tokens past the total length are
 * right padding. Position t predicts token t + 1, scored only when t + 1 is an answer token, as in engine/sft.c. */
static void make_batch(int32_t *tokens, int32_t *targets, int vocab) {
  const int prompt[PARITY_B] = {4, 3, 5}, total[PARITY_B] = {12, 9, 6};
  uint32_t tag = drl_rng_tag(DRL_RNG_TEST, 77, 0);
  for (int b = 0; b < PARITY_B; ++b)
    for (int t = 0; t < PARITY_T; ++t) {
      int i = b * PARITY_T + t;
      tokens[i] = t < total[b] ? (int32_t)(drl_rng_u32(PARITY_SEED, 0, tag, (uint64_t)i) % (uint32_t)vocab) : 0;
    }
  for (int b = 0; b < PARITY_B; ++b)
    for (int t = 0; t < PARITY_T; ++t) {
      int i = b * PARITY_T + t;
      targets[i] = (t + 1 >= prompt[b] && t + 1 < total[b]) ? tokens[i + 1] : -1;
    }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT.h5\n", argv[0]);
    return 2;
  }
  const char *path = argv[1];
  /* init_std 0.1: large enough that attention is far from uniform and every tensor's gradient is well above fp32
   * noise, small enough that the logits stay O(1). */
  drl_transformer_config cfg = {.vocab = 13, .d_model = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                .d_ff = 64, .max_seq = 16, .tied_embeddings = 1, .rope_theta = 10000.0f,
                                .init_std = 0.1f, .norm_eps = 1e-5f};
  drl_device dev;
  if (drl_device_open(&dev, DRL_BACKEND_CPU, 0) != DRL_OK) return fail("device");
  drl_transformer model;
  if (drl_transformer_create(&model, &cfg, &dev, PARITY_B, PARITY_T, PARITY_SEED) != DRL_OK) return fail("create");

  drl_checkpoint ck;
  memset(&ck, 0, sizeof ck);
  ck.layout = model.ps.layout;
  ck.params = model.ps.params; /* CPU device: the buffer is host memory */
  ck.seed = PARITY_SEED;
  ck.threads = 1;
  snprintf(ck.phase, sizeof ck.phase, "parity");
  char no_yaml[1] = "";
  ck.config_yaml = no_yaml;
  if (drl_checkpoint_write(path, &ck) != DRL_OK) return fail("checkpoint");

  /* The checkpoint writer commits a whole file; the parity groups are added by reopening it. */
  int32_t tokens[PARITY_B * PARITY_T], targets[PARITY_B * PARITY_T];
  make_batch(tokens, targets, cfg.vocab);
  drl_h5_quiet();
  drl_h5_file f;
  snprintf(f.path, sizeof f.path, "%s", path);
  f.id = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f.id < 0) {
    fprintf(stderr, "parity_init: cannot reopen %s\n", path);
    return 1;
  }
  const char *g = "/parity/config";
  const int64_t shape[2] = {PARITY_B, PARITY_T};
  struct { const char *name; int64_t value; } ints[] = {
      {"vocab", cfg.vocab},     {"d_model", cfg.d_model},       {"n_layers", cfg.n_layers},
      {"n_heads", cfg.n_heads}, {"n_kv_heads", cfg.n_kv_heads}, {"d_ff", cfg.d_ff},
      {"max_seq", cfg.max_seq}, {"tied_embeddings", cfg.tied_embeddings}, {"seed", PARITY_SEED}};
  drl_status st = DRL_OK;
  for (size_t i = 0; st == DRL_OK && i < sizeof ints / sizeof ints[0]; ++i)
    st = drl_h5_write_attr_int64(&f, g, ints[i].name, ints[i].value);
  /* The float fields as the doubles of their float values, so the reader gets the exact same float back. */
  if (st == DRL_OK) st = drl_h5_write_attr_double(&f, g, "rope_theta", (double)cfg.rope_theta);
  if (st == DRL_OK) st = drl_h5_write_attr_double(&f, g, "init_std", (double)cfg.init_std);
  if (st == DRL_OK) st = drl_h5_write_attr_double(&f, g, "norm_eps", (double)cfg.norm_eps);
  if (st == DRL_OK) st = drl_h5_write_array(&f, "/parity/batch/tokens", DRL_H5_INT32, 2, shape, tokens);
  if (st == DRL_OK) st = drl_h5_write_array(&f, "/parity/batch/targets", DRL_H5_INT32, 2, shape, targets);
  if (H5Fclose(f.id) < 0 && st == DRL_OK) st = DRL_FAIL(DRL_ERR_IO, "closing %s failed", path);
  if (st != DRL_OK) return fail("parity groups");

  printf("parity_init: wrote %s (%lld parameters, batch %d x %d)\n", path, (long long)model.ps.layout.total, PARITY_B,
         PARITY_T);
  drl_transformer_free(&model);
  drl_device_close(&dev);
  return 0;
}
