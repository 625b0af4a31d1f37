/* Run configuration: YAML loaded into plain C structs.
 *
 * Every key is declared exactly once, in the DRL_CONFIG_KEYS_<section> tables below. From that one line come the
 * struct member, the loader's entry, the default (the embedded default YAML is assembled from the tables), the
 * range, the help text, the --set parser and the printer. Adding a key is one line in one table. The code is in
 * engine/config_*.c, one file per concern (engine/config_internal.h lists them). */
#ifndef DRL_CONFIG_H
#define DRL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/device.h"

#include <dynrl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Capacity of every string value, NUL included (paths: longer ones are rejected with a message). */
#define DRL_CONFIG_STR_CAP 1024

/* ---- enumerations: V(C enumerator, YAML spelling) ---- */
#define DRL_CFG_ENUM_device(V) V(DRL_CFG_DEVICE_AUTO, "auto") V(DRL_CFG_DEVICE_CPU, "cpu") V(DRL_CFG_DEVICE_CUDA, "cuda")
#define DRL_CFG_ENUM_log_level(V) \
  V(DRL_CFG_LOG_ERROR, "error") V(DRL_CFG_LOG_WARN, "warn") V(DRL_CFG_LOG_INFO, "info") V(DRL_CFG_LOG_DEBUG, "debug")
#define DRL_CFG_ENUM_ffn(V) V(DRL_CFG_FFN_DENSE, "dense") V(DRL_CFG_FFN_MOE, "moe")
#define DRL_CFG_ENUM_task(V) V(DRL_CFG_TASK_ADD, "add") V(DRL_CFG_TASK_SORT, "sort") V(DRL_CFG_TASK_KEYFORK, "keyfork")
#define DRL_CFG_ENUM_optimizer(V) V(DRL_CFG_OPTIM_ADAMW, "adamw") V(DRL_CFG_OPTIM_SPSA, "spsa")
#define DRL_CFG_ENUM_lr_schedule(V) V(DRL_CFG_LR_COSINE, "cosine") V(DRL_CFG_LR_CONSTANT, "constant")
#define DRL_CFG_ENUM_phase(V) \
  V(DRL_CFG_PHASE_SFT, "sft") V(DRL_CFG_PHASE_GRPO, "grpo") V(DRL_CFG_PHASE_FLOW_PRETRAIN, "flow_pretrain") \
  V(DRL_CFG_PHASE_FLOW_GRPO, "flow_grpo")
#define DRL_CFG_ENUM_loss_agg(V)                                                                   \
  V(DRL_CFG_AGG_TOKEN_MEAN, "token_mean") V(DRL_CFG_AGG_SEQ_MEAN_TOKEN_MEAN, "seq_mean_token_mean") \
  V(DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM, "seq_mean_token_sum") V(DRL_CFG_AGG_SEQ_MEAN_TOKEN_SUM_NORM, "seq_mean_token_sum_norm") \
  V(DRL_CFG_AGG_DR_GRPO_NORM, "dr_grpo_norm")
#define DRL_CFG_ENUM_reward(V) V(DRL_CFG_REWARD_EXACT, "exact") V(DRL_CFG_REWARD_PARTIAL, "partial")
#define DRL_CFG_ENUM_sampling(V) V(DRL_CFG_SAMPLING_NONE, "none") V(DRL_CFG_SAMPLING_D3S, "d3s") V(DRL_CFG_SAMPLING_PODS, "pods")
#define DRL_CFG_ENUM_scope(V) V(DRL_CFG_SCOPE_CROSS, "cross") V(DRL_CFG_SCOPE_INTRA, "intra")
#define DRL_CFG_ENUM_token_scope(V) V(DRL_CFG_TOKENS_BATCH, "batch") V(DRL_CFG_TOKENS_SEQUENCE, "sequence")
#define DRL_CFG_ENUM_perturbation(V) V(DRL_CFG_PERTURB_RADEMACHER, "rademacher") V(DRL_CFG_PERTURB_NORMAL, "normal")
#define DRL_CFG_ENUM_codec(V) V(DRL_CFG_CODEC_LOG8, "log8") V(DRL_CFG_CODEC_FP32, "fp32")
#define DRL_CFG_ENUM_balance(V) \
  V(DRL_CFG_BALANCE_AUX_FREE, "aux_free") V(DRL_CFG_BALANCE_AUX_LOSS, "aux_loss") V(DRL_CFG_BALANCE_NONE, "none")
