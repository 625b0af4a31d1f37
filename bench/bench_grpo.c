/* Time split of one GRPO iteration by phase, with the engine's own functions on the default configuration (the add
 * task, the default policy, 8 prompts x G = 16 rollouts of up to 16 tokens, d3s.sampling as configured):
 *   rollout      drl_rollout_generate (prefill + KV-cache decode, sampling, log-prob and entropy records)
 *   reward       drl_run_score (the task's verifier on every rollout)
 *   advantages   group advantages and the sample selection (D3S max-variance subset, PODS, or all rows), the row
 *                compaction, and the D3S token selection
 *   old policy   the forward over the kept rows that gives logp_old and the entropies
 *   updates      the clipped-surrogate forward + backward + AdamW step(s)
 * drl_grpo_update reports the last three (drl_grpo_update_stats.seconds_*); the first two are timed here.
 *
 * The policy is the seeded initialisation unless --init CKPT loads a checkpoint's weights (e.g. a run's ckpt.h5):
 * with random weights rewards are 0, every advantage is 0, and response lengths are random; the work per phase is
 * the same kind but the kept-row counts of D3S depend on the advantages. The table states the mean kept rows and
 * response length of the timed iterations.
 *
 * Two paths, each from the same initial policy: "padded" (the update computes the entropies in its old-policy pass
 * over every kept row at full width) and "pruned" (the update gets the rollout's entropies, chooses the tokens first
 * and forwards only rows with a loss token, cut after their last one; drl_grpo_update_batch.entropy).
 *
 * Extra options (besides --device, --append, --quick): --warmup N (default 2), --iters N (timed, default 5),
 * --init CKPT, --set KEY=VALUE (any config override, repeatable, e.g. --set d3s.sampling=none), --csv FILE (each
 * path's iteration and phase times, read by bench/trl_compare.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "data/vocab.h"
#include "engine/config.h"
#include "engine/grpo_update.h"
#include "engine/run.h"
#include "samplers/rollout.h"

static void die(const char *what) {
  fprintf(stderr, "bench_grpo: %s: %s\n", what, drl_last_error());
  exit(1);
}

#define CHECK(call, what)            \
  do {                               \
    if ((call) != DRL_OK) die(what); \
  } while (0)

enum { PH_ROLLOUT, PH_REWARD, PH_ADV, PH_OLD, PH_UPDATE, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"rollout", "reward", "advantages + selection", "old-policy pass",
                                                  "updates"};

static int take_own_args(int *argc, char **argv, int *warmup, int *iters, const char **init, const char **sets,
                         int *n_sets, const char **csv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    int has_value = i + 1 < *argc;
    if (strcmp(argv[i], "--warmup") == 0 && has_value) *warmup = atoi(argv[++i]);
    else if (strcmp(argv[i], "--iters") == 0 && has_value) *iters = atoi(argv[++i]);
    else if (strcmp(argv[i], "--init") == 0 && has_value) *init = argv[++i];
    else if (strcmp(argv[i], "--csv") == 0 && has_value) *csv = argv[++i];
    else if (strcmp(argv[i], "--set") == 0 && has_value && *n_sets < 32) sets[(*n_sets)++] = argv[++i];
    else argv[out++] = argv[i];
  }
  *argc = out;
  return (*warmup < 0 || *iters < 1) ? 2 : 0;
}

typedef struct path_result {
  double ms[PH_COUNT], iter_ms;
  double kept_rows, kept_tokens, resp_len, reward, gen_tokens, positions, params;
  char task[32];
} path_result;

/* Runs warmup + iters iterations from the configured initial policy; pruned: the update gets the rollout's
 * entropies. */
