/* dynrl generate POLICY --prompt TEXT [...]: sampled responses of a policy to one prompt, streamed as they come. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data/chat_template.h"
#include "engine/policy.h"
#include "samplers/rollout.h"

static const char usage[] =
    "usage: dynrl generate POLICY --prompt TEXT [--template NAME] [--system TEXT] [--n N] [--temperature T]\n"
    "                      [--top-k K] [--top-p P] [--max-new-tokens N] [--seed S] [--tokenizer DIR]\n"
    "                      [--device auto|cpu|cuda]\n"
    "\n"
    "POLICY is a Hugging Face directory, a policy file of `dynrl import`, or a checkpoint (ckpt.h5 of a run). The\n"
    "prompt is rendered by the chat template (raw, chatml, qwen2, qwen2.5, qwen3, qwen3:nothink, llama3; default\n"
    "raw: the text as it is), with an optional system prompt, and encoded with the policy's tokenizer (that of its\n"
    "source directory, or --tokenizer DIR; a policy of a built-in task uses its characters). N responses (default 1)\n"
    "are sampled with temperature T (default 1; 0 is greedy decoding), top-k K (0: off), top-p P (1: off) and the\n"
    "seed S (default 1), each until an EOS id of the policy or N new tokens (default 256). One response is streamed\n"
    "to stdout as it is decoded; several are printed one after another. Timings go to stderr.\n";

static int parse_generate(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  const char *n_text = "1", *temp_text = "1", *k_text = "0", *p_text = "1", *max_text = "256", *seed_text = "1",
             *device_text = "auto";
  a->template_name = "raw";
  const char *names[] = {"--prompt", "--template", "--system", "--n", "--temperature", "--top-k", "--top-p",
                         "--max-new-tokens", "--seed", "--tokenizer", "--device"};
  const char **slots[] = {&a->prompt, &a->template_name, &a->system, &n_text, &temp_text, &k_text, &p_text,
                          &max_text, &seed_text, &a->tokenizer, &device_text};
  int rc = cli_parse_options(&cli_verb_generate, argc, argv, names, slots, 11, &a->file, "POLICY");
  if (rc != CLI_OK) return rc;
  if (!a->prompt) return cli_usage_error(&cli_verb_generate, "missing --prompt");
  if (cli_parse_i64(n_text, 1, 4096, &a->n)) return cli_usage_error(&cli_verb_generate, "--n must be 1..4096");
  if (cli_parse_f64(temp_text, 0.0, 1e6, &a->temperature))
    return cli_usage_error(&cli_verb_generate, "--temperature must be a number >= 0");
  if (cli_parse_i64(k_text, 0, INT32_MAX, &a->top_k)) return cli_usage_error(&cli_verb_generate, "--top-k must be >= 0");
  if (cli_parse_f64(p_text, 0.0, 1.0, &a->top_p) || a->top_p <= 0.0)
    return cli_usage_error(&cli_verb_generate, "--top-p must be in (0, 1]");
  if (cli_parse_i64(max_text, 1, 1 << 20, &a->max_new))
    return cli_usage_error(&cli_verb_generate, "--max-new-tokens must be 1..2^20");
  if (cli_parse_i64(seed_text, 0, INT64_MAX, &a->seed)) return cli_usage_error(&cli_verb_generate, "--seed must be >= 0");
  if (cli_parse_device(device_text, &a->backend))
    return cli_usage_error(&cli_verb_generate, "--device must be auto, cpu or cuda");
  return CLI_OK;
}

/* Streams row 0's text to stdout: the decoder holds back an incomplete UTF-8 character. */
typedef struct stream {
  const drl_tokenizer *tok;
  drl_decode_stream ds;
  drl_text piece;
  drl_status st;
} stream;

static void print_piece(stream *s) {
  fwrite(s->piece.s ? s->piece.s : "", 1, (size_t)s->piece.n, stdout);
  fflush(stdout);
  s->piece.n = 0;
}

static void on_token(void *user, int row, int32_t id) {
  stream *s = (stream *)user;
  if (row != 0 || s->st != DRL_OK) return;
  s->st = drl_decode_stream_push(s->tok, &s->ds, id, &s->piece);
  print_piece(s);
}