#define DRL_CFG_ENUM_bias_rule(V) V(DRL_CFG_BIAS_SIGN, "sign") V(DRL_CFG_BIAS_PROPORTIONAL, "proportional")
#define DRL_CFG_ENUM_tree_sampling(V) V(DRL_CFG_TREE_TREE, "tree") V(DRL_CFG_TREE_INDEPENDENT, "independent")
#define DRL_CFG_ENUM_tree_advantage(V) \
  V(DRL_CFG_TADV_SUBTREE, "subtree") V(DRL_CFG_TADV_DEPTH, "depth") V(DRL_CFG_TADV_SIBLING, "sibling")
#define DRL_CFG_ENUM_logprob(V) V(DRL_CFG_LOGPROB_MEAN, "mean") V(DRL_CFG_LOGPROB_SUM, "sum")
#define DRL_CFG_ENUM_policy_loss(V) V(DRL_CFG_LOSS_GRPO, "grpo") V(DRL_CFG_LOSS_GSPO, "gspo")

/* Every enumeration above, once: each gets `drl_cfg_<e>`, DRL_CFG_COUNT_<e> and a list type `drl_cfg_<e>_list`. */
#define DRL_CFG_ENUMS(E) \
  E(device) E(log_level) E(ffn) E(task) E(optimizer) E(lr_schedule) E(phase) E(loss_agg) E(reward) E(sampling) \
  E(scope) E(token_scope) E(perturbation) E(codec) E(balance) E(bias_rule) E(tree_sampling) E(tree_advantage) \
  E(logprob) E(policy_loss)

/* ---- sections: S(name, help) ---- */
#define DRL_CONFIG_SECTIONS(S)                                                        \
  S(run, "where and how the process runs")                                            \
  S(model, "transformer policy")                                                      \
  S(moe, "mixture-of-experts FFN (model.ffn: moe) and its load balancing")           \
  S(data, "prompts: a dataset file or a built-in task")                               \
  S(optim, "optimizer and learning-rate schedule")                                    \
  S(trainer, "what runs, in which order, and how often it evaluates and checkpoints") \
  S(sft, "supervised warm start (cross-entropy on response tokens)")                  \
  S(grpo, "group-relative policy optimisation")                                       \
  S(d3s, "dynamic dual-level down-sampling of rollouts and tokens (D3S), or PODS")    \
  S(dist, "data parallelism across the ranks of an mpirun / srun job")                \
  S(spsa, "zeroth-order SPSA updates with shared seeds (optim.name: spsa)")           \
  S(flow, "the flow-matching policy and its flow2d task (phases flow_pretrain, flow_grpo)") \
  S(tree, "tree-structured SDE sampling and GRPO for the flow policy (Dynamic-TreeRPO)")

/* ---- keys: X(section, key, type, default written as YAML, one-line help) ----
 * Types (ranges inclusive unless named otherwise):
 *   U64            unsigned 64-bit integer          INT(min, max)      int in [min, max]
 *   REAL(min, max) double in [min, max]             REAL_GT(min, max)  double in (min, max]
 *   REAL_LT(min, max) double in [min, max)          BOOL               true / false
 *   STR(min_len)   string of DRL_CONFIG_STR_CAP     ENUM(e)            one of DRL_CFG_ENUM_<e>
 *   LIST(e)        ordered list of DRL_CFG_ENUM_<e>, at least one, no repeats
 * Defaults are written the way drl_config_to_yaml prints them (a test holds the two equal): floats carry a '.'
 * (0.001, 1.0e-05, 10000.0) so every YAML reader sees a float. */
