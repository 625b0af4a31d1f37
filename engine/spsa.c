#include "spsa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/spsa_codec.h"
#include "kernels/nvtx.h"
#include "kernels/philox.h"

static int n_ranks(const drl_spsa *s) { return s->comm ? s->comm->size : 1; }

/* All-gather of equal records (a copy when alone). */
static drl_status gather(drl_spsa *s, const void *send, size_t bytes, void *recv) {
  if (s->comm) return drl_comm_allgather(s->comm, send, bytes, recv);
  memcpy(recv, send, bytes);
  return DRL_OK;
}
static int my_rank(const drl_spsa *s) { return s->comm ? s->comm->rank : 0; }
static size_t payload_size(const drl_spsa *s) {
  return (size_t)s->cfg.samples * (s->cfg.codec == DRL_SPSA_LOG8 ? 1 : sizeof(float));
}
/* A rank's record in the step's all-gather: its status byte (with BAD_FLAG when one of its projected gradients was not
 * finite), then its G encoded projected gradients. */
#define BAD_FLAG 0x80u
static size_t record_size(const drl_spsa *s) { return 1 + payload_size(s); }

drl_status drl_spsa_create(drl_spsa *s, const drl_spsa_config *cfg, drl_comm *comm, const drl_device *dev, int64_t n) {
  memset(s, 0, sizeof *s);
  if (cfg->samples < 1 || !(cfg->eps > 0.0f) || !(cfg->lr >= 0.0f))
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "spsa: samples %d must be >= 1, eps %g > 0 and lr %g >= 0", cfg->samples,
                    (double)cfg->eps, (double)cfg->lr);
  s->cfg = *cfg;
  s->comm = comm;
  s->dev = *dev;
  s->n = n;
  s->status = DRL_SPSA_ACTIVE;
  int R = n_ranks(s);
  if ((uint64_t)R * (uint64_t)cfg->samples > DRL_SPSA_MAX_Q)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "spsa: %d ranks x %d samples exceed %u contributions per step", R,
                    cfg->samples, DRL_SPSA_MAX_Q);
  s->records = (uint8_t *)malloc((size_t)R * record_size(s));
  s->contribs = (drl_spsa_contrib *)malloc((size_t)R * (size_t)cfg->samples * sizeof(drl_spsa_contrib));
  drl_status st = s->records && s->contribs ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory for SPSA records");
  if (st == DRL_OK) st = drl_alloc(dev, (void **)&s->scratch, (size_t)n * sizeof(float), "SPSA perturbed parameters");
  if (st != DRL_OK) drl_spsa_free(s);
  return st;
}

void drl_spsa_free(drl_spsa *s) {
  if (!s) return;
  drl_free(&s->dev, s->scratch);
  free(s->records);
  free(s->contribs);
  memset(s, 0, sizeof *s);
}

void drl_spsa_set_observer(drl_spsa *s) { s->status = DRL_SPSA_OBSERVER; }

void drl_spsa_join(drl_spsa *s) {
  if (s->status == DRL_SPSA_OBSERVER) s->status = DRL_SPSA_JOINING;
}

