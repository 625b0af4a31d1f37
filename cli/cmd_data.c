/* dynrl data gen|import|info: write a built-in task's dataset file, import a JSONL prompt set, or summarise and
 * validate a file. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data/dataset.h"
#include "data/task.h"
#include "data/vocab.h"
#include "engine/text_import.h"

static const char usage[] =
    "usage: dynrl data gen --task TASK --n N [--seed S] [--size K] -o FILE.h5\n"
    "       dynrl data import PROMPTS.jsonl --tokenizer MODEL_DIR [--template NAME] [--max-prompt-tokens N]\n"
    "                         [--drop-long] -o FILE.h5\n"
    "       dynrl data info FILE.h5\n"
    "\n"
    "gen   writes N examples of a built-in task (add, sort, keyfork), deterministic from the seed (default 1234);\n"
    "      --size: most digits per operand for add (1..9, default 3), string length for sort (1..32, default 6),\n"
    "      number of distinct prompts for keyfork (1..100, default 32); 0 or absent: the task default.\n"
    "import encodes a JSONL prompt set (one object per line: \"prompt\", \"messages\" or \"prompt_ids\", \"answer\",\n"
    "      optional \"system\"; docs/text.md), each prompt rendered by a chat template (raw, chatml, qwen2, qwen2.5,\n"
    "      qwen3, qwen3:nothink, llama3; default raw) and encoded\n"
    "      with the tokenizer.json of a model directory into a text prompt set (task text: the ids, the answers as\n"
    "      text and as tokens ending with the model's EOS, the template, the tokenizer's hash). A prompt longer than\n"
    "      --max-prompt-tokens is an error naming its line, or with --drop-long is dropped and counted.\n"
    "info  checks a dataset file's format (types, offsets, tokens inside the vocabulary) and prints its task,\n"
    "      vocabulary, sizes and first examples; whether a run can use it depends on its configuration too\n"
    "      (model.max_seq must hold the longest example, data.n_train + data.n_eval the examples it has).\n";

static int parse_gen(int argc, char **argv, cli_args *a) {
  const char *n_text = NULL, *seed_text = "1234", *size_text = "0";
  for (int i = 2; i < argc; ++i) {
    const char *names[] = {"--task", "--n", "--seed", "--size", "-o"};
    const char **slots[] = {&a->task, &n_text, &seed_text, &size_text, &a->out};
    int matched = 0;
    for (int k = 0; k < 5 && !matched; ++k) {
      matched = cli_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return cli_usage_error(&cli_verb_data, "%s needs a value", names[k]);
    }
    if (!matched) return cli_usage_error(&cli_verb_data, "unexpected argument '%s'", argv[i]);
  }
  if (!a->task || !n_text || !a->out) return cli_usage_error(&cli_verb_data, "gen needs --task, --n and -o");
  if (cli_parse_i64(n_text, 1, INT32_MAX, &a->n)) return cli_usage_error(&cli_verb_data, "--n must be 1..2^31-1");
  if (cli_parse_i64(seed_text, 0, INT64_MAX, &a->seed))
    return cli_usage_error(&cli_verb_data, "--seed must be >= 0");
  if (cli_parse_i64(size_text, 0, 1 << 20, &a->size)) return cli_usage_error(&cli_verb_data, "--size must be >= 0");
  return CLI_OK;
}

static int parse_import(int argc, char **argv, cli_args *a) {
  const char *max_text = "0";
  a->template_name = "raw";
  for (int i = 2; i < argc; ++i) {
    const char *names[] = {"--tokenizer", "--template", "--max-prompt-tokens", "-o"};
    const char **slots[] = {&a->tokenizer, &a->template_name, &max_text, &a->out};
    int matched = 0;
    for (int k = 0; k < 4 && !matched; ++k) {
      matched = cli_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return cli_usage_error(&cli_verb_data, "%s needs a value", names[k]);
    }
    if (matched) continue;
    if (strcmp(argv[i], "--drop-long") == 0) {
      a->drop_long = 1;
      continue;
    }
    if (argv[i][0] == '-' || a->file) return cli_usage_error(&cli_verb_data, "unexpected argument '%s'", argv[i]);
    a->file = argv[i];
  }
  if (!a->file || !a->tokenizer || !a->out)
    return cli_usage_error(&cli_verb_data, "import needs PROMPTS.jsonl, --tokenizer and -o");
  if (cli_parse_i64(max_text, 0, INT32_MAX, &a->max_prompt))
    return cli_usage_error(&cli_verb_data, "--max-prompt-tokens must be >= 0");
  return CLI_OK;
}

static int import_prompts(const cli_args *a) {
  if (cli_make_parent_dirs(a->out)) return CLI_FAILED;
  drl_text_import_options o = {a->template_name, (int)a->max_prompt, a->drop_long};
  drl_text_import_stats s;
  if (drl_text_import(a->file, a->tokenizer, &o, a->out, &s) != DRL_OK) return cli_fail(a->file);
  printf("wrote %lld prompts (longest %lld tokens; %lld dropped as too long) to %s\n", (long long)s.written,
         (long long)s.longest_prompt, (long long)s.dropped, a->out);
  return CLI_OK;
}

static int parse_data(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  if (argc >= 2 && strcmp(argv[1], "import") == 0) {
    a->sub = argv[1];
    return parse_import(argc, argv, a);
  }
  if (argc >= 2 && strcmp(argv[1], "gen") == 0) {
    a->sub = argv[1];
    return parse_gen(argc, argv, a);
  }
  if (argc >= 2 && strcmp(argv[1], "info") == 0) {
    a->sub = argv[1];
    if (argc != 3) return cli_usage_error(&cli_verb_data, "info needs exactly one FILE.h5");
    a->file = argv[2];
    return CLI_OK;
  }
  return cli_usage_error(&cli_verb_data, argc < 2 ? "missing sub-command%s" : "unknown sub-command '%s'",
                         argc < 2 ? "" : argv[1]);
}

static int gen(const cli_args *a) {
  if (cli_make_parent_dirs(a->out)) return CLI_FAILED;
  drl_dataset ds;
  if (drl_task_generate(a->task, a->n, (uint64_t)a->seed, (int)a->size, &ds) != DRL_OK)
    return cli_fail("generating the dataset");
  drl_status st = drl_dataset_write(a->out, &ds);
  drl_dataset_free(&ds);
  if (st != DRL_OK) return cli_fail(a->out);
  printf("wrote %lld %s examples (seed %lld) to %s\n", a->n, a->task, a->seed, a->out);
  return CLI_OK;
}

static void print_example(const char *label, const drl_dataset *ds, const drl_token_seqs *s, int64_t i) {
  char text[512];
  int64_t len = s->offsets[i + 1] - s->offsets[i];
  if (len > (int64_t)sizeof text - 1) len = (int64_t)sizeof text - 1;
  if (drl_vocab_decode(ds->vocab, s->tokens + s->offsets[i], len, text, sizeof text) != DRL_OK)
    snprintf(text, sizeof text, "<undecodable>");
  printf("  %s[%lld] %s\n", label, (long long)i, text);
}

static void print_lengths(const char *label, const drl_token_seqs *s) {
  int64_t lo = INT64_MAX, hi = 0;
  for (int64_t i = 0; i < s->n; ++i) {
    int64_t len = s->offsets[i + 1] - s->offsets[i];
    lo = len < lo ? len : lo;
    hi = len > hi ? len : hi;
  }
  if (s->n == 0) lo = 0;
  printf("%-8s %lld sequences, %lld tokens, length %lld..%lld (mean %.2f)\n", label, (long long)s->n,
         (long long)s->offsets[s->n], (long long)lo, (long long)hi,
         s->n ? (double)s->offsets[s->n] / (double)s->n : 0.0);
}

static int info(const char *path) {
  drl_dataset ds;
  if (drl_dataset_read(path, &ds) != DRL_OK) {
    if (cli_is_checkpoint(path)) {
      fprintf(stderr, "dynrl: error: %s is a checkpoint, not a dataset: `dynrl config print %s` shows its "
              "configuration\n", path, path);
      return CLI_FAILED;
    }
    return cli_fail(path);
  }
  printf("file     %s\ntask     %s\nformat   %d\n", path, ds.task, (int)ds.format_version);
  if (drl_dataset_is_text(&ds)) {
    printf("tokens   %d ids (tokenizer %s), template %s\n", (int)ds.vocab_size, ds.tokenizer_hash, ds.template_name);
    print_lengths("prompts", &ds.prompts);
    for (int64_t i = 0; i < ds.prompts.n && i < 3; ++i)
      printf("  answer[%lld] %.*s\n", (long long)i, (int)(ds.answer_text_offsets[i + 1] - ds.answer_text_offsets[i]),
             ds.answer_text + ds.answer_text_offsets[i]);
    drl_dataset_free(&ds);
    return CLI_OK;
  }
  printf("vocab    \"%s\" (%zu tokens)\n", ds.vocab, strlen(ds.vocab));
  print_lengths("prompts", &ds.prompts);
  if (ds.answers.n) print_lengths("answers", &ds.answers);
  for (int64_t i = 0; i < ds.prompts.n && i < 3; ++i) {
    print_example("prompt", &ds, &ds.prompts, i);
    if (ds.answers.n) print_example("answer", &ds, &ds.answers, i);
  }
  drl_dataset_free(&ds);
  return CLI_OK;
}

static int run_data(int argc, char **argv) {
  cli_args args;
  int rc = parse_data(argc, argv, &args);
  if (rc != CLI_OK) return rc;
  if (strcmp(args.sub, "import") == 0) return import_prompts(&args);
  return strcmp(args.sub, "gen") == 0 ? gen(&args) : info(args.file);
}

const cli_verb cli_verb_data = {"data", "generate or inspect dataset files", usage, parse_data, run_data};