#define DRL_CONFIG_KEYS_run(X)                                                                          \
  X(run, seed, U64, "1234", "key of every random stream: same seed and config give the same run")      \
  X(run, out_dir, STR(1), "run", "directory for checkpoints, metrics and logs")                       \
  X(run, device, ENUM(device), "auto", "compute backend: auto (cuda when a GPU is visible, else cpu), cpu or cuda") \
  X(run, device_index, INT(0, 255), "0", "CUDA device ordinal (ignored on cpu)")                       \
  X(run, threads, INT(0, 1024), "0", "CPU threads (OpenMP); 0 = all cores")                            \
  X(run, log_every, INT(1, 1000000000), "10", "print a progress line every N steps")                   \
  X(run, quiet, BOOL, "false", "print only warnings and errors")                                       \
  X(run, progress, BOOL, "true", "redraw a progress bar on a terminal (one process only); false: a line every log_every steps") \
  X(run, log_level, ENUM(log_level), "info", "most detailed messages printed: error, warn, info, debug")

#define DRL_CONFIG_KEYS_model(X)                                                                             \
  X(model, vocab_size, INT(0, 1048576), "0", "vocabulary size; 0 = the dataset's")                          \
  X(model, d_model, INT(1, 65536), "128", "width of the residual stream")                                   \
  X(model, n_layers, INT(1, 1024), "4", "transformer blocks")                                               \
  X(model, n_heads, INT(1, 1024), "4", "query heads; must divide d_model, head size must be even (RoPE)")   \
  X(model, n_kv_heads, INT(1, 1024), "4", "key/value heads (GQA); must divide n_heads")                     \
  X(model, d_ff, INT(1, 1048576), "512", "hidden width of the SwiGLU feed-forward")                         \
  X(model, max_seq, INT(1, 1048576), "64", "longest sequence, prompt plus response, in tokens")             \
  X(model, tied_embeddings, BOOL, "true", "the LM head shares the token embedding matrix")                  \
  X(model, ffn, ENUM(ffn), "dense", "feed-forward block: dense (SwiGLU) or moe (mixture of experts)")       \
  X(model, rope_theta, REAL(1, 1e12), "10000.0", "RoPE base frequency")                                     \
  X(model, init_std, REAL(0, 1), "0.02", "standard deviation of the normal initialisation of weights")      \
  X(model, norm_eps, REAL_GT(0, 1), "1.0e-05", "epsilon inside RMSNorm")

#define DRL_CONFIG_KEYS_moe(X)                                                                                   \
  X(moe, experts, INT(1, 256), "8", "routed experts per MoE block (E)")                                         \
  X(moe, top_k, INT(1, 256), "2", "experts each token is routed to (K)")                                        \
  X(moe, d_expert, INT(0, 1048576), "0", "hidden width of an expert's SwiGLU; 0 = model.d_ff / top_k (the dense FFN's active size)") \
  X(moe, shared_d_ff, INT(0, 1048576), "0", "hidden width of a shared expert every token also passes; 0 = none") \
  X(moe, first_layer, INT(0, 1024), "0", "blocks before this one keep the dense FFN")                            \
  X(moe, normalize, BOOL, "true", "gates are the selected sigmoid scores divided by their sum")                \
  X(moe, route_scale, REAL_GT(0, 100), "1.0", "factor on the gates")                                             \
  X(moe, balance, ENUM(balance), "aux_free", "load balancing: aux_free (a bias on the selection), aux_loss (Switch/GShard), none") \
  X(moe, bias_rate, REAL(0, 1), "0.001", "aux_free: bias step u per optimizer step")                           \
  X(moe, bias_rule, ENUM(bias_rule), "sign", "aux_free: b += u sign(mean - count), or proportional u (mean - count) / mean") \
  X(moe, bias_center, BOOL, "false", "aux_free: keep every bias update zero-mean")                              \
  X(moe, freeze_after, INT(0, 1000000000), "0", "aux_free: no bias updates after this optimizer step; 0 = never") \
  X(moe, bias_decay, INT(0, 1000000000), "0", "aux_free: step u t0 / (t0 + t) at optimizer step t with t0 = this; 0 = constant u") \
  X(moe, rl_bias_rate, REAL(0, 1), "0.0", "aux_free: bias step during grpo phases; 0 keeps the bias fixed in RL") \
  X(moe, aux_alpha, REAL(0, 10), "0.001", "aux_loss: weight alpha of alpha E sum_i f_i P_i per MoE block")

