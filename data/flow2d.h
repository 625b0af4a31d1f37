/* The flow2d task: low-dimensional data for the flow-matching policy. Condition c (of `conditions`) is a mixture of
 * `modes` isotropic Gaussians (std mode_std) on the circle of radius 2, mode m at angle
 * 2 pi (m / modes + c / (modes conditions)), each equally likely; condition c's reward region is a disc around its
 * target mode m = c % modes: r(x) = exp(-|x - mu|^2 / (2 reward_width^2)). The pretrained policy puts a third of its
 * mass on each mode (three modes), so RL has mass to move toward the rewarded one. */
#ifndef DRL_FLOW2D_H
#define DRL_FLOW2D_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_flow2d {
  int conditions, modes;
  float mode_std, reward_width;
} drl_flow2d;

/* The centre of mode m of condition c (xy [2]). */
void drl_flow2d_mode(const drl_flow2d *task, int c, int m, float *xy);

/* Point i of the training data (Philox data stream of seed): condition i % conditions, a uniform mode, Gaussian
 * noise. The same (seed, i) always gives the same point. */
void drl_flow2d_point(const drl_flow2d *task, uint64_t seed, uint64_t i, float *xy, int32_t *cond);

/* The reward of point xy under condition c, in (0, 1]. */
float drl_flow2d_reward(const drl_flow2d *task, const float *xy, int c);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FLOW2D_H */
