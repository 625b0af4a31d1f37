/* Byte-level BPE encode throughput: single-thread MB/s of UTF-8 text encoded line by line, for each fixture
 * tokenizer (tests/fixtures/tokenizer: qwen with NFC, llama with ignore_merges, gpt2's pattern) over the parity corpus
 * repeated R times (the per-piece cache is warm after the first pass, as it is in a long run; the first pass is
 * reported apart). bench/tokenizer_compare.sh runs HF tokenizers on the same corpus and prints the ratio.
 *   bench_tokenizer [--dir DIR] [--repeat R] [--quick]
 * DIR holds corpus.jsonl and NAME/tokenizer.json (default: the source tree's tests/fixtures/tokenizer). The last line
 * per tokenizer is machine-readable: "encode NAME MB/s TOKENS/s". */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "data/bpe.h"

typedef struct corpus {
  char **text;
  size_t *len, n, bytes;
} corpus;

static int read_corpus(const char *path, corpus *c) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  char *line = NULL;
  size_t cap = 0, have = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, f)) > 0) {
    json_error_t err;
    json_t *v = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!json_is_string(v)) {
      fprintf(stderr, "%s: line %zu is not a JSON string\n", path, c->n + 1);
      return 1;
    }
    if (c->n == have) {
      have = have ? 2 * have : 4096;
      c->text = (char **)realloc(c->text, have * sizeof *c->text);
      c->len = (size_t *)realloc(c->len, have * sizeof *c->len);
    }
    c->len[c->n] = json_string_length(v);
    c->text[c->n] = (char *)malloc(c->len[c->n] + 1);
    memcpy(c->text[c->n], json_string_value(v), c->len[c->n] + 1);
    c->bytes += c->len[c->n++];
    json_decref(v);
  }
  free(line);
  fclose(f);
  return c->n == 0;
}

/* Seconds to encode every line once; *tokens counts the ids. */
static double pass(drl_tokenizer *t, const corpus *c, drl_ids *ids, double *tokens) {
  double t0 = bench_now();
  for (size_t i = 0; i < c->n; ++i) {
    if (drl_tokenizer_encode(t, c->text[i], (int64_t)c->len[i], 0, ids) != DRL_OK) {
      fprintf(stderr, "encode: %s\n", drl_last_error());
      exit(1);
    }
    *tokens += (double)ids->n;
  }
  return bench_now() - t0;
}

int main(int argc, char **argv) {
  const char *dir = DRL_TOKENIZER_FIXTURES;
  int repeat = 50;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) repeat = 3;
    else {
      fprintf(stderr, "usage: bench_tokenizer [--dir DIR] [--repeat R] [--quick]\n");
      return 2;
    }
  }
  if (repeat < 1) repeat = 1;
  char path[4096];
  snprintf(path, sizeof path, "%s/corpus.jsonl", dir);
  corpus c;
  if (read_corpus(path, &c)) return 1;
  drl_device cpu = {0};
  cpu.backend = DRL_BACKEND_CPU;
  bench_write_header(stdout, "Tokenizer encode (byte-level BPE, one thread)", &cpu);
  printf("%zu lines, %.1f KB, encoded line by line, %d passes\n\n", c.n, (double)c.bytes / 1e3, repeat);
  printf("| tokenizer | first pass MB/s | MB/s | tokens/s |\n|---|---:|---:|---:|\n");
  const char *names[3] = {"qwen", "llama", "gpt2"};
  char machine[3][128];
  for (int k = 0; k < 3; ++k) {
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, names[k]);
    drl_tokenizer t;
    if (drl_bpe_load(path, &t) != DRL_OK) {
      fprintf(stderr, "%s\n", drl_last_error());
      return 1;
    }
    drl_ids ids = {0};
    double tokens = 0, cold = pass(&t, &c, &ids, &tokens), secs = 0;
    tokens = 0;
    for (int r = 0; r < repeat; ++r) secs += pass(&t, &c, &ids, &tokens);
    double mbs = (double)c.bytes * repeat / secs / 1e6;
    printf("| %s | %.1f | %.1f | %.3g |\n", names[k], (double)c.bytes / cold / 1e6, mbs, tokens / secs);
    snprintf(machine[k], sizeof machine[k], "encode %s %.3f %.0f", names[k], mbs, tokens / secs);
    drl_ids_free(&ids);
    drl_tokenizer_free(&t);
  }
  printf("\n");
  for (int k = 0; k < 3; ++k) printf("%s\n", machine[k]);
  for (size_t i = 0; i < c.n; ++i) free(c.text[i]);
  free(c.text), free(c.len);
  return 0;
}