#define DRL_CONFIG_KEYS_data(X)                                                                                 \
  X(data, task, ENUM(task), "sort", "built-in task: add (addition), sort (sort digits), keyfork (few decisive tokens)") \
  X(data, path, STR(0), "\"\"", "dataset file (HDF5); empty = generate from the task")                          \
  X(data, n_train, INT(1, 1000000000), "20000", "training prompts")                                            \
  X(data, n_eval, INT(0, 1000000000), "256", "held-out evaluation prompts; 0 = none")                          \
  X(data, size, INT(0, 4096), "0", "task size (digits for add, length for sort); 0 = the task's default")

#define DRL_CONFIG_KEYS_optim(X)                                                                                \
  X(optim, name, ENUM(optimizer), "adamw", "optimizer: adamw, or spsa (zeroth-order)")                         \
  X(optim, lr, REAL(0, 10), "0.002", "peak learning rate")                                                     \
  X(optim, lr_schedule, ENUM(lr_schedule), "cosine", "after warmup: cosine decay to min_lr_ratio * lr, or constant") \
  X(optim, warmup_steps, INT(0, 1000000000), "50", "steps of linear warmup from 0 to lr")                       \
  X(optim, min_lr_ratio, REAL(0, 1), "0.1", "final learning rate of the cosine schedule, as a fraction of lr") \
  X(optim, beta1, REAL_LT(0, 1), "0.9", "AdamW decay of the first moment")                                     \
  X(optim, beta2, REAL_LT(0, 1), "0.95", "AdamW decay of the second moment")                                   \
  X(optim, eps, REAL_GT(0, 1), "1.0e-08", "AdamW epsilon in the denominator")                                  \
  X(optim, weight_decay, REAL(0, 10), "0.0", "decoupled weight decay (AdamW)")                                 \
  X(optim, grad_clip, REAL(0, 1e9), "1.0", "clip the global gradient norm to this; 0 = off")                   \
  X(optim, tf32, BOOL, "false", "allow TF32 GEMMs on the GPU (faster, about 1e-3 relative error)")

#define DRL_CONFIG_KEYS_trainer(X)                                                                          \
  X(trainer, phases, LIST(phase), "[sft, grpo]", "phases run in this order: sft, grpo (token policy) or flow_pretrain, flow_grpo (flow policy)")                          \
  X(trainer, eval_every, INT(0, 1000000000), "100", "evaluate every N steps; 0 = never")                   \
  X(trainer, ckpt_every, INT(0, 1000000000), "500", "write a checkpoint every N steps; 0 = never")         \
  X(trainer, resume, BOOL, "false", "continue from the checkpoint in out_dir")                             \
  X(trainer, force, BOOL, "false", "start over in an out_dir that already holds a run (its files are replaced)") \
  X(trainer, init_from, STR(0), "\"\"", "start from this checkpoint, policy file or Hugging Face directory (a pretrained " \
    "policy brings its architecture); fresh optimizer; \"\" = seeded init") \
  X(trainer, stop_after, INT(0, 1000000000), "0", "end this invocation after N steps (all phases), checkpointed; 0 = never") \
  X(trainer, max_bad_steps, INT(0, 1000000000), "5", "a step with a non-finite loss or gradient is skipped; stop after N in a row; 0 = never")

#define DRL_CONFIG_KEYS_sft(X)                                                   \
  X(sft, steps, INT(0, 1000000000), "100", "optimizer steps of the sft phase")   \
  X(sft, batch_size, INT(1, 1048576), "32", "sequences per step")

