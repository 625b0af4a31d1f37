/* Kernel throughput at the sizes of a small transformer (4096 tokens, C = 128/512, F = 4C, V = 32):
 * GEMM GFLOP/s of the matmul forward/backward shapes against a 1024^3 sgemm (the library's peak, same run), and
 * GB/s of the memory-bound ops against a device copy of the same number of bytes (same run). */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/rmsnorm.h"
#include "kernels/rng_fill.h"
#include "kernels/swiglu.h"

typedef struct ctx {
  const drl_device *dev;
  int rows, C, F, V;
  int in, out;                /* the GEMM shape being timed */
  float *a, *b, *c, *d, *e;   /* activations: rows * max(F, 3C) floats each */
  float *w, *dw;              /* weights and their gradient */
  float *nw, *rstd, *scratch; /* RMSNorm weight, saved rstd, dweight scratch */
  int32_t *tok;
  void *escratch;             /* embedding backward scratch */
  void *csrc, *cdst;          /* copy reference */
  size_t copy_bytes;
} ctx;

typedef drl_status (*op_fn)(const ctx *x);

static void die(const char *what) {
  fprintf(stderr, "bench_kernels: %s: %s\n", what, drl_last_error());
  exit(1);
}

/* Best seconds per call over reps rounds of `inner` back-to-back calls (one sync per round, so GPU launch latency
 * overlaps the work as it does in a training step). One untimed call first. */
static double time_best(const ctx *x, op_fn f, int reps, int inner) {
  if (f(x) != DRL_OK || drl_device_sync(x->dev) != DRL_OK) die("warm-up");
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = bench_now();
    for (int i = 0; i < inner; ++i)
      if (f(x) != DRL_OK) die("op");
    if (drl_device_sync(x->dev) != DRL_OK) die("sync");
    double t = (bench_now() - t0) / inner;
    if (t < best) best = t;
  }
  return best;
}

static drl_status op_peak(const ctx *x) {
  return drl_gemm(x->dev, 0, 0, 1024, 1024, 1024, 1.0f, x->a, 1024, x->b, 1024, 0.0f, x->c, 1024);
}
static drl_status op_mm_fwd(const ctx *x) {
  return drl_matmul_forward(x->dev, x->c, x->a, x->w, x->rows, x->in, x->out, 0);
}
static drl_status op_mm_bwd(const ctx *x) {
  return drl_matmul_backward(x->dev, x->d, x->dw, x->c, x->a, x->w, x->rows, x->in, x->out);
}
static drl_status op_copy(const ctx *x) { return drl_copy_on_device(x->dev, x->cdst, x->csrc, x->copy_bytes); }
static drl_status op_add(const ctx *x) { return drl_add(x->dev, x->c, x->a, x->b, (int64_t)x->rows * x->C); }
static drl_status op_swiglu_fwd(const ctx *x) {
  return drl_swiglu_forward(x->dev, x->c, x->a, x->b, (int64_t)x->rows * x->F);
}
static drl_status op_swiglu_bwd(const ctx *x) {
  return drl_swiglu_backward(x->dev, x->d, x->e, x->c, x->a, x->b, (int64_t)x->rows * x->F);
}
static drl_status op_rms_fwd(const ctx *x) {
  return drl_rmsnorm_forward(x->dev, x->c, x->rstd, x->a, x->nw, x->rows, x->C, 1e-5f);
}
static drl_status op_rms_bwd(const ctx *x) {
  return drl_rmsnorm_backward(x->dev, x->d, x->dw, x->b, x->a, x->nw, x->rstd, x->rows, x->C, x->scratch);
}
static drl_status op_emb_fwd(const ctx *x) {
  return drl_embedding_forward(x->dev, x->c, x->tok, x->w, x->rows, x->C, x->V);
}
static drl_status op_emb_bwd(const ctx *x) {
  return drl_embedding_backward(x->dev, x->dw, x->b, x->tok, x->rows, x->C, x->V, x->escratch);
}

