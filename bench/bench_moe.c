/* The MoE FFN (models/moe.h) against the dense SwiGLU FFN of equal active parameters, forward + backward of one
 * block's FFN: dense d_ff = K * d_expert, so each token multiplies through the same number of weights.
 *   C 128, dense F 512  vs  E 8 experts, top 2, F 256 (the default policy's width and moe defaults)
 *   C 256, dense F 1024 vs  E 16, top 2, F 512
 * for 512 and 4096 tokens. Reported: median ms of forward, backward and both, and the MoE / dense ratio; the MoE also
 * pays for routing, the sort into expert order, the gather and the weighted combine.
 * Options: --device cpu|cuda, --append FILE, --quick (fewer repetitions). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "kernels/gemm.h"
#include "kernels/rng_fill.h"
#include "kernels/swiglu.h"
#include "models/moe.h"

static void die(const char *what) {
  fprintf(stderr, "bench_moe: %s: %s\n", what, drl_last_error());
  exit(1);
}

#define CHECK(call, what)            \
  do {                               \
    if ((call) != DRL_OK) die(what); \
  } while (0)

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *device_random(const drl_device *d, int64_t n, float scale, uint32_t tag) {
  float *p = NULL;
  CHECK(drl_alloc(d, (void **)&p, (size_t)n * sizeof(float), "bench buffer"), "alloc");
  drl_rng_stream s = {99, tag, drl_rng_tag(DRL_RNG_TEST, 3, 0)};
  CHECK(drl_rng_fill(d, p, (uint64_t)n, s, 0, DRL_DIST_NORMAL), "fill");
  if (scale != 1.0f) {
    float *h = (float *)malloc((size_t)n * sizeof(float));
    CHECK(drl_copy_to_host(d, h, p, (size_t)n * sizeof(float)), "copy");
    for (int64_t i = 0; i < n; ++i) h[i] *= scale;
    CHECK(drl_copy_to_device(d, p, h, (size_t)n * sizeof(float)), "copy");
    CHECK(drl_device_sync(d), "sync");
    free(h);
  }
  return p;
}

typedef struct timing {
  double fwd, bwd;
} timing;

/* Median forward and backward seconds of reps runs. */
static timing median(double *f, double *b, int reps) {
  qsort(f, (size_t)reps, sizeof *f, cmp_double);
  qsort(b, (size_t)reps, sizeof *b, cmp_double);
  timing t = {f[reps / 2], b[reps / 2]};
  return t;
}

static timing time_dense(const drl_device *d, int C, int F, int R, int reps) {
  float *x = device_random(d, (int64_t)R * C, 1.0f, 1), *dout = device_random(d, (int64_t)R * C, 1.0f, 2);
  float *wg = device_random(d, (int64_t)F * C, 0.05f, 3), *wu = device_random(d, (int64_t)F * C, 0.05f, 4);
  float *wd = device_random(d, (int64_t)C * F, 0.05f, 5);
  float *g, *u, *h, *out, *dh, *dg, *du, *dx, *gwg, *gwu, *gwd;
  size_t rf = (size_t)R * F * sizeof(float), rc = (size_t)R * C * sizeof(float), fc = (size_t)F * C * sizeof(float);
  float **bufs[] = {&g, &u, &h, &dh, &dg, &du};
  for (int i = 0; i < 6; ++i) CHECK(drl_alloc(d, (void **)bufs[i], rf, "dense"), "alloc");
  CHECK(drl_alloc(d, (void **)&out, rc, "dense"), "alloc");
  CHECK(drl_alloc(d, (void **)&dx, rc, "dense"), "alloc");
  CHECK(drl_alloc(d, (void **)&gwg, fc, "dense"), "alloc");
  CHECK(drl_alloc(d, (void **)&gwu, fc, "dense"), "alloc");
  CHECK(drl_alloc(d, (void **)&gwd, fc, "dense"), "alloc");
  double *tf = (double *)malloc((size_t)reps * sizeof(double)), *tb = (double *)malloc((size_t)reps * sizeof(double));
  for (int r = -2; r < reps; ++r) {
    double t0 = bench_now();
    CHECK(drl_matmul_forward(d, g, x, wg, R, C, F, 0), "fwd");
    CHECK(drl_matmul_forward(d, u, x, wu, R, C, F, 0), "fwd");
    CHECK(drl_swiglu_forward(d, h, g, u, (int64_t)R * F), "fwd");
    CHECK(drl_matmul_forward(d, out, h, wd, R, F, C, 0), "fwd");
    CHECK(drl_device_sync(d), "sync");
    double t1 = bench_now();
    CHECK(drl_memset(d, dh, 0, rf), "bwd");
    CHECK(drl_matmul_backward(d, dh, gwd, dout, h, wd, R, F, C), "bwd");
    CHECK(drl_swiglu_backward(d, dg, du, dh, g, u, (int64_t)R * F), "bwd");
    CHECK(drl_memset(d, dx, 0, rc), "bwd");
    CHECK(drl_matmul_backward(d, dx, gwg, dg, x, wg, R, C, F), "bwd");
    CHECK(drl_matmul_backward(d, dx, gwu, du, x, wu, R, C, F), "bwd");
    CHECK(drl_device_sync(d), "sync");
    double t2 = bench_now();
    if (r >= 0) {
      tf[r] = t1 - t0;
      tb[r] = t2 - t1;
    }
  }
  timing t = median(tf, tb, reps);
  float *all[] = {x, dout, wg, wu, wd, g, u, h, out, dh, dg, du, dx, gwg, gwu, gwd};
  for (int i = 0; i < 16; ++i) drl_free(d, all[i]);
  free(tf);
  free(tb);
  return t;
}

