/* Training throughput of the real model path: drl_transformer_forward, zero_grads, backward and drl_optim_step
 * (AdamW with global-norm clipping), on one fixed random batch, for two model sizes:
 *   small  ~1M parameters: d_model 128, 4 layers, 4 heads, d_ff 512, vocab 13, B 32 x T 16
 *   medium ~6M parameters: d_model 256, 6 layers, 8 heads, d_ff 1024, vocab 13, B 16 x T 64
 * Reported: ms/step of the median timed step (robust to a neighbour taking the cores for a moment), tokens/s from it,
 * that step's forward / backward / optimizer split, model FLOP/s and MFU against the library peak (a 1024^3 sgemm
 * timed in this run), and how much of a step the GEMMs take: every GEMM call of one step is replayed with the same
 * shapes, transposes and accumulation on scratch buffers and timed on its own.
 *
 * Model FLOPs per token (the convention of PaLM / llm.c, recomputation not counted):
 *   6 * N_mm + 6 * L * T * C
 * N_mm = the weights that take part in GEMMs (every layer matrix plus the V x C LM head, tied or not); 6 = forward (2)
 * + backward (4). Attention: QK^T and PV are 2 * T * C each per token and layer over the full square; causal attention
 * does half of it, times 3 for forward + backward, gives 6 * L * T * C.
 *
 * Extra options (besides --device, --append, --quick): --warmup N and --steps N (untimed and timed steps per size;
 * defaults 3 and 20 for small, 3 and 8 for medium), --csv FILE (one line per size, read by bench/side_by_side.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "kernels/gemm.h"
#include "kernels/rng_fill.h"
#include "engine/optim.h"
#include "models/transformer.h"

static void die(const char *what) {
  fprintf(stderr, "bench_train: %s: %s\n", what, drl_last_error());
  exit(1);
}

#define CHECK(call, what)                     \
  do {                                        \
    if ((call) != DRL_OK) die(what);          \
  } while (0)

typedef struct size_spec {
  const char *name;
  drl_transformer_config cfg;
  int B, T, steps;
} size_spec;

/* ---- the GEMMs of one training step, as models/transformer.c and kernels/lm_head.c issue them ---- */

typedef struct gemm_call {
  int ta, tb, M, N, K;
  float beta;
  int count;
} gemm_call;

#define MAX_GEMMS 64

static int add_gemm(gemm_call *g, int n, int ta, int tb, int M, int N, int K, float beta, int count) {
  if (n >= MAX_GEMMS || count <= 0) return n;
  gemm_call c = {ta, tb, M, N, K, beta, count};
  g[n] = c;
  return n + 1;
}

/* matmul_forward(rows, in -> out) and its backward (dinp += dout W; dweight += dout^T inp), count times each. */
static int add_linear(gemm_call *g, int n, int R, int in, int out, int accumulate, int count) {
  n = add_gemm(g, n, 0, 1, R, out, in, accumulate ? 1.0f : 0.0f, count);
  n = add_gemm(g, n, 0, 0, R, in, out, 1.0f, count);
  return add_gemm(g, n, 1, 0, out, in, R, 1.0f, count);
}

static int step_gemms(const drl_transformer *m, int B, int T, gemm_call *g) {
  const drl_transformer_config *c = &m->cfg;
  int R = B * T, C = c->d_model, F = c->d_ff, V = drl_transformer_vocab_used(c), L = c->n_layers;
  int D = drl_transformer_head_dim(c), HD = c->n_heads * D, KVD = c->n_kv_heads * D, n = 0;
  n = add_linear(g, n, R, C, HD, 0, L);   /* wq */
  n = add_linear(g, n, R, C, KVD, 0, 2 * L); /* wk, wv */
  n = add_linear(g, n, R, HD, C, 1, L);   /* wo, into the residual */
  n = add_linear(g, n, R, C, F, 0, 2 * L);  /* w_gate, w_up */
  n = add_linear(g, n, R, F, C, 1, L);    /* w_down, into the residual */
  /* LM head, in row chunks: forward logits; backward recomputes them, then dx = dlogits W and dW += dlogits^T x. */
  int chunk = m->lm_chunk_rows, full = R / chunk, rest = R % chunk;
  int sizes[2] = {chunk, rest}, counts[2] = {full, rest ? 1 : 0};
  for (int i = 0; i < 2; ++i) {
    n = add_gemm(g, n, 0, 1, sizes[i], V, C, 0.0f, 2 * counts[i]);
    n = add_gemm(g, n, 0, 0, sizes[i], C, V, 0.0f, counts[i]);
    n = add_gemm(g, n, 1, 0, V, C, sizes[i], 1.0f, counts[i]);
  }
  return n;
}