#define DRL_CONFIG_KEYS_grpo(X)                                                                                  \
  X(grpo, steps, INT(0, 1000000000), "500", "iterations of the grpo phase")                                     \
  X(grpo, prompts_per_step, INT(1, 1048576), "8", "prompts sampled per iteration")                              \
  X(grpo, group_size, INT(1, 65536), "16", "rollouts per prompt (G); advantages are normalised in the group")    \
  X(grpo, temperature, REAL_GT(0, 100), "1.0", "sampling temperature")                                          \
  X(grpo, top_k, INT(0, 1048576), "0", "sample among the k most likely tokens; 0 = off")                        \
  X(grpo, top_p, REAL_GT(0, 1), "1.0", "nucleus sampling: smallest set with this probability mass; 1 = off")    \
  X(grpo, max_new_tokens, INT(1, 1048576), "16", "longest response in tokens")                                  \
  X(grpo, clip_low, REAL_LT(0, 1), "0.2", "PPO clip: ratio >= 1 - clip_low")                                    \
  X(grpo, clip_high, REAL(0, 100), "0.28", "PPO clip: ratio <= 1 + clip_high (DAPO clip-higher)")               \
  X(grpo, kl_beta, REAL(0, 100), "0.0", "weight of the k3 KL penalty to the frozen reference; 0 = off")         \
  X(grpo, ppo_epochs, INT(1, 1000), "1", "passes over each batch of rollouts")                                  \
  X(grpo, minibatches, INT(1, 65536), "1", "optimizer steps per pass (the batch is split this many ways)")       \
  X(grpo, lr, REAL(0, 10), "0.0001", "learning rate of the grpo phase (constant); 0 = optim.lr") \
  X(grpo, dual_clip, REAL_GT(1, 1e9), "3.0", "dual clip c: for A < 0 the loss is at most -c A")                 \
  X(grpo, adv_eps, REAL_GT(0, 1), "1.0e-06", "epsilon added to the group's reward std")                         \
  X(grpo, dr_grpo, BOOL, "false", "Dr.GRPO: advantages are r - mean(r), not divided by the std")                 \
  X(grpo, loss, ENUM(policy_loss), "grpo", "policy loss: grpo (token-level ratio, PPO clip) or gspo (sequence-level ratio, clipped per sequence; needs loss_agg seq_mean_token_mean)") \
  X(grpo, loss_agg, ENUM(loss_agg), "token_mean", "loss aggregation per optimizer step: token_mean, seq_mean_token_mean, seq_mean_token_sum (as verl's modes), seq_mean_token_sum_norm (verl: sum / max_new_tokens), dr_grpo_norm (TRL's dr_grpo: sum / (sequences x max_new_tokens))") \
  X(grpo, count_empty_rows, BOOL, "true", "sequence-counting aggregations count rows left without a loss token by D3S's token level, as verl and TRL count every row") \
  X(grpo, reward, ENUM(reward), "exact", "task reward: exact match (1/0) or partial credit")                     \
  X(grpo, text_reward, STR(1), "exact", "text prompt sets: weighted rewards on the decoded response, "             \
    "name[:weight],... (gsm8k, gsm8k_flexible, math, answer_tag, think_format, exact)")

#define DRL_CONFIG_KEYS_d3s(X)                                                                                   \
  X(d3s, sampling, ENUM(sampling), "d3s", "rollout down-sampling: none (plain GRPO), d3s, pods")               \
  X(d3s, sample_scope, ENUM(scope), "cross", "d3s sample level: max-variance subset across the batch (cross) or per group (intra)") \
  X(d3s, n_init, INT(1, 65536), "4", "rollouts kept per prompt at the start (N_s; d3s and pods)")             \
  X(d3s, n_final, INT(1, 65536), "8", "rollouts kept per prompt at the end of the schedule")                   \
  X(d3s, token_level, BOOL, "true", "d3s token level: train only the top-K fraction of tokens by |A| * entropy") \
  X(d3s, token_scope, ENUM(token_scope), "batch", "token threshold over the whole batch, or per sequence")       \
  X(d3s, k_init, REAL_GT(0, 1), "0.2", "fraction of tokens kept at the start (K)")                            \
  X(d3s, k_final, REAL_GT(0, 1), "0.5", "fraction of tokens kept at the end of the schedule")                  \
  X(d3s, schedule, BOOL, "true", "grow N_s and K linearly with progress; false keeps the initial values")

#define DRL_CONFIG_KEYS_dist(X)                                                                                  \
  X(dist, shards, INT(0, 65536), "0", "shards of a global batch, each computed alone, summed in a fixed order; 0 = one per rank (N on 1 process = N ranks, bit for bit)") \
  X(dist, zero, BOOL, "false", "ZeRO-1: each rank keeps and steps its part of the AdamW state")                 \
  X(dist, deterministic, BOOL, "true", "sum gradients over ranks in a fixed tree; false = the library all-reduce (faster, order not fixed)") \
  X(dist, bucket_mb, REAL_GT(0, 65536), "16.0", "gradient reductions start per bucket of this many MiB, overlapping the backward (gpu)") \
  X(dist, timeout_s, REAL_GT(0, 1e6), "300.0", "a collective waiting longer than this for its peers fails: a rank has died or hung")