static void run_path(const drl_config *cfg, const char *init, int pruned, int warmup, int iters, path_result *res) {
  const drl_config_grpo *g = &cfg->grpo;
  int n = g->prompts_per_step, G = g->group_size, rows = n * G;
  int B_max = rows < 64 ? rows : 64; /* as the trainer sizes the policy's activations */
  drl_run run;
  memset(&run, 0, sizeof run);
  memset(res, 0, sizeof *res);
  CHECK(drl_run_open(&run, cfg, NULL, B_max), "run open");
  if (init) CHECK(drl_run_load_weights(&run, init), "load weights");
  int64_t longest = run.max_prompt;
  int T = (int)longest + g->max_new_tokens;
  drl_rollout ro;
  drl_grpo_update_state rs;
  memset(&ro, 0, sizeof ro);
  CHECK(drl_rollout_create(&ro, &run.model, rows, g->group_size, (int)longest, g->max_new_tokens), "rollout create");
  CHECK(drl_grpo_update_state_create(&rs, cfg, &run.model, 1, rows, T), "rl state");
  int32_t *prompts = malloc((size_t)n * (size_t)longest * sizeof(int32_t));
  int64_t *offsets = malloc((size_t)(n + 1) * sizeof(int64_t)), *examples = malloc((size_t)n * sizeof(int64_t));
  float *rewards = malloc((size_t)rows * sizeof(float));
  if (!prompts || !offsets || !examples || !rewards) die("host memory");
  drl_rollout_batch batch;
  memset(&batch, 0, sizeof batch);
  double sum[PH_COUNT] = {0};
  int total = warmup + iters;
  for (int it = 1; it <= total; ++it) {
    double t[PH_COUNT];
    drl_run_draw_prompts(&run, (uint32_t)it, 0, n, prompts, offsets, examples);
    drl_rollout_params p = {G, g->max_new_tokens, (float)g->temperature, g->top_k, (float)g->top_p,
                            run.eos, cfg->run.seed, (uint32_t)it, 0, 0, run.stop_ids, run.n_stop, NULL, NULL};
    double t0 = bench_now();
    CHECK(drl_rollout_generate(&ro, &run.model, prompts, offsets, n, &p, &batch), "rollout");
    double t1 = bench_now();
    CHECK(drl_run_score(&run, &batch, prompts, offsets, examples, rewards), "score");
    double t2 = bench_now();
    t[PH_ROLLOUT] = t1 - t0;
    t[PH_REWARD] = t2 - t1;
    drl_grpo_update_batch rb = {n, G, batch.T, batch.tokens, batch.row_start, batch.mask, rewards,
                                pruned ? batch.entropy : NULL};
    drl_grpo_update_stats st;
    CHECK(drl_grpo_update(&rs, &run.model, cfg, &rb, NULL, NULL, it, total, &run.optim_step, &st), "rl step");
    t[PH_ADV] = st.seconds_select;
    t[PH_OLD] = st.seconds_old_policy;
    t[PH_UPDATE] = st.seconds_update;
    if (it > warmup) {
      for (int i = 0; i < PH_COUNT; ++i) sum[i] += t[i];
      res->kept_rows += (double)st.kept_samples / iters;
      res->kept_tokens += (double)st.kept_tokens / iters;
      res->resp_len += st.response_len / iters;
      res->reward += st.reward_mean / iters;
      res->gen_tokens += (double)batch.generated_tokens / iters;
      res->positions += (double)st.positions / iters;
    }
  }
  for (int i = 0; i < PH_COUNT; ++i) res->iter_ms += (res->ms[i] = 1e3 * sum[i] / iters);
  res->params = (double)run.model.ps.layout.total;
  snprintf(res->task, sizeof res->task, "%s", run.data.task);
  drl_rollout_batch_free(&batch);
  free(prompts);
  free(offsets);
  free(examples);
  free(rewards);
  drl_grpo_update_state_free(&rs, &run.model);
  drl_rollout_free(&ro);
  drl_run_close(&run);
}

