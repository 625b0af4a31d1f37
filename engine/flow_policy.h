/* The flow policy's plan, derived from the configuration (DESIGN §5-§6): its flow2d task and velocity network, the
 * tree sampler's parameters per flow_grpo iteration, its network evaluations, the rules its keys obey, and the
 * samples file of a trained policy. Its phases are engine/phase_flow.c. */
#ifndef DRL_FLOW_POLICY_H
#define DRL_FLOW_POLICY_H

#include <stdint.h>

#include "data/flow2d.h"
#include "engine/config.h"
#include "models/flow.h"
#include "samplers/sde_tree.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Nonzero when phase belongs to the flow policy. */
int drl_flow_policy_phase(drl_cfg_phase phase);

/* The flow2d task and the velocity network cfg describes. */
void drl_flow_policy_task(const drl_config *cfg, drl_flow2d *task);
void drl_flow_policy_network(const drl_config *cfg, drl_flow_config *fc);

/* The window start of 1-based flow_grpo iteration it: tree.window_start + (it - 1) / tree.window_every (0: fixed),
 * at most tree.steps - tree.depth. */
int drl_flow_policy_window(const drl_config *cfg, int it);

/* The sampler parameters of iteration it (tree: one root per condition and tree.branch children per node;
 * independent: tree.group_size roots and no branching). */
drl_sde_tree_params drl_flow_policy_tree_params(const drl_config *cfg, int it);

/* Network evaluations of flow_grpo iterations 1..it (sampling and tree.epochs training passes), by the formula of
 * research D.2.6: what the sampler counts, so a resumed run continues the count. */
int64_t drl_flow_policy_nfe_through(const drl_config *cfg, int it);

/* The points the network's activations must hold: a flow-matching batch, the largest tree layer, an eval chunk. */
int drl_flow_policy_rows(const drl_config *cfg);

/* Loads the flow policy of the checkpoint at ckpt_path (with the configuration stored in it) and writes n ODE samples
 * per condition, from the noise of seed, to out_path atomically:
 *   /samples/x float32 [C n, 2], /samples/cond int32 [C n], /samples/reward float32 [C n]
 *   /task/modes float32 [C, modes, 2], /task/target int32 [C]; root attributes reward_width, mode_std, mean_reward,
 *   steps, phase, checkpoint.
 * steps 0: the configuration's tree.steps. *mean_reward (may be NULL) receives the samples' mean reward. */
drl_status drl_flow_policy_sample_file(const char *ckpt_path, const char *out_path, int n, int steps, uint64_t seed,
                                double *mean_reward);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FLOW_POLICY_H */