typedef struct gemm_bufs {
  float *a, *b, *c;
} gemm_bufs;

static void run_gemms(const drl_device *dev, const gemm_call *g, int n, gemm_bufs *buf) {
  for (int i = 0; i < n; ++i)
    for (int r = 0; r < g[i].count; ++r) {
      int lda = g[i].ta ? g[i].M : g[i].K, ldb = g[i].tb ? g[i].K : g[i].N;
      CHECK(drl_gemm(dev, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, 1.0f, buf->a, lda, buf->b, ldb, g[i].beta,
                     buf->c, g[i].N),
            "gemm");
    }
}

static double gemm_flops(const gemm_call *g, int n) {
  double f = 0;
  for (int i = 0; i < n; ++i) f += 2.0 * g[i].M * g[i].N * g[i].K * g[i].count;
  return f;
}

/* Best seconds of `reps` replays of the step's GEMMs (one untimed first). */
static double time_gemms(const drl_device *dev, const gemm_call *g, int n, gemm_bufs *buf, int reps) {
  run_gemms(dev, g, n, buf);
  CHECK(drl_device_sync(dev), "sync");
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = bench_now();
    run_gemms(dev, g, n, buf);
    CHECK(drl_device_sync(dev), "sync");
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  return best;
}

static double peak_gflops(const drl_device *dev, int reps) {
  const int n = 1024;
  gemm_bufs buf;
  float **p[3] = {&buf.a, &buf.b, &buf.c};
  for (int i = 0; i < 3; ++i) {
    CHECK(drl_alloc(dev, (void **)p[i], (size_t)n * n * sizeof(float), "peak gemm buffer"), "alloc");
    drl_rng_stream s = {7, 0, drl_rng_tag(DRL_RNG_TEST, 20 + (uint32_t)i, 0)};
    CHECK(drl_rng_fill(dev, *p[i], (uint64_t)n * n, s, 0, DRL_DIST_NORMAL), "fill");
  }
  gemm_call g = {0, 0, n, n, n, 0.0f, 1};
  double t = time_gemms(dev, &g, 1, &buf, reps);
  for (int i = 0; i < 3; ++i) drl_free(dev, *p[i]);
  return 2.0 * n * n * n / t / 1e9;
}

/* ---- one size ---- */

typedef struct result {
  double params, step_ms, fwd_ms, bwd_ms, opt_ms, tokens_per_s, model_gflops, mfu;
  double gemm_ms, gemm_gflops, first_loss, last_loss;
  int steps, warmup;
} result;

