/* Rollout throughput: generated tokens per second of drl_rollout_generate (prefill once per prompt, then KV-cache
 * decode of G rollouts per prompt, sampling at temperature 1 with the per-token log-prob and full-vocabulary entropy
 * recorded) for the default policy (d_model 128, 4 layers, 4 heads, d_ff 512, vocabulary 13 as in the add task),
 * 8 prompts of 8 tokens x 16 rollouts = 128 rows, two response lengths: 16 (grpo.max_new_tokens' default) and 64.
 * model.max_seq is 128 so that 8 + 64 positions fit; it only sizes the RoPE table and changes no FLOP.
 *
 * Fixed lengths. A randomly initialised policy samples EOS about once in V tokens, so rows would stop early and the
 * decode batch would shrink at random. To time the same shapes as the PyTorch reference (bench/reference/
 * generate_ref.py, which always generates max_new_tokens), the embedding (tied LM head) is edited after the seeded
 * init so that EOS is never sampled: every token but EOS gets +4 in residual dimension 0, which then dominates the
 * final RMSNorm, and EOS's row is -40 there, so its logit sits hundreds of nats below the others; the other tokens
 * stay near uniform. The work per token is unchanged; the program checks that every row produced max_new_tokens.
 *
 * Reported per length: median ms per drl_rollout_generate call over the timed calls (one untimed call first),
 * generated tokens/s from it, and ms per decode step (the call's time over max_new_tokens).
 *
 * Extra options (besides --device, --append, --quick): --warmup N (untimed calls, default 1), --reps N (timed calls
 * per length, default 7 for 16 tokens, 3 for 64, 1 longer), --csv FILE (one line per length, read by
 * bench/side_by_side.sh and bench/hf_generate_compare.sh), --lengths A,B,... (new tokens, default 16,64),
 * --prompt-len N (default 8; prompts of random digits), --large (a 27M-parameter policy: d_model 512, 8 layers, 8
 * heads, d_ff 1536), --export DIR (writes the policy, EOS edit included, as a Hugging Face directory, so that
 * bench/reference/hf_generate_ref.py runs transformers' generate() on the same weights). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "engine/hf_model.h"
#include "kernels/philox.h"
#include "models/transformer.h"
#include "samplers/rollout.h"

static void die(const char *what) {
  fprintf(stderr, "bench_rollout: %s: %s\n", what, drl_last_error());
  exit(1);
}

#define CHECK(call, what)            \
  do {                               \
    if ((call) != DRL_OK) die(what); \
  } while (0)

enum { N_PROMPTS = 8, GROUP = 16, EOS = 12, MAX_LENGTHS = 8 };

/* EOS never sampled: see the header comment. tok_emb is the layout's first tensor ([V, C] at offset 0). */
static void forbid_eos(drl_transformer *m) {
  int V = m->cfg.vocab, C = m->cfg.d_model;
  size_t n = (size_t)V * C;
  float *emb = malloc(n * sizeof(float));
  if (!emb) die("host memory");
  CHECK(drl_copy_to_host(&m->dev, emb, m->ps.params, n * sizeof(float)), "copy embedding");
  for (int v = 0; v < V; ++v) emb[(size_t)v * C] = v == EOS ? -40.0f : 4.0f;
  CHECK(drl_copy_to_device(&m->dev, m->ps.params, emb, n * sizeof(float)), "copy embedding");
  free(emb);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct result {
  int new_tokens, reps, warmup;
  double ms, tokens_per_s, ms_per_token_step, mean_entropy;
  int64_t generated;
} result;

static result run_length(drl_transformer *m, drl_rollout *ro, const int32_t *prompts, const int64_t *offsets,
                         int new_tokens, int warmup, int reps) {
  if (reps < 1) reps = new_tokens <= 16 ? 7 : new_tokens <= 64 ? 3 : 1;
  result res;
  memset(&res, 0, sizeof res);
  drl_rollout_batch b;
  memset(&b, 0, sizeof b);
  double *times = malloc((size_t)reps * sizeof(double));
  if (!times) die("host memory");
  for (int i = 0; i < warmup + reps; ++i) {
    drl_rollout_params p = {GROUP, new_tokens, 1.0f, 0, 1.0f, EOS, 1234, (uint32_t)(i + 1), 0, 0, NULL, 0, NULL, NULL};
    CHECK(drl_device_sync(&m->dev), "sync");
    double t0 = bench_now();
    CHECK(drl_rollout_generate(ro, m, prompts, offsets, N_PROMPTS, &p, &b), "generate");
    CHECK(drl_device_sync(&m->dev), "sync");
    double t = bench_now() - t0;
    if (b.generated_tokens != (int64_t)b.rows * new_tokens) {
      fprintf(stderr, "bench_rollout: %lld tokens generated, expected %d x %d (EOS was sampled)\n",
              (long long)b.generated_tokens, b.rows, new_tokens);
      exit(1);
    }
    if (i >= warmup) times[i - warmup] = t;
  }
  double ent = 0;
  int64_t cnt = 0;
  for (size_t c = 0; c < (size_t)b.rows * b.T; ++c)
    if (b.mask[c]) {
      ent += b.entropy[c];
      ++cnt;
    }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  double med = times[(reps - 1) / 2];
  res.new_tokens = new_tokens;
  res.reps = reps;
  res.warmup = warmup;
  res.generated = b.generated_tokens;
  res.ms = 1e3 * med;
  res.tokens_per_s = (double)b.generated_tokens / med;
  res.ms_per_token_step = res.ms / new_tokens;
  res.mean_entropy = cnt ? ent / (double)cnt : 0.0;
  free(times);
  drl_rollout_batch_free(&b);
  return res;
}

typedef struct options {
  int warmup, reps, prompt_len, large, n_lengths, lengths[MAX_LENGTHS];
  const char *csv, *export_dir;
} options;

static int take_own_args(int *argc, char **argv, options *o) {
  int out = 1, bad = 0;
  for (int i = 1; i < *argc; ++i) {
    int has_value = i + 1 < *argc;
    if (strcmp(argv[i], "--warmup") == 0 && has_value) o->warmup = atoi(argv[++i]);
    else if (strcmp(argv[i], "--reps") == 0 && has_value) o->reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--csv") == 0 && has_value) o->csv = argv[++i];
    else if (strcmp(argv[i], "--prompt-len") == 0 && has_value) o->prompt_len = atoi(argv[++i]);
    else if (strcmp(argv[i], "--export") == 0 && has_value) o->export_dir = argv[++i];
    else if (strcmp(argv[i], "--large") == 0) o->large = 1;
    else if (strcmp(argv[i], "--lengths") == 0 && has_value) {
      o->n_lengths = 0;
      for (char *p = argv[++i]; *p && o->n_lengths < MAX_LENGTHS;) {
        o->lengths[o->n_lengths++] = (int)strtol(p, &p, 10);
        bad |= o->lengths[o->n_lengths - 1] < 1;
        if (*p == ',') ++p;
        else if (*p) bad = 1, p += strlen(p);
      }
    } else argv[out++] = argv[i];
  }
  *argc = out;
  return (bad || o->n_lengths < 1 || o->prompt_len < 1 || o->warmup < 0 || (o->reps != -1 && o->reps < 1)) ? 2 : 0;
}

int main(int argc, char **argv) {
  options o = {1, -1, 8, 0, 2, {16, 64}, NULL, NULL};
  if (take_own_args(&argc, argv, &o)) {
    fprintf(stderr, "bench_rollout: --warmup N (>= 0), --reps N (>= 1), --lengths A,B,... (>= 1), --prompt-len N\n");
    return 2;
  }
  bench_args args;
  if (bench_parse_args(argc, argv,
                       "bench_rollout [--warmup N] [--reps N] [--csv FILE] [--lengths A,B] [--prompt-len N] [--large] "
                       "[--export DIR]",
                       &args))
    return 2;
  drl_device dev;
  CHECK(drl_device_open(&dev, args.backend, 0), "device");

  const int PL = o.prompt_len;
  int longest = 0;
  for (int i = 0; i < o.n_lengths; ++i) longest = o.lengths[i] > longest ? o.lengths[i] : longest;
  const int T_max = PL + longest;
  drl_transformer_config cfg = {.vocab = 13, .d_model = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 4, .d_ff = 512,
                                .max_seq = T_max > 128 ? T_max : 128, .tied_embeddings = 1, .rope_theta = 10000.0f,
                                .init_std = 0.02f, .norm_eps = 1e-5f};
  if (o.large) cfg.d_model = 512, cfg.n_layers = 8, cfg.n_heads = cfg.n_kv_heads = 8, cfg.d_ff = 1536;
  drl_transformer m;
  /* Activations for the prefill of the N_PROMPTS prompts (the sampler's only training-style forward). */
  CHECK(drl_transformer_create(&m, &cfg, &dev, N_PROMPTS, T_max, 1234), "create");
  forbid_eos(&m);
  if (o.export_dir) {
    drl_hf_config hc;
    drl_hf_config_from_model(&cfg, &hc);
    hc.n_eos = 1;
    hc.eos_token_ids[0] = EOS;
    size_t bytes = (size_t)m.ps.layout.total * sizeof(float);
    float *host = malloc(bytes);
    if (!host) die("host memory");
    CHECK(drl_copy_to_host(&dev, host, m.ps.params, bytes), "copy parameters");
    CHECK(drl_hf_write(o.export_dir, &hc, &m.ps.layout, host, "F32", UINT64_C(1) << 40, NULL), "export");
    free(host);
  }
  drl_rollout ro;
  memset(&ro, 0, sizeof ro);
  CHECK(drl_rollout_create(&ro, &m, N_PROMPTS * GROUP, GROUP, PL, longest), "rollout create");

  /* Prompts of random digits (ids 0..9), every one PL tokens; with the default 8, shaped like the add task's
   * "ddd+ddd=" ('+' = 10, '=' = 11). */
  int32_t *prompts = malloc((size_t)N_PROMPTS * PL * sizeof(int32_t));
  int64_t offsets[N_PROMPTS + 1];
  if (!prompts) die("host memory");
  for (int i = 0; i < N_PROMPTS; ++i) {
    offsets[i] = (int64_t)i * PL;
    for (int t = 0; t < PL; ++t) {
      uint32_t d = drl_rng_u32(5, 0, drl_rng_tag(DRL_RNG_TEST, 50, 0), (uint64_t)(i * PL + t)) % 10u;
      prompts[i * PL + t] = PL == 8 && t == 3 ? 10 : PL == 8 && t == 7 ? 11 : (int32_t)d;
    }
  }
  offsets[N_PROMPTS] = (int64_t)N_PROMPTS * PL;

  int warmup = o.warmup;
  if (args.quick) warmup = warmup > 1 ? 1 : warmup;
  result res[MAX_LENGTHS];
  for (int i = 0; i < o.n_lengths; ++i)
    res[i] = run_length(&m, &ro, prompts, offsets, o.lengths[i], i == 0 ? warmup : 0, args.quick ? 1 : o.reps);

  char body[4096];
  int len = snprintf(body, sizeof body,
                     "drl_rollout_generate on a %.2fM-parameter policy (d_model %d, %d layers, %d heads, d_ff %d, "
                     "vocabulary 13): %d prompts of %d tokens x %d rollouts = %d rows, prefill once per "
                     "prompt, KV-cache decode, temperature 1 (full softmax, no top-k/top-p), log-prob and entropy of "
                     "every token recorded; EOS made unreachable so every row generates the full length. "
                     "%d CPU threads. Median call over the timed calls.\n\n"
                     "| new tokens | rows | calls (warm-up) | median ms/call | ms per decode step | generated "
                     "tokens/s | mean entropy (nats) |\n|---|---|---|---|---|---|---|\n",
                     (double)m.ps.layout.total / 1e6, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, N_PROMPTS, PL,
                     GROUP, N_PROMPTS * GROUP, drl_cpu_threads());
  FILE *csvf = NULL;
  if (o.csv && !(csvf = fopen(o.csv, "w"))) {
    perror(o.csv);
    return 1;
  }
  if (csvf) fprintf(csvf, "new_tokens,rows,prompt_len,warmup,reps,ms_per_call,tokens_per_s\n");
  for (int i = 0; i < o.n_lengths; ++i) {
    len += snprintf(body + len, sizeof body - (size_t)len, "| %d | %d | %d (%d) | %.2f | %.3f | %.0f | %.3f |\n",
                    res[i].new_tokens, N_PROMPTS * GROUP, res[i].reps, res[i].warmup, res[i].ms,
                    res[i].ms_per_token_step, res[i].tokens_per_s, res[i].mean_entropy);
    if (csvf)
      fprintf(csvf, "%d,%d,%d,%d,%d,%.4f,%.1f\n", res[i].new_tokens, N_PROMPTS * GROUP, PL, res[i].warmup,
              res[i].reps, res[i].ms, res[i].tokens_per_s);
  }
  if (csvf) fclose(csvf);
  int rc = bench_emit(&args, "Rollout throughput (drl_rollout_generate)", &dev, body);
  free(prompts);
  drl_rollout_free(&ro);
  drl_transformer_free(&m);
  drl_device_close(&dev);
  return rc;
}