uint64_t drl_spsa_params_hash(const float *x, int64_t n) {
  const unsigned char *p = (const unsigned char *)x;
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < n * (int64_t)sizeof(float); ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

drl_status drl_spsa_check(drl_spsa *s, const float *theta, uint32_t step) {
  DRL_RANGE("spsa_hash");
  int R = n_ranks(s);
  float *host = (float *)malloc((size_t)(s->n ? s->n : 1) * sizeof(float));
  uint64_t *all = (uint64_t *)malloc((size_t)R * 2 * sizeof(uint64_t));
  drl_status st = host && all ? DRL_OK : DRL_FAIL(DRL_ERR_OOM, "out of memory hashing %lld parameters", (long long)s->n);
  uint64_t mine[2] = {(uint64_t)s->status, 0};
  if (st == DRL_OK) st = drl_copy_to_host(&s->dev, host, theta, (size_t)s->n * sizeof(float));
  if (st == DRL_OK) mine[1] = drl_spsa_params_hash(host, s->n);
  if (st == DRL_OK) st = gather(s, mine, sizeof mine, all);
  if (st == DRL_OK) s->hash_total += sizeof mine;
  int ref = -1;
  for (int r = 0; st == DRL_OK && r < R; ++r) {
    if (all[2 * r] != DRL_SPSA_ACTIVE) continue;
    if (ref < 0) {
      ref = r;
    } else if (all[2 * r + 1] != all[2 * ref + 1]) {
      st = DRL_FAIL(DRL_ERR_INTERNAL,
                    "SPSA replicas diverged at step %u: rank %d's parameter hash %016llx differs from rank %d's "
                    "%016llx",
                    step, r, (unsigned long long)all[2 * r + 1], ref, (unsigned long long)all[2 * ref + 1]);
    }
  }
  free(host);
  free(all);
  return st;
}

/* This rank's record: its status and, when active, its contributions' encoded projected gradients. */
static drl_status contribute(drl_spsa *s, const float *theta, uint32_t step, drl_spsa_loss_fn loss, void *user,
                             uint8_t *rec, drl_spsa_stats *stats) {
  const drl_spsa_config *c = &s->cfg;
  rec[0] = (uint8_t)s->status;
  memset(rec + 1, 0, payload_size(s));
  if (s->status != DRL_SPSA_ACTIVE) return DRL_OK;
  drl_spsa_stream zs = {c->seed, step, c->dist};
  double loss_sum = 0.0, g_sum = 0.0;
  for (int j = 0; j < c->samples; ++j) {
    uint32_t q = (uint32_t)my_rank(s) * (uint32_t)c->samples + (uint32_t)j;
    double lp = 0.0, lm = 0.0;
    DRL_TRY(drl_spsa_perturb(&s->dev, s->scratch, theta, s->n, 0, zs, q, c->eps));
    DRL_TRY(loss(user, s->scratch, step, q, &lp));
    DRL_TRY(drl_spsa_perturb(&s->dev, s->scratch, theta, s->n, 0, zs, q, -c->eps));
    DRL_TRY(loss(user, s->scratch, step, q, &lm));
    float g = (float)((lp - lm) / (2.0 * (double)c->eps));
    if (!isfinite(g)) {
      stats->bad++;
      rec[0] |= BAD_FLAG; /* the codec cannot carry it: every rank learns from the flag and skips the step alike */
      g = 0.0f;
    } else {
      loss_sum += 0.5 * (lp + lm);
      g_sum += fabs((double)g);
    }
    if (c->codec == DRL_SPSA_LOG8) {
      float u = drl_rng_uniform(c->seed, step, drl_rng_tag(DRL_RNG_ROUNDING, q >> 12, q & 0xFFFu), 0);
      rec[1 + j] = drl_spsa_codec_encode(g, u);
    } else {
      memcpy(rec + 1 + (size_t)j * sizeof(float), &g, sizeof g);
    }
  }
  int good = c->samples - stats->bad;
  stats->loss = good > 0 ? loss_sum / good : NAN;
  stats->grad_abs = good > 0 ? g_sum / good : 0.0;
  stats->payload_bytes = (int64_t)payload_size(s);
  return DRL_OK;
}

drl_status drl_spsa_step(drl_spsa *s, float *theta, uint32_t step, drl_spsa_loss_fn loss, void *user,
                         drl_spsa_stats *stats) {
  DRL_RANGE("spsa_step");
  drl_spsa_stats local;
  memset(&local, 0, sizeof local);
  int R = n_ranks(s), G = s->cfg.samples;
  size_t rs = record_size(s);
  uint8_t *mine = (uint8_t *)malloc(rs);
  if (!mine) return DRL_FAIL(DRL_ERR_OOM, "out of memory for an SPSA record");
  drl_status st = contribute(s, theta, step, loss, user, mine, &local);
  if (st == DRL_OK) {
    DRL_RANGE("spsa_all_gather");
    st = gather(s, mine, rs, s->records);
  }
  free(mine);
  DRL_TRY(st);
  s->payload_total += (uint64_t)local.payload_bytes;
  /* The contributions of the step, in ascending q, each coefficient rounded once and alike on every rank. */
  int active = 0, joining = 0, source = -1;
  for (int r = 0; r < R; ++r) {
    uint8_t status = s->records[(size_t)r * rs] & ~BAD_FLAG;
    if (status == DRL_SPSA_ACTIVE && source < 0) source = r;
    active += status == DRL_SPSA_ACTIVE;
    joining += status == DRL_SPSA_JOINING;
    local.skipped |= (s->records[(size_t)r * rs] & BAD_FLAG) != 0;
  }
  int S = active * G, count = 0;
  float scale = S > 0 ? (float)(-(double)s->cfg.lr / (double)S) : 0.0f;
  for (int r = 0; r < R && !local.skipped; ++r) { /* a step with a non-finite contribution applies none */
    const uint8_t *rec = s->records + (size_t)r * rs;
    if (rec[0] != DRL_SPSA_ACTIVE) continue;
    for (int j = 0; j < G; ++j) {
      float g;
      if (s->cfg.codec == DRL_SPSA_LOG8)
        g = drl_spsa_codec_decode(rec[1 + j]);
      else
        memcpy(&g, rec + 1 + (size_t)j * sizeof(float), sizeof g);
      if (g == 0.0f) continue; /* adds exactly nothing */
      drl_spsa_contrib ct = {(uint32_t)r * (uint32_t)G + (uint32_t)j, drl_fmul(scale, g)};
      s->contribs[count++] = ct;
    }
  }
  local.contributions = S;
  if (s->status == DRL_SPSA_ACTIVE && count > 0) {
    DRL_RANGE("spsa_update");
    drl_spsa_stream zs = {s->cfg.seed, step, s->cfg.dist};
    DRL_TRY(drl_spsa_apply(&s->dev, theta, s->n, 0, zs, s->contribs, count));
  }
  if (joining) {
    if (source < 0) return DRL_FAIL(DRL_ERR_INTERNAL, "SPSA step %u: a rank asks to join and none is active", step);
    DRL_RANGE("spsa_join");
    DRL_TRY(drl_comm_bcast_device(s->comm, &s->dev, theta, (size_t)s->n * sizeof(float), source));
    if (s->status == DRL_SPSA_JOINING) s->status = DRL_SPSA_ACTIVE;
    DRL_TRY(drl_spsa_check(s, theta, step));
  } else if (s->cfg.hash_every > 0 && step % (uint32_t)s->cfg.hash_every == 0) {
    DRL_TRY(drl_spsa_check(s, theta, step));
  }
  if (stats) *stats = local;
  return DRL_OK;
}