static result run_size(const drl_device *dev, const size_spec *sz, int warmup, int steps, int reps) {
  result res;
  memset(&res, 0, sizeof res);
  const drl_transformer_config *c = &sz->cfg;
  drl_transformer m;
  CHECK(drl_transformer_create(&m, c, dev, sz->B, sz->T, 1), "create");
  int R = sz->B * sz->T;
  int32_t *tokens = malloc((size_t)R * sizeof(int32_t)), *targets = malloc((size_t)R * sizeof(int32_t));
  float *dlogprob = malloc((size_t)R * sizeof(float)), *logprob = malloc((size_t)R * sizeof(float));
  if (!tokens || !targets || !dlogprob || !logprob) die("host memory");
  /* A language-modelling batch: random tokens, each position predicts the next, the last one is unscored. */
  for (int i = 0; i < R; ++i) tokens[i] = (int32_t)(drl_rng_u32(3, 0, drl_rng_tag(DRL_RNG_TEST, 30, 0), (uint64_t)i) %
                                                    (uint32_t)c->vocab);
  int scored = 0;
  for (int i = 0; i < R; ++i) {
    targets[i] = (i % sz->T) + 1 < sz->T ? tokens[i + 1] : -1;
    scored += targets[i] >= 0;
  }
  for (int i = 0; i < R; ++i) dlogprob[i] = targets[i] >= 0 ? -1.0f / (float)scored : 0.0f;

  drl_optim_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0};
  float norm = 0.0f;
  char bad[DRL_TENSOR_NAME_CAP];
  double *phase = malloc((size_t)steps * 3 * sizeof(double)); /* per timed step: forward, backward, optimizer */
  if (!phase) die("host memory");
  for (int s = 1; s <= warmup + steps; ++s) {
    double t0 = bench_now();
    CHECK(drl_transformer_forward(&m, tokens, targets, NULL, sz->B, sz->T, 1.0f, logprob, NULL), "forward");
    double t1 = bench_now();
    CHECK(drl_params_zero_grads(&m.ps), "zero_grads");
    CHECK(drl_transformer_backward(&m, dlogprob), "backward");
    CHECK(drl_device_sync(dev), "sync");
    double t2 = bench_now();
    hp.step = s;
    CHECK(drl_optim_step(NULL, &m.ps, &hp, 0.0, &norm, bad), "step"); /* the norm reduction returns to the host: synchronous */
    CHECK(drl_device_sync(dev), "sync");
    double t3 = bench_now();
    double loss = 0;
    for (int i = 0; i < R; ++i) loss -= targets[i] >= 0 ? logprob[i] : 0.0f;
    loss /= scored;
    if (s == warmup + 1) res.first_loss = loss;
    res.last_loss = loss;
    if (s > warmup) {
      double *p = phase + 3 * (s - warmup - 1);
      p[0] = t1 - t0;
      p[1] = t2 - t1;
      p[2] = t3 - t2;
    }
  }
  /* The median step (by total time) and its split: robust to another process taking the cores for a moment. */
  int *order = malloc((size_t)steps * sizeof(int));
  if (!order) die("host memory");
  for (int i = 0; i < steps; ++i) order[i] = i;
  for (int i = 1; i < steps; ++i) /* insertion sort by step total; steps is small */
    for (int j = i; j > 0; --j) {
      const double *a = phase + 3 * order[j - 1], *b = phase + 3 * order[j];
      if (a[0] + a[1] + a[2] <= b[0] + b[1] + b[2]) break;
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  const double *med = phase + 3 * order[(steps - 1) / 2];
  res.steps = steps;
  res.warmup = warmup;
  res.fwd_ms = 1e3 * med[0];
  res.bwd_ms = 1e3 * med[1];
  res.opt_ms = 1e3 * med[2];
  res.step_ms = res.fwd_ms + res.bwd_ms + res.opt_ms;
  free(order);
  free(phase);
  res.tokens_per_s = R / (res.step_ms / 1e3);
  res.params = (double)m.ps.layout.total;

  int L = c->n_layers, C = c->d_model, F = c->d_ff, D = drl_transformer_head_dim(c);
  int HD = c->n_heads * D, KVD = c->n_kv_heads * D;
  double n_mm = (double)L * (2.0 * C * HD + 2.0 * C * KVD + 3.0 * C * F) + (double)drl_transformer_vocab_used(c) * C;
  double flops_per_token = 6.0 * n_mm + 6.0 * L * sz->T * HD;
  res.model_gflops = flops_per_token * res.tokens_per_s / 1e9;

  /* The step's GEMMs on their own, on scratch buffers big enough for every shape. */
  gemm_call g[MAX_GEMMS];
  int ng = step_gemms(&m, sz->B, sz->T, g);
  int widest = F > C ? F : C;
  if (HD > widest) widest = HD;
  size_t big = (size_t)R * (size_t)widest;
  if ((size_t)widest * C > big) big = (size_t)widest * C;
  gemm_bufs buf;
  float **p[3] = {&buf.a, &buf.b, &buf.c};
  for (int i = 0; i < 3; ++i) {
    CHECK(drl_alloc(dev, (void **)p[i], big * sizeof(float), "gemm buffer"), "alloc");
    drl_rng_stream s = {7, 0, drl_rng_tag(DRL_RNG_TEST, 40 + (uint32_t)i, 0)};
    CHECK(drl_rng_fill(dev, *p[i], big, s, 0, DRL_DIST_NORMAL), "fill");
  }
  double tg = time_gemms(dev, g, ng, &buf, reps);
  res.gemm_ms = 1e3 * tg;
  res.gemm_gflops = gemm_flops(g, ng) / tg / 1e9;
  for (int i = 0; i < 3; ++i) drl_free(dev, *p[i]);

  free(tokens);
  free(targets);
  free(dlogprob);
  free(logprob);
  drl_transformer_free(&m);
  return res;
}

/* Takes --warmup, --steps and --csv out of argv (bench_parse_args knows only the common options). */
static int take_own_args(int *argc, char **argv, int *warmup, int *steps, const char **csv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    int has_value = i + 1 < *argc;
    if (strcmp(argv[i], "--warmup") == 0 && has_value) *warmup = atoi(argv[++i]);
    else if (strcmp(argv[i], "--steps") == 0 && has_value) *steps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--csv") == 0 && has_value) *csv = argv[++i];
    else argv[out++] = argv[i];
  }
  *argc = out;
  return (*warmup < 0 || (*steps != -1 && *steps < 1)) ? 2 : 0;
}

