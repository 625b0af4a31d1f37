/* Zeroth-order SPSA with shared seeds: every rank sends one byte per perturbation per step (research B.5).
 *
 * Step t on rank uid with G samples: contribution q = uid * G + j (j < G) evaluates its loss at theta + eps z_q and
 * theta - eps z_q, where z_q is the addressed Philox stream of kernels/spsa.h and the perturbed parameters are formed
 * in a scratch buffer (theta is never modified to evaluate a loss), and sends g_q = (l+ - l-) / (2 eps) as one LOG8
 * byte, stochastically rounded with the sender's own uniform (purpose DRL_RNG_ROUNDING, same q). The bytes of all
 * ranks are all-gathered; every rank, the sender included, applies the decoded values
 *     theta += c_q z_q,  c_q = (float)(-lr / S) * decode(byte_q),  S = contributions of the step,
 * in ascending q, one rounding each (drl_spsa_apply). Identical initial parameters, identical z bits, identical
 * decoded scalars and an identical order keep every replica bit for bit equal; a periodic hash comparison checks it.
 *
 * Everything of contribution q (its z, its rounding, the loss's batch) is keyed by q, so R ranks with G samples each
 * and one rank with R * G samples run the same steps bit for bit: the one-byte scheme is exactly n-SPSA with
 * n = R * G, up to the quantisation.
 *
 * Membership: each rank's record in the all-gather starts with a status byte (observer, active, joining), so every
 * rank agrees on the contributors of each step; a joining rank copies the parameters from the lowest active rank at
 * the end of the step it announces itself in, checks their hash, and contributes from the next step. */
#ifndef DRL_ENGINE_SPSA_H
#define DRL_ENGINE_SPSA_H

#include <stdint.h>

#include "distributed/comm.h"
#include "kernels/spsa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_spsa_codec { DRL_SPSA_LOG8 = 0, DRL_SPSA_FP32 = 1 } drl_spsa_codec;

typedef struct drl_spsa_config {
  uint64_t seed;       /* the run seed: key of every stream */
  float lr, eps;       /* eta and epsilon */
  int samples;         /* G: contributions per rank per step */
  drl_spsa_dist dist;  /* z: Rademacher or normal */
  drl_spsa_codec codec;
  int hash_every;      /* compare parameter hashes across ranks every N steps (0: never) */
} drl_spsa_config;

/* The loss at params (a device buffer laid out like theta) for contribution q of step `step`: the batch is the
 * caller's, but must depend only on (step, q), so any rank computes the same loss for the same q. */
typedef drl_status (*drl_spsa_loss_fn)(void *user, const float *params, uint32_t step, uint32_t q, double *loss);

typedef enum drl_spsa_status { DRL_SPSA_OBSERVER = 0, DRL_SPSA_ACTIVE = 1, DRL_SPSA_JOINING = 2 } drl_spsa_status;

typedef struct drl_spsa_stats {
  double loss;           /* mean of (l+ + l-) / 2 over this rank's contributions */
  double grad_abs;       /* mean |g| of this rank's contributions (before encoding) */
  int contributions;     /* S: contributions applied this step (all ranks) */
  int bad;               /* this rank's contributions whose loss was not finite (sent as 0) */
  int skipped;           /* some rank's contribution was not finite: none was applied, on every rank alike */
  int64_t payload_bytes; /* what this rank contributed to the step's all-gather, status byte excluded */
} drl_spsa_stats;

typedef struct drl_spsa {
  drl_spsa_config cfg;
  drl_comm *comm;           /* NULL: this process alone */
  drl_device dev;
  int64_t n;                /* parameters */
  float *scratch;           /* theta +- eps z, on dev */
  drl_spsa_status status;   /* this rank's membership */
  uint8_t *records;         /* all-gather receive buffer [ranks][record] */
  drl_spsa_contrib *contribs;
  uint64_t payload_total;   /* bytes this rank has contributed (status bytes excluded) */
  uint64_t hash_total;      /* bytes of hash comparisons */
} drl_spsa;

/* Sets up SPSA on parameters of n floats on dev for this rank of comm (active from the start). */
drl_status drl_spsa_create(drl_spsa *s, const drl_spsa_config *cfg, drl_comm *comm, const drl_device *dev, int64_t n);

/* Frees the scratch; safe on a zeroed one. */
void drl_spsa_free(drl_spsa *s);

/* This rank contributes nothing until drl_spsa_join (its parameters are not trusted). */
void drl_spsa_set_observer(drl_spsa *s);

/* Announces this rank in the next step: at its end the rank receives the parameters from the lowest active rank,
 * checks their hash, and is active from the step after. */
void drl_spsa_join(drl_spsa *s);

/* One step (collective): this rank's contributions when active, the all-gather, every contribution applied to theta
 * (device, n floats) in order, a joining rank's copy, and the hash comparison when step is a multiple of hash_every.
 * A step in which any rank's projected gradient is not finite applies no contribution at all (stats->skipped).
 * Divergent replicas are DRL_ERR_INTERNAL naming the step and the ranks. */
drl_status drl_spsa_step(drl_spsa *s, float *theta, uint32_t step, drl_spsa_loss_fn loss, void *user,
                         drl_spsa_stats *stats);

/* Compares a hash of theta over the active ranks (collective); a difference is DRL_ERR_INTERNAL naming the ranks. */
drl_status drl_spsa_check(drl_spsa *s, const float *theta, uint32_t step);

/* FNV-1a 64 of n floats' bytes (host). */
uint64_t drl_spsa_params_hash(const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* DRL_ENGINE_SPSA_H */