#define DRL_CONFIG_KEYS_spsa(X)                                                                                  \
  X(spsa, lr, REAL(0, 10), "0.0001", "learning rate eta; the update is -eta / S times the sum of S projected gradients") \
  X(spsa, eps, REAL_GT(0, 1), "0.001", "perturbation size epsilon: losses at theta +- eps z")                     \
  X(spsa, samples, INT(1, 4095), "1", "perturbations per rank per step (G); each sends one byte")                \
  X(spsa, perturbation, ENUM(perturbation), "rademacher", "distribution of z: rademacher or normal")             \
  X(spsa, codec, ENUM(codec), "log8", "projected gradient on the wire: log8 (one byte) or fp32 (four bytes)")    \
  X(spsa, hash_every, INT(0, 1000000000), "50", "compare a hash of the parameters across ranks every N steps; 0 = never")

#define DRL_CONFIG_KEYS_flow(X)                                                                                  \
  X(flow, conditions, INT(1, 1024), "4", "flow2d: conditions (prompts), each a mixture with a reward region of its own") \
  X(flow, modes, INT(1, 64), "3", "flow2d: Gaussian modes per condition, on a circle of radius 2")              \
  X(flow, mode_std, REAL_GT(0, 10), "0.35", "flow2d: standard deviation of every mode")                         \
  X(flow, reward_width, REAL_GT(0, 10), "0.5", "flow2d: reward exp(-d^2 / (2 w^2)), d the distance to the condition's target mode") \
  X(flow, hidden, INT(1, 65536), "128", "width of the velocity MLP's hidden layers")                           \
  X(flow, layers, INT(1, 64), "3", "hidden layers of the velocity MLP (SiLU)")                                  \
  X(flow, cond_dim, INT(1, 4096), "16", "width of the condition embedding")                                    \
  X(flow, time_features, INT(2, 4096), "16", "sin/cos features of the time (even)")                            \
  X(flow, max_freq, REAL_GT(0, 1e6), "64.0", "highest frequency of the time features")                          \
  X(flow, init_std, REAL(0, 10), "0.1", "standard deviation of the normal initialisation of weights")           \
  X(flow, pretrain_steps, INT(0, 1000000000), "3000", "optimizer steps of flow matching (phase flow_pretrain)") \
  X(flow, batch_size, INT(1, 1048576), "256", "points per flow-matching step")                                  \
  X(flow, n_train, INT(1, 100000000), "20000", "flow2d training points (pretraining data)")

