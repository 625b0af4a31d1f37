/* A host trainer that drives dynrl through the public C API only: its own reward function, the engine's sampler and
 * GRPO/D3S update. Usage: host_trainer [ITERATIONS] [section.key=value ...]
 *
 * The reward is computed here, not by dynrl: the response must spell the sum of the prompt "A+B=" (1 point), with
 * half a point for the right number of digits. */
#include <dynrl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reward_ctx {
  const char *vocab;
  long calls;
} reward_ctx;

/* Decodes ids into text (at most cap - 1 characters). */
static void decode(const char *vocab, const int32_t *ids, int n, char *out, size_t cap) {
  size_t k = 0;
  for (int i = 0; i < n && k + 1 < cap; ++i) out[k++] = vocab[ids[i]];
  out[k] = '\0';
}

static float sum_reward(const int32_t *prompt, int prompt_len, const int32_t *response, int response_len, void *user) {
  reward_ctx *ctx = (reward_ctx *)user;
  ctx->calls++;
  char p[64], r[64], want[32];
  decode(ctx->vocab, prompt, prompt_len, p, sizeof p);
  decode(ctx->vocab, response, response_len, r, sizeof r);
  long a = 0, b = 0;
  if (sscanf(p, "%ld+%ld=", &a, &b) != 2) return 0.0f;
  snprintf(want, sizeof want, "%ld.", a + b);
  if (strcmp(r, want) == 0) return 1.0f;
  return strlen(r) == strlen(want) ? 0.5f : 0.0f;
}

static int check(drl_status st, const char *what) {
  if (st == DRL_OK) return 0;
  fprintf(stderr, "host_trainer: %s failed: %s (%s)\n", what, drl_last_error(), drl_status_name(st));
  return 1;
}

int main(int argc, char **argv) {
  int iterations = argc > 1 ? atoi(argv[1]) : 20;
  drl_engine *engine = NULL;
  if (check(drl_engine_create(NULL, (const char *const *)argv + 2, argc > 2 ? argc - 2 : 0, &engine), "create"))
    return 1;
  reward_ctx ctx = {drl_engine_vocab(engine), 0};
  int rc = check(drl_engine_set_reward(engine, sum_reward, &ctx), "set_reward");

  /* One round by hand: our own prompts, our own rewards. */
  const char *texts[] = {"12+30=", "7+5="};
  int32_t tokens[32];
  int64_t offsets[3] = {0, 0, 0}, n = 0;
  for (int i = 0; i < 2 && !rc; ++i) {
    rc = check(drl_engine_encode(engine, texts[i], tokens + offsets[i], 32 - offsets[i], &n), "encode");
    offsets[i + 1] = offsets[i] + n;
  }
  drl_rollouts ro;
  if (!rc) rc = check(drl_engine_generate(engine, tokens, offsets, 2, &ro), "generate");
  if (!rc) {
    float *rewards = (float *)malloc((size_t)ro.rows * sizeof(float));
    for (int row = 0; row < ro.rows; ++row) {
      int i = row / ro.group_size;
      rewards[row] = sum_reward(tokens + offsets[i], (int)(offsets[i + 1] - offsets[i]),
                                ro.tokens + (size_t)row * ro.length + ro.prompt_len, ro.response_len[row], &ctx);
    }
    drl_stats s;
    rc = check(drl_engine_train(engine, rewards, &s), "train");
    if (!rc) printf("hand round: %d rollouts, reward %.3f\n", ro.rows, s.reward_mean);
    free(rewards);
  }

  /* Then the engine's own loop, still scored by sum_reward. */
  for (int it = 1; it <= iterations && !rc; ++it) {
    drl_stats s;
    rc = check(drl_engine_iterate(engine, &s), "iterate");
    if (!rc && (it % 5 == 0 || it == iterations))
      printf("iteration %lld: reward %.3f loss %.4f kept %lld rollouts %lld tokens\n", (long long)s.iteration,
             s.reward_mean, s.loss, (long long)s.kept_samples, (long long)s.kept_tokens);
  }
  double acc = 0;
  if (!rc) rc = check(drl_engine_evaluate(engine, &acc), "evaluate");
  if (!rc) rc = check(drl_engine_save(engine, "host_trainer_ckpt.h5"), "save");
  if (!rc) rc = check(drl_engine_load(engine, "host_trainer_ckpt.h5"), "load");
  if (!rc) printf("held-out exact match %.3f; %ld rewards computed by the host\n", acc, ctx.calls);
  drl_engine_destroy(engine);
  return rc;
}