int main(int argc, char **argv) {
  int warmup = 3, steps = -1; /* -1: per-size defaults */
  const char *csv = NULL;
  if (take_own_args(&argc, argv, &warmup, &steps, &csv)) {
    fprintf(stderr, "bench_train: --warmup N (>= 0), --steps N (>= 1)\n");
    return 2;
  }
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_train [--warmup N] [--steps N] [--csv FILE]", &args)) return 2;
  drl_device dev;
  CHECK(drl_device_open(&dev, args.backend, 0), "device");
  int cuda = args.backend == DRL_BACKEND_CUDA;

  size_spec sizes[2] = {
      {"small", {13, 128, 4, 4, 4, 512, 16, 1, 10000.0f, 0.02f, 1e-5f, {0, 0, 0, 0, 0, 0, 0.0f}, 0, 0, 0, 0, {0, 0, 0, 0, 0}}, 32, 16, 20},
      {"medium", {13, 256, 6, 8, 8, 1024, 64, 1, 10000.0f, 0.02f, 1e-5f, {0, 0, 0, 0, 0, 0, 0.0f}, 0, 0, 0, 0, {0, 0, 0, 0, 0}}, 16, 64, 8},
  };
  if (args.quick) warmup = warmup > 1 ? 1 : warmup;
  int reps = args.quick ? 1 : 3;
  /* The peak is the best of several calls, measured before and after the sizes: a neighbour's burst on a shared
   * machine must not lower the yardstick (it would inflate MFU). */
  int peak_reps = args.quick ? 2 : 10;
  double peak = peak_gflops(&dev, peak_reps);

  result results[2];
  for (int i = 0; i < 2; ++i)
    results[i] = run_size(&dev, &sizes[i], warmup, steps > 0 ? steps : (args.quick ? 2 : sizes[i].steps), reps);
  double peak_end = peak_gflops(&dev, peak_reps);
  if (peak_end > peak) peak = peak_end;
  char body[8192];
  int len = snprintf(body, sizeof body,
                     "forward + zero_grads + backward + AdamW step (clip 1.0) through drl_transformer_*, one fixed "
                     "random batch, targets = next token; ms/step is the median timed step (tokens/s from it). "
                     "%d CPU threads. Library peak: drl_gemm 1024^3 at %.1f GFLOP/s (TF32 %s; best of %d calls "
                     "before and after the sizes, same run). Model FLOPs/token = 6 N_mm + 6 L T C (N_mm: weights in "
                     "GEMMs, LM head included; causal attention; LM-head recomputation not counted).\n\n"
                     "| model | params | B x T | steps (warm-up) | median ms/step | fwd / bwd / opt ms | tokens/s | "
                     "model GFLOP/s | MFU | GEMM ms/step (share) | GEMM GFLOP/s (of peak) | loss first -> last |\n"
                     "|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                     drl_cpu_threads(), peak, dev.allow_tf32 ? "on" : "off", peak_reps);
  FILE *csvf = NULL;
  if (csv && !(csvf = fopen(csv, "w"))) {
    perror(csv);
    return 1;
  }
  if (csvf) fprintf(csvf, "model,params,B,T,warmup,steps,ms_per_step,tokens_per_s,mfu\n");
  for (int i = 0; i < 2; ++i) {
    const size_spec *sz = &sizes[i];
    result r = results[i];
    r.mfu = r.model_gflops / peak;
    len += snprintf(body + len, sizeof body - (size_t)len,
                    "| %s | %.2fM | %d x %d | %d (%d) | %.2f | %.2f / %.2f / %.2f | %.0f | %.1f | %.1f%% | %.2f "
                    "(%.0f%%) | %.1f (%.0f%%) | %.3f -> %.3f |\n",
                    sz->name, r.params / 1e6, sz->B, sz->T, r.steps, r.warmup, r.step_ms, r.fwd_ms, r.bwd_ms,
                    r.opt_ms, r.tokens_per_s, r.model_gflops, 100.0 * r.mfu, r.gemm_ms, 100.0 * r.gemm_ms / r.step_ms,
                    r.gemm_gflops, 100.0 * r.gemm_gflops / peak, r.first_loss, r.last_loss);
    if (csvf)
      fprintf(csvf, "%s,%.0f,%d,%d,%d,%d,%.4f,%.1f,%.4f\n", sz->name, r.params, sz->B, sz->T, r.warmup, r.steps,
              r.step_ms, r.tokens_per_s, r.mfu);
  }
  if (csvf) fclose(csvf);
  len += snprintf(body + len, sizeof body - (size_t)len,
                  "\nGEMM columns: every GEMM call of one step (the layer projections forward, dinp and dweight; the "
                  "LM head's logits, recomputed logits, dx and dW) replayed alone with the same shapes; the share is "
                  "their time over the step's. %s\n",
                  cuda ? "Attention runs as batched cuBLAS GEMMs on the GPU and is not in the GEMM columns."
                       : "CPU attention, norms, SwiGLU, RoPE, the LM head's softmax and AdamW are the rest.");
  int rc = bench_emit(&args, "Training throughput (transformer, SFT step)", &dev, body);
  drl_device_close(&dev);
  return rc;
}