#define DRL_CONFIG_KEYS_tree(X)                                                                                  \
  X(tree, iterations, INT(0, 1000000000), "200", "iterations of the flow_grpo phase")                          \
  X(tree, sampling, ENUM(tree_sampling), "tree", "tree (one root per condition, branching) or independent trajectories") \
  X(tree, steps, INT(1, 4096), "10", "denoising steps T of the sampler")                                         \
  X(tree, shift, REAL_GT(0, 100), "1.0", "time-grid shift s: t' = s t / (1 + (s - 1) t); 1 = uniform")          \
  X(tree, noise, REAL(0, 100), "0.7", "SDE noise level a: sigma = a g(j) sqrt(t / (1 - t))")                      \
  X(tree, noise_growth, REAL(0, 100), "1.0", "g(j) = 1 + noise_growth j / (depth - 1): more noise deeper in the tree") \
  X(tree, depth, INT(1, 4096), "4", "SDE steps of the window (tree depth d)")                                    \
  X(tree, branch, INT(1, 64), "2", "children per node (b): the tree has b^depth leaves per condition")          \
  X(tree, group_size, INT(1, 65536), "16", "independent: trajectories per condition (the GRPO group)")            \
  X(tree, shared_noise, BOOL, "false", "independent: a group's trajectories start from one noise (MixGRPO)")   \
  X(tree, window_start, INT(0, 4096), "0", "first SDE step of the window (l)")                                  \
  X(tree, window_every, INT(0, 1000000000), "15", "move the window one step later every N iterations; 0 = fixed") \
  X(tree, conditions_per_iter, INT(1, 65536), "4", "conditions (trees or groups) per iteration")               \
  X(tree, advantage, ENUM(tree_advantage), "subtree", "edge advantage: subtree (option A), depth (B), sibling (C)") \
  X(tree, adv_clip, REAL_GT(0, 1e6), "5.0", "advantages are clamped to +- this")                                 \
  X(tree, clip_low, REAL_GT(0, 1), "0.0001", "dynamic clip: epsilon for very negative advantages")              \
  X(tree, clip_high, REAL_GT(0, 1), "0.001", "dynamic clip: epsilon for very positive advantages")              \
  X(tree, clip_sensitivity, REAL(0, 1e6), "1.0", "dynamic clip: eps = low + (high - low) sigmoid(sensitivity A)") \
  X(tree, sft_weight, REAL(0, 1e6), "0.1", "LayerTuning-RL: weight lambda of the regression toward the best leaf") \
  X(tree, sft_wmax, REAL(0, 1e6), "2.0", "LayerTuning-RL: largest per-group weight")                            \
  X(tree, logprob, ENUM(logprob), "mean", "transition log-probability: mean over dimensions (the flow-GRPO convention) or sum") \
  X(tree, epochs, INT(1, 1000), "1", "updates per sampled batch; after the first the ratio moves and the clip acts") \
  X(tree, lr, REAL(0, 10), "0.001", "learning rate of the flow_grpo phase (constant); 0 = optim.lr")            \
  X(tree, eval_every, INT(0, 1000000000), "5", "evaluate every N flow_grpo iterations (trainer.eval_every: flow_pretrain)") \
  X(tree, eval_samples, INT(1, 1048576), "256", "ODE samples per condition for the evaluation reward")

/* ---- generated declarations (nothing below needs editing when a key is added) ---- */
#define DRL_CFG_ENUMERATOR_(id, str) id,
#define DRL_CFG_PLUS_ONE_(id, str) +1
#define DRL_CFG_DECLARE_ENUM_(e)                                                  \
  typedef enum drl_cfg_##e { DRL_CFG_ENUM_##e(DRL_CFG_ENUMERATOR_) } drl_cfg_##e; \
  enum { DRL_CFG_COUNT_##e = 0 DRL_CFG_ENUM_##e(DRL_CFG_PLUS_ONE_) };             \
  typedef struct drl_cfg_##e##_list {                                             \
    int count;                                                                    \
    drl_cfg_##e items[DRL_CFG_COUNT_##e];                                         \
  } drl_cfg_##e##_list;
DRL_CFG_ENUMS(DRL_CFG_DECLARE_ENUM_)

/* C type and array suffix of each key type (the type's arguments are the range, unused here). */
#define DRL_CFG_CTYPE_U64 uint64_t
#define DRL_CFG_CTYPE_INT(lo, hi) int
#define DRL_CFG_CTYPE_REAL(lo, hi) double
#define DRL_CFG_CTYPE_REAL_GT(lo, hi) double
#define DRL_CFG_CTYPE_REAL_LT(lo, hi) double
#define DRL_CFG_CTYPE_BOOL bool
#define DRL_CFG_CTYPE_STR(min_len) char
#define DRL_CFG_CTYPE_ENUM(e) drl_cfg_##e
#define DRL_CFG_CTYPE_LIST(e) drl_cfg_##e##_list
#define DRL_CFG_DIM_U64
#define DRL_CFG_DIM_INT(lo, hi)
#define DRL_CFG_DIM_REAL(lo, hi)
#define DRL_CFG_DIM_REAL_GT(lo, hi)
#define DRL_CFG_DIM_REAL_LT(lo, hi)
#define DRL_CFG_DIM_BOOL
#define DRL_CFG_DIM_STR(min_len) [DRL_CONFIG_STR_CAP]
#define DRL_CFG_DIM_ENUM(e)
#define DRL_CFG_DIM_LIST(e)

