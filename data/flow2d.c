#include "flow2d.h"

#include <math.h>

#include "kernels/philox.h"

void drl_flow2d_mode(const drl_flow2d *t, int c, int m, float *xy) {
  double angle = 2.0 * 3.14159265358979323846 * ((double)m / t->modes + (double)c / ((double)t->modes * t->conditions));
  xy[0] = (float)(2.0 * cos(angle));
  xy[1] = (float)(2.0 * sin(angle));
}

void drl_flow2d_point(const drl_flow2d *t, uint64_t seed, uint64_t i, float *xy, int32_t *cond) {
  uint32_t tag = drl_rng_tag(DRL_RNG_DATA, DRL_UID_FLOW2D_POINTS, 0);
  int c = (int)(i % (uint64_t)t->conditions);
  int m = (int)(drl_rng_u32(seed, 0, tag, 4 * i) % (uint32_t)t->modes);
  float mu[2];
  drl_flow2d_mode(t, c, m, mu);
  /* Elements 4i + 2 and 4i + 3: a Box-Muller pair of the same block. */
  xy[0] = mu[0] + t->mode_std * drl_rng_normal(seed, 0, tag, 4 * i + 2);
  xy[1] = mu[1] + t->mode_std * drl_rng_normal(seed, 0, tag, 4 * i + 3);
  *cond = c;
}

float drl_flow2d_reward(const drl_flow2d *t, const float *xy, int c) {
  float mu[2];
  drl_flow2d_mode(t, c, c % t->modes, mu);
  double dx = (double)xy[0] - mu[0], dy = (double)xy[1] - mu[1];
  return (float)exp(-(dx * dx + dy * dy) / (2.0 * (double)t->reward_width * t->reward_width));
}