static void *alloc_or_die(const drl_device *dev, size_t bytes, const char *what) {
  void *p = NULL;
  if (drl_alloc(dev, &p, bytes, what) != DRL_OK) die("alloc");
  return p;
}

static void fill(const drl_device *dev, float *p, size_t n, uint32_t tag) {
  drl_rng_stream s = {7, 0, drl_rng_tag(DRL_RNG_TEST, tag, 0)};
  if (drl_rng_fill(dev, p, n, s, 0, DRL_DIST_NORMAL) != DRL_OK) die("fill");
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_kernels", &args)) return 2;
  drl_device dev;
  if (drl_device_open(&dev, args.backend, 0) != DRL_OK) die("device");
  int cuda = args.backend == DRL_BACKEND_CUDA;
  const int rows = args.quick ? 512 : 4096, V = 32;
  const int Cs[2] = {128, 512};
  int reps = args.quick ? 1 : (cuda ? 5 : 3), inner = cuda ? 20 : 1;

  /* Buffers sized for the largest configuration, reused by every op. */
  const int Cmax = 512, Fmax = 4 * Cmax;
  size_t act = (size_t)rows * Fmax; /* >= rows * 3C and >= 1024^2 */
  if (act < 1024 * 1024) act = 1024 * 1024;
  size_t wsz = (size_t)Fmax * Cmax;
  ctx x = {0};
  x.dev = &dev;
  x.rows = rows;
  x.V = V;
  float **acts[5] = {&x.a, &x.b, &x.c, &x.d, &x.e};
  for (int i = 0; i < 5; ++i) {
    *acts[i] = alloc_or_die(&dev, act * 4, "activation");
    fill(&dev, *acts[i], act, (uint32_t)i);
  }
  x.w = alloc_or_die(&dev, wsz * 4, "weight");
  x.dw = alloc_or_die(&dev, wsz * 4, "weight gradient");
  x.nw = alloc_or_die(&dev, (size_t)Cmax * 4, "norm weight");
  x.rstd = alloc_or_die(&dev, (size_t)rows * 4, "rstd");
  x.scratch = alloc_or_die(&dev, (size_t)drl_rmsnorm_scratch_floats(&dev, rows, Cmax) * 4, "rmsnorm scratch");
  int64_t eb = drl_embedding_scratch_bytes(&dev, rows, Cmax);
  if (eb < 0) die("embedding scratch size");
  x.escratch = eb ? alloc_or_die(&dev, (size_t)eb, "embedding scratch") : NULL;
  fill(&dev, x.w, wsz, 10);
  fill(&dev, x.nw, Cmax, 11);
  int32_t *tok_host = malloc((size_t)rows * sizeof(int32_t));
  if (!tok_host) return 1;
  for (int n = 0; n < rows; ++n) tok_host[n] = (int32_t)(drl_rng_u32(7, 0, 12, (uint64_t)n) % (uint32_t)V);
  x.tok = alloc_or_die(&dev, (size_t)rows * 4, "tokens");
  if (drl_copy_to_device(&dev, x.tok, tok_host, (size_t)rows * 4) != DRL_OK) die("tokens");
  /* The copy reference moves as many bytes as the largest op (SwiGLU backward: 5 streams of rows * F). */
  size_t copy_max = (size_t)5 * rows * Fmax * 4 / 2;
  x.csrc = alloc_or_die(&dev, copy_max, "copy source");
  x.cdst = alloc_or_die(&dev, copy_max, "copy destination");
  if (drl_device_sync(&dev) != DRL_OK) die("setup");

  double peak = 2.0 * 1024 * 1024 * 1024 / time_best(&x, op_peak, reps, inner) / 1e9;
  char body[8192];
  int len = snprintf(body, sizeof body,
                     "%d tokens, F = 4C, V = %d. Library peak: drl_gemm 1024x1024x1024 at %.1f GFLOP/s "
                     "(TF32 %s). GEMM backward = dinp + dweight (2x the forward FLOPs).\n\n"
                     "| C | GEMM | in -> out | fwd GFLOP/s | fwd / peak | bwd GFLOP/s | bwd / peak |\n"
                     "|---|---|---|---|---|---|---|\n",
                     rows, V, peak, dev.allow_tf32 ? "on" : "off");
  for (int ci = 0; ci < 2; ++ci) {
    int C = Cs[ci], F = 4 * C;
    struct { const char *name; int in, out; } shapes[4] = {
        {"qkv", C, 3 * C}, {"attn out", C, C}, {"ffn gate / up", C, F}, {"ffn down", F, C}};
    for (int s = 0; s < 4; ++s) {
      x.in = shapes[s].in;
      x.out = shapes[s].out;
      double flops = 2.0 * rows * x.in * x.out;
      double f = flops / time_best(&x, op_mm_fwd, reps, inner) / 1e9;
      double b = 2.0 * flops / time_best(&x, op_mm_bwd, reps, inner) / 1e9;
      len += snprintf(body + len, sizeof body - (size_t)len, "| %d | %s | %d -> %d | %.1f | %.0f%% | %.1f | %.0f%% |\n",
                      C, shapes[s].name, x.in, x.out, f, 100.0 * f / peak, b, 100.0 * b / peak);
    }
  }
  len += snprintf(body + len, sizeof body - (size_t)len,
                  "\nBytes = compulsory reads + writes. Reference: drl_copy_on_device of half those bytes "
                  "(read + write = the same traffic), timed in this run.\n\n"
                  "| C | op | elements | MB | GB/s | copy GB/s | vs copy |\n|---|---|---|---|---|---|---|\n");
  for (int ci = 0; ci < 2; ++ci) {
    x.C = Cs[ci];
    x.F = 4 * x.C;
    double nc = (double)rows * x.C, nf = (double)rows * x.F, table = (double)V * x.C * 4;
    struct { const char *name; op_fn f; double elems, bytes; } ops[7] = {
        {"add", op_add, nc, 3 * nc * 4},
        {"swiglu fwd", op_swiglu_fwd, nf, 3 * nf * 4},
        {"swiglu bwd", op_swiglu_bwd, nf, 5 * nf * 4},
        {"rmsnorm fwd", op_rms_fwd, nc, 2 * nc * 4 + rows * 4.0},
        {"rmsnorm bwd", op_rms_bwd, nc, 4 * nc * 4 + rows * 4.0},
        {"embedding fwd", op_emb_fwd, nc, 2 * nc * 4 + rows * 4.0},
        {"embedding bwd", op_emb_bwd, nc, nc * 4 + 2 * table + rows * 4.0}};
    for (int o = 0; o < 7; ++o) {
      double t = time_best(&x, ops[o].f, reps, inner);
      x.copy_bytes = (size_t)(ops[o].bytes / 2);
      double tc = time_best(&x, op_copy, reps, inner);
      double gbs = ops[o].bytes / t / 1e9, cgbs = ops[o].bytes / tc / 1e9;
      len += snprintf(body + len, sizeof body - (size_t)len, "| %d | %s | %.0f | %.1f | %.1f | %.1f | %.0f%% |\n", x.C,
                      ops[o].name, ops[o].elems, ops[o].bytes / 1e6, gbs, cgbs, 100.0 * gbs / cgbs);
    }
  }

  for (int i = 0; i < 5; ++i) drl_free(&dev, *acts[i]);
  drl_free(&dev, x.w);
  drl_free(&dev, x.dw);
  drl_free(&dev, x.nw);
  drl_free(&dev, x.rstd);
  drl_free(&dev, x.scratch);
  drl_free(&dev, x.escratch);
  drl_free(&dev, x.tok);
  drl_free(&dev, x.csrc);
  drl_free(&dev, x.cdst);
  free(tok_host);
  int rc = bench_emit(&args, "Kernels at small-transformer sizes", &dev, body);
  drl_device_close(&dev);
  return rc;
}