static timing time_moe(const drl_device *d, const drl_moe_config *mc, int C, int R, int reps) {
  int E = mc->experts, F = mc->d_expert;
  float *x = device_random(d, (int64_t)R * C, 1.0f, 11), *dout = device_random(d, (int64_t)R * C, 1.0f, 12);
  drl_moe_weights w = {device_random(d, (int64_t)E * C, 0.05f, 13), device_random(d, (int64_t)E * F * C, 0.05f, 14),
                       device_random(d, (int64_t)E * F * C, 0.05f, 15),
                       device_random(d, (int64_t)E * C * F, 0.05f, 16), NULL, NULL, NULL};
  drl_moe_weights g;
  float *out, *dx;
  CHECK(drl_alloc(d, (void **)&g.router, (size_t)E * C * sizeof(float), "moe"), "alloc");
  CHECK(drl_alloc(d, (void **)&g.w_gate, (size_t)E * F * C * sizeof(float), "moe"), "alloc");
  CHECK(drl_alloc(d, (void **)&g.w_up, (size_t)E * F * C * sizeof(float), "moe"), "alloc");
  CHECK(drl_alloc(d, (void **)&g.w_down, (size_t)E * C * F * sizeof(float), "moe"), "alloc");
  g.shared_gate = g.shared_up = g.shared_down = NULL;
  CHECK(drl_alloc(d, (void **)&out, (size_t)R * C * sizeof(float), "moe"), "alloc");
  CHECK(drl_alloc(d, (void **)&dx, (size_t)R * C * sizeof(float), "moe"), "alloc");
  drl_moe_work wk;
  drl_moe_grad_work gw;
  void *wb = NULL, *gb = NULL;
  CHECK(drl_alloc(d, &wb, drl_moe_work_carve(d, mc, C, R, NULL, &wk), "moe work"), "alloc");
  drl_moe_work_carve(d, mc, C, R, wb, &wk);
  CHECK(drl_alloc(d, &gb, drl_moe_grad_work_carve(mc, C, R, NULL, &gw), "moe grad work"), "alloc");
  drl_moe_grad_work_carve(mc, C, R, gb, &gw);
  double *tf = (double *)malloc((size_t)reps * sizeof(double)), *tb = (double *)malloc((size_t)reps * sizeof(double));
  for (int r = -2; r < reps; ++r) {
    double t0 = bench_now();
    CHECK(drl_memset(d, out, 0, (size_t)R * C * sizeof(float)), "fwd");
    CHECK(drl_moe_forward(d, mc, C, &w, NULL, x, out, R, &wk), "moe forward");
    CHECK(drl_device_sync(d), "sync");
    double t1 = bench_now();
    CHECK(drl_memset(d, dx, 0, (size_t)R * C * sizeof(float)), "bwd");
    CHECK(drl_moe_backward(d, mc, C, &w, &g, x, dout, dx, R, &wk, &gw, NULL, NULL), "moe backward");
    CHECK(drl_device_sync(d), "sync");
    double t2 = bench_now();
    if (r >= 0) {
      tf[r] = t1 - t0;
      tb[r] = t2 - t1;
    }
  }
  timing t = median(tf, tb, reps);
  float *all[] = {x, dout, w.router, w.w_gate, w.w_up, w.w_down, g.router, g.w_gate, g.w_up, g.w_down, out, dx};
  for (int i = 0; i < 12; ++i) drl_free(d, all[i]);
  drl_free(d, wb);
  drl_free(d, gb);
  free(tf);
  free(tb);
  return t;
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_moe", &args)) return 2;
  drl_device dev;
  CHECK(drl_device_open(&dev, args.backend, 0), "device");
  int reps = args.quick ? 3 : 15;
  struct {
    int C, E, K, F;
  } shapes[] = {{128, 8, 2, 256}, {256, 16, 2, 512}};
  int tokens[] = {512, 4096};
  char body[8192];
  size_t at = 0;
  at += (size_t)snprintf(body + at, sizeof body - at,
                         "| C | tokens | dense F | experts x top-k x F | dense fwd+bwd ms | MoE fwd ms | MoE bwd ms | "
                         "MoE fwd+bwd ms | MoE / dense |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < 2; ++s)
    for (int ti = 0; ti < 2; ++ti) {
      int C = shapes[s].C, R = tokens[ti], Fd = shapes[s].K * shapes[s].F;
      drl_moe_config mc = {shapes[s].E, shapes[s].K, shapes[s].F, 0, 0, 1, 1.0f};
      timing dn = time_dense(&dev, C, Fd, R, reps), mo = time_moe(&dev, &mc, C, R, reps);
      double dense_ms = 1e3 * (dn.fwd + dn.bwd), moe_ms = 1e3 * (mo.fwd + mo.bwd);
      at += (size_t)snprintf(body + at, sizeof body - at, "| %d | %d | %d | %d x %d x %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                             C, R, Fd, shapes[s].E, shapes[s].K, shapes[s].F, dense_ms, 1e3 * mo.fwd, 1e3 * mo.bwd,
                             moe_ms, moe_ms / dense_ms);
    }
  int rc = bench_emit(&args, "MoE FFN against the dense FFN of equal active parameters (bench_moe)", &dev, body);
  drl_device_close(&dev);
  return rc;
}
