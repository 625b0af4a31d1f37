/* Decode attention (one layer, one step) against its memory roofline: 128 rows in groups of 16 sharing a prompt, the
 * default policy's heads (H = KV = 4, D = 32), prompts of 16 and 64 columns, each row 16 to 1,024 columns of its
 * own. The bytes a step must read are the keys and values once per group for the prompt and once per row for the
 * rest; the roofline is those bytes at the bandwidth of a device copy of the same size, measured in the same run.
 * The same step with every row keeping its own prompt copy (the layout before sharing) is timed beside it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "kernels/attention_decode.h"
#include "kernels/rng_fill.h"

static void die(const char *what) {
  fprintf(stderr, "bench_decode: %s: %s\n", what, drl_last_error());
  exit(1);
}

typedef struct step {
  const drl_device *dev;
  drl_decode_kv kv;
  const int32_t *grp, *slot, *pos;
  float *q, *out, *scratch;
  int N, H, KV, D;
} step;

static double best_of(const drl_device *dev, int reps, drl_status (*f)(const void *), const void *x) {
  if (f(x) != DRL_OK || drl_device_sync(dev) != DRL_OK) die("warm-up");
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = bench_now();
    if (f(x) != DRL_OK || drl_device_sync(dev) != DRL_OK) die("run");
    double t = bench_now() - t0;
    if (t < best) best = t;
  }
  return best;
}

static drl_status run_step(const void *p) {
  const step *s = (const step *)p;
  return drl_attention_decode(s->dev, s->out, s->q, &s->kv, s->grp, s->slot, s->pos, s->N, s->H, s->KV, s->D,
                              s->scratch);
}

typedef struct copy {
  const drl_device *dev;
  void *dst;
  const void *src;
  size_t bytes;
} copy;

static drl_status run_copy(const void *p) {
  const copy *c = (const copy *)p;
  return drl_copy_on_device(c->dev, c->dst, c->src, c->bytes);
}

static float *dev_floats(const drl_device *dev, size_t n, uint32_t seed) {
  float *p = NULL;
  if (drl_alloc(dev, (void **)&p, n * sizeof(float), "bench buffer") != DRL_OK) die("alloc");
  drl_rng_stream s = {7, 0, drl_rng_tag(DRL_RNG_TEST, seed, 0)};
  if (drl_rng_fill(dev, p, n, s, 0, DRL_DIST_NORMAL) != DRL_OK) die("fill");
  return p;
}

static int32_t *dev_ints(const drl_device *dev, const int32_t *host, int n) {
  int32_t *p = NULL;
  if (drl_alloc(dev, (void **)&p, (size_t)n * sizeof(int32_t), "bench indices") != DRL_OK ||
      drl_copy_to_device(dev, p, host, (size_t)n * sizeof(int32_t)) != DRL_OK)
    die("indices");
  return p;
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_decode", &args)) return 2;
  drl_device dev;
  if (drl_device_open(&dev, args.backend, 0) != DRL_OK) die("device");
  const int R = 128, G = 16, H = 4, KV = 4, D = 32, kvd = KV * D, reps = args.quick ? 2 : 9;
  const int prompts[2] = {16, 64}, owns[4] = {16, 64, 256, 1024}, n_own = args.quick ? 2 : 4;
  const int P_cap = prompts[1], S_cap = owns[n_own - 1], n_groups = R / G;
  /* the shared layout, and the per-row layout (R groups) of the same sizes */
  float *kp = dev_floats(&dev, (size_t)R * P_cap * kvd, 1), *vp = dev_floats(&dev, (size_t)R * P_cap * kvd, 2);
  float *ks = dev_floats(&dev, (size_t)R * S_cap * kvd, 3), *vs = dev_floats(&dev, (size_t)R * S_cap * kvd, 4);
  float *q = dev_floats(&dev, (size_t)R * H * D, 5), *out = dev_floats(&dev, (size_t)R * H * D, 6);
  float *scratch = dev_floats(&dev, (size_t)drl_attention_decode_scratch_floats(R, H, P_cap + S_cap), 7);
  size_t copy_cap = (size_t)2 * ((size_t)R * P_cap + (size_t)R * S_cap) * kvd * sizeof(float);
  void *csrc = dev_floats(&dev, copy_cap / sizeof(float), 8), *cdst = dev_floats(&dev, copy_cap / sizeof(float), 9);
  int32_t *h_grp = malloc(R * sizeof(int32_t)), *h_row = malloc(R * sizeof(int32_t)), *h_pos = malloc(R * sizeof(int32_t));
  int32_t *h_rs = calloc(R, sizeof(int32_t));
  if (!h_grp || !h_row || !h_pos || !h_rs) die("host memory");
  for (int i = 0; i < R; ++i) {
    h_grp[i] = i / G;
    h_row[i] = i;
  }
  int32_t *grp = dev_ints(&dev, h_grp, R), *row = dev_ints(&dev, h_row, R), *rs = dev_ints(&dev, h_rs, R);
  char body[4096];
  size_t at = (size_t)snprintf(
      body, sizeof body,
      "%d rows in groups of %d, H = KV = %d, D = %d, fp32; one layer's decode attention for one new token per row. "
      "Bytes: keys and values read once per group for the prompt and once per row for the row's own columns. "
      "Copy: a device copy of that many bytes in the same run; roofline = bytes / copy bandwidth. Per-row copies: "
      "the same step when every row keeps its own prompt (the layout before sharing). Best of %d.\n\n"
      "| prompt | own columns | bytes | shared ms | GB/s | copy GB/s | x roofline | per-row copies ms | shared speed-up |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      R, G, KV, D, reps);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < n_own; ++b) {
      const int P = prompts[a], s = owns[b];
      for (int i = 0; i < R; ++i) h_pos[i] = P + s - 1;
      int32_t *pos = dev_ints(&dev, h_pos, R);
      step shared = {&dev, {kp, vp, ks, vs, rs, n_groups, P_cap, R, S_cap, P}, grp, row, pos, q, out, scratch, R, H, KV, D};
      step per_row = shared;
      per_row.kv.n_groups = R;
      per_row.grp = row;
      size_t bytes = (size_t)2 * ((size_t)n_groups * P + (size_t)R * s) * kvd * sizeof(float);
      copy cp = {&dev, cdst, csrc, bytes};
      double t_copy = best_of(&dev, reps, run_copy, &cp);
      double t_shared = best_of(&dev, reps, run_step, &shared);
      double t_rows = best_of(&dev, reps, run_step, &per_row);
      at += (size_t)snprintf(body + at, sizeof body - at, "| %d | %d | %.2f MB | %.3f | %.1f | %.1f | %.2f | %.3f | %.2f |\n",
                             P, s, bytes / 1e6, t_shared * 1e3, bytes / t_shared / 1e9, bytes / t_copy / 1e9,
                             t_shared / t_copy, t_rows * 1e3, t_rows / t_shared);
      drl_free(&dev, pos);
    }
  int rc = bench_emit(&args, "Decode attention against its memory roofline (bench_decode)", &dev, body);
  void *bufs[] = {kp, vp, ks, vs, q, out, scratch, csrc, cdst, grp, row, rs};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) drl_free(&dev, bufs[i]);
  free(h_grp);
  free(h_row);
  free(h_pos);
  free(h_rs);
  drl_device_close(&dev);
  return rc;
}