/* Prints the responses of b (several: one after another, numbered). */
static drl_status print_responses(const drl_tokenizer *tok, const drl_rollout_batch *b) {
  drl_text text = {0};
  drl_status st = DRL_OK;
  for (int row = 0; st == DRL_OK && row < b->rows; ++row) {
    st = drl_tokenizer_decode(tok, b->tokens + (size_t)row * b->T + b->P, b->response_len[row], 1, &text);
    if (st == DRL_OK) printf("--- response %d of %d ---\n%s\n", row + 1, b->rows, text.s ? text.s : "");
  }
  drl_text_free(&text);
  return st;
}

static drl_status generate(const cli_args *a, drl_policy *p, drl_rollout *ro, drl_rollout_batch *b) {
  drl_chat_template t;
  DRL_TRY(drl_chat_template_get(a->template_name, &t));
  drl_ids ids = {0};
  drl_status st = drl_chat_encode_prompt(&t, &p->tok, a->system, a->prompt, &ids);
  int P = (int)ids.n, max_new = (int)a->max_new;
  if (st == DRL_OK && P >= p->cfg.max_seq)
    st = DRL_FAIL(DRL_ERR_INVALID_ARG, "the prompt has %d tokens; the policy holds at most %d", P, p->cfg.max_seq);
  if (st == DRL_OK && P + max_new > p->cfg.max_seq) {
    max_new = p->cfg.max_seq - P;
    fprintf(stderr, "dynrl generate: at most %d new tokens fit after the prompt's %d (max_seq %d)\n", max_new, P,
            p->cfg.max_seq);
  }
  int rows = (int)a->n;
  if (st == DRL_OK) st = drl_policy_load(p, a->backend, 0, rows, P + max_new);
  if (st == DRL_OK) st = drl_rollout_create(ro, &p->model, rows, rows, P, max_new);
  stream s = {&p->tok, {{0}, 0, 0}, {0}, DRL_OK};
  drl_decode_stream_init(&s.ds, 1);
  int greedy = a->temperature == 0.0;
  drl_rollout_params rp = {rows, max_new, greedy ? 1.0f : (float)a->temperature, greedy ? 1 : (int)a->top_k,
                           (float)a->top_p, p->eos, (uint64_t)a->seed, 0, 0, 0, p->stop_ids, p->n_stop,
                           rows == 1 ? on_token : NULL, &s};
  int64_t offsets[2] = {0, P};
  double t0 = cli_now();
  if (st == DRL_OK) st = drl_rollout_generate(ro, &p->model, ids.v, offsets, 1, &rp, b);
  double dt = cli_now() - t0;
  if (st == DRL_OK) st = s.st;
  if (st == DRL_OK && rows == 1) {
    st = drl_decode_stream_finish(&s.ds, &s.piece);
    print_piece(&s);
    printf("\n");
  } else if (st == DRL_OK) {
    st = print_responses(&p->tok, b);
  }
  fflush(stdout); /* the text before the timing line */
  if (st == DRL_OK)
    fprintf(stderr, "dynrl generate: %d prompt tokens, %lld new in %.2f s (%.1f tokens/s)\n", P,
            (long long)b->generated_tokens, dt, dt > 0 ? (double)b->generated_tokens / dt : 0.0);
  drl_text_free(&s.piece);
  drl_ids_free(&ids);
  return st;
}

static int run_generate(int argc, char **argv) {
  cli_args a;
  int rc = parse_generate(argc, argv, &a);
  if (rc != CLI_OK) return rc;
  drl_policy p;
  if (drl_policy_open(a.file, a.tokenizer, &p) != DRL_OK) return cli_fail(argv[0]);
  drl_rollout ro;
  drl_rollout_batch b;
  memset(&ro, 0, sizeof ro);
  memset(&b, 0, sizeof b);
  drl_status st = generate(&a, &p, &ro, &b);
  drl_rollout_batch_free(&b);
  drl_rollout_free(&ro);
  drl_policy_close(&p);
  return st == DRL_OK ? CLI_OK : cli_fail(argv[0]);
}

const cli_verb cli_verb_generate = {"generate", "sample responses of a policy to a prompt, streamed", usage,
                                    parse_generate, run_generate};