int main(int argc, char **argv) {
  int warmup = 2, iters = 5, n_sets = 0;
  const char *init = NULL, *sets[32], *csv = NULL;
  if (take_own_args(&argc, argv, &warmup, &iters, &init, sets, &n_sets, &csv)) {
    fprintf(stderr, "bench_grpo: --warmup N (>= 0), --iters N (>= 1)\n");
    return 2;
  }
  bench_args args;
  if (bench_parse_args(argc, argv, "bench_grpo [--warmup N] [--iters N] [--init CKPT] [--set KEY=VALUE]... [--csv FILE]",
                       &args))
    return 2;
  if (args.quick) {
    warmup = 1;
    iters = 2;
  }
  drl_config cfg;
  CHECK(drl_config_load_default(&cfg), "config");
  CHECK(drl_config_set(&cfg, "trainer.phases=grpo"), "config");
  CHECK(drl_config_set(&cfg, "run.quiet=true"), "config");
  CHECK(drl_config_set(&cfg, args.backend == DRL_BACKEND_CUDA ? "run.device=cuda" : "run.device=cpu"), "config");
  /* The run directory holds nothing this bench writes; keep it out of the working tree. */
  CHECK(drl_config_set(&cfg, "run.out_dir=/tmp/dynrl_bench_grpo"), "config");
  for (int i = 0; i < n_sets; ++i) CHECK(drl_config_set(&cfg, sets[i]), sets[i]);
  CHECK(drl_config_validate(&cfg), "config");

  const drl_config_grpo *g = &cfg.grpo;
  int n = g->prompts_per_step, G = g->group_size, rows = n * G;
  /* Each path from the same initial policy, one after the other: the rollout's entropies handed to the update (it
   * chooses the tokens first and forwards only rows with a loss token, cut after their last), or not (every kept
   * row at full width, the entropies from the old-policy pass). */
  path_result res[2];
  for (int pruned = 0; pruned < 2; ++pruned) run_path(&cfg, init, pruned, warmup, iters, &res[pruned]);

  char body[6144];
  const path_result *r = &res[1];
  int len = snprintf(
      body, sizeof body,
      "One GRPO iteration through the engine's functions (drl_rollout_generate, drl_run_score, drl_grpo_update), "
      "default configuration: %s task, %.2fM-parameter policy (%s), %d prompts x G = %d, max_new_tokens %d, "
      "d3s.sampling %s, ppo_epochs %d, minibatches %d; %d CPU threads. Mean of %d iterations after %d warm-up, each "
      "path from the same initial policy in this run; the last three phases as drl_grpo_update reports them. Per "
      "timed iteration (pruned path): %.1f kept rows of %d, %.0f loss tokens, %.0f generated tokens (mean response "
      "%.1f tokens), batch reward %.3f. Trunk positions per forward: %.0f pruned, %.0f padded. Padded: the update "
      "without the rollout's entropies (every kept row at full width); pruned: with them.\n\n"
      "| phase | padded ms | pruned ms | pruned share |\n|---|---|---|---|\n",
      r->task, r->params / 1e6, init ? init : "seeded initialisation", n, G, g->max_new_tokens,
      drl_cfg_sampling_name(cfg.d3s.sampling), g->ppo_epochs, g->minibatches, drl_cpu_threads(), iters, warmup,
      r->kept_rows, rows, r->kept_tokens, r->gen_tokens, r->resp_len, r->reward, r->positions, res[0].positions);
  for (int i = 0; i < PH_COUNT; ++i)
    len += snprintf(body + len, sizeof body - (size_t)len, "| %s | %.2f | %.2f | %.1f%% |\n", phase_names[i],
                    res[0].ms[i], r->ms[i], 100.0 * r->ms[i] / r->iter_ms);
  snprintf(body + len, sizeof body - (size_t)len, "| **iteration** | **%.2f** | **%.2f** | 100%% |\n",
           res[0].iter_ms, r->iter_ms);
  if (csv) {
    FILE *f = fopen(csv, "w");
    if (!f) {
      perror(csv);
      return 1;
    }
    fprintf(f, "path,iteration_ms,rollout_ms,old_policy_ms,update_ms\n");
    for (int i = 0; i < 2; ++i)
      fprintf(f, "%s,%.3f,%.3f,%.3f,%.3f\n", i ? "pruned" : "padded", res[i].iter_ms, res[i].ms[PH_ROLLOUT],
              res[i].ms[PH_OLD], res[i].ms[PH_UPDATE]);
    fclose(f);
  }
  drl_device cpu;
  drl_device_open(&cpu, args.backend, 0);
  int rc = bench_emit(&args, "GRPO iteration time split", &cpu, body);
  drl_device_close(&cpu);
  return rc;
}