#define DRL_CFG_MEMBER_(sec, key, type, def, help) DRL_CFG_CTYPE_##type key DRL_CFG_DIM_##type;
#define DRL_CFG_DECLARE_SECTION_(sec, help) \
  typedef struct drl_config_##sec {         \
    DRL_CONFIG_KEYS_##sec(DRL_CFG_MEMBER_)  \
  } drl_config_##sec;
DRL_CONFIG_SECTIONS(DRL_CFG_DECLARE_SECTION_)

#define DRL_CFG_SECTION_MEMBER_(sec, help) drl_config_##sec sec;
/* The whole configuration: one member per section (cfg.model.d_model, cfg.trainer.phases.items[i]...).
 * Plain data: strings are inline arrays, so a drl_config may be copied by assignment. */
typedef struct drl_config {
  DRL_CONFIG_SECTIONS(DRL_CFG_SECTION_MEMBER_)
} drl_config;

/* ---- API. Failures return DRL_ERR_CONFIG (DRL_ERR_IO for an unreadable file, DRL_ERR_OOM) with a message for
 * drl_last_error() that names the key path, the value and what is allowed; on failure *cfg is left unchanged. ---- */

/* drl_cfg_<e>_name(value): the YAML spelling of an enumeration value ("add", "cuda", ...), "?" if out of range. */
#define DRL_CFG_DECLARE_NAME_(e) const char *drl_cfg_##e##_name(drl_cfg_##e value);
DRL_CFG_ENUMS(DRL_CFG_DECLARE_NAME_)

/* Fills cfg with the defaults: the embedded default YAML, loaded through the same path as a file. */
/* The backend run.device names: auto is CUDA when a GPU is visible, else the CPU. */
drl_backend drl_config_backend(const drl_config *cfg);

drl_status drl_config_load_default(drl_config *cfg);

/* Fills cfg with the defaults, then the keys the YAML file at path names; the result is validated. */
drl_status drl_config_load_file(drl_config *cfg, const char *path);

/* Like drl_config_load_file for YAML text; origin (e.g. "--config-string") names it in messages, NULL = "<string>". */
drl_status drl_config_load_string(drl_config *cfg, const char *yaml, const char *origin);

/* Applies one override "section.key=value" (lists: "a,b" or "[a, b]"; strings taken verbatim) with the key's
 * type and range check. Rules between keys are left to drl_config_validate, run after the last override. */
drl_status drl_config_set(drl_config *cfg, const char *assignment);

/* Checks every key's type and range and the rules between keys (e.g. n_heads divides d_model). */
drl_status drl_config_validate(const drl_config *cfg);

/* Checks the rules between cfg and a training job on `ranks` processes (cfg validated): token phases split each
 * batch into whole shards; flow phases are not mixed with token phases, run on one process with AdamW, and give the
 * sampler valid tree parameters. */
drl_status drl_config_check_job(const drl_config *cfg, int ranks);

/* Checks what the engine API (include/dynrl.h) runs: AdamW and token phases; DRL_ERR_UNSUPPORTED otherwise. */
drl_status drl_config_check_api(const drl_config *cfg);

/* Prints cfg as commented YAML (the layout of the default) into a malloc'd string the caller frees; it loads back
 * to an equal config (floats in shortest round-trip form, strings quoted where YAML would misread them). */
drl_status drl_config_to_yaml(const drl_config *cfg, char **text);

/* Nonzero when every key of a and b holds the same value (floats compared bit for bit). */
int drl_config_equal(const drl_config *a, const drl_config *b);

/* The number of keys whose values differ between a and b; their names ("grpo.lr, sft.steps") into names (cap bytes,
 * truncated; may be NULL). */
int drl_config_diff(const drl_config *a, const drl_config *b, char *names, size_t cap);

/* Releases what cfg owns (nothing yet: strings are inline) and zeroes it; safe to call twice. */
void drl_config_free(drl_config *cfg);

/* The embedded default configuration as YAML text (static storage; configs/default.yaml holds the same text). */
const char *drl_config_default_yaml(void);

/* One line per key, "section.key  type and range  default  help", in a malloc'd string the caller frees. */
drl_status drl_config_help(char **text);

#ifdef __cplusplus
}
#endif
#endif /* DRL_CONFIG_H */
