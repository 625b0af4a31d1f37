/* dynrl import HF_DIR -o POLICY.h5 and dynrl export CKPT.h5 -o DIR: policies to and from Hugging Face directories. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine/hf_model.h"

static const char import_usage[] =
    "usage: dynrl import HF_DIR -o POLICY.h5\n"
    "\n"
    "Converts a Hugging Face directory (config.json and model.safetensors, or shards with\n"
    "model.safetensors.index.json) of a Llama, Qwen2, Qwen3 or Mistral causal LM into a dynrl policy file: the\n"
    "weights in fp32, the config.json and where it came from. trainer.init_from takes the file or the directory.\n";

static const char export_usage[] =
    "usage: dynrl export CKPT.h5 -o DIR [--dtype bf16|fp32] [--shard-mb N]\n"
    "\n"
    "Writes the policy of a checkpoint (or of a policy file from `dynrl import`) as a Hugging Face directory that\n"
    "transformers' AutoModelForCausalLM.from_pretrained and vLLM load as it is: model.safetensors (bf16 by default,\n"
    "rounded to nearest even; shards of at most N MiB past that, default 4096, with an index), config.json and\n"
    "generation_config.json, and the tokenizer files of the directory the policy came from when it still exists.\n"
    "A policy dynrl initialised itself is written as a Llama.\n";

/* Both verbs: one positional path and -o; export also --dtype and --shard-mb. */
static int parse_paths(const cli_verb *verb, int argc, char **argv, cli_args *a, int is_export) {
  memset(a, 0, sizeof *a);
  const char *dtype = "bf16", *shard = "4096";
  for (int i = 1; i < argc; ++i) {
    const char *names[] = {"-o", "--dtype", "--shard-mb"};
    const char **slots[] = {&a->out, &dtype, &shard};
    int matched = 0;
    for (int k = 0; k < (is_export ? 3 : 1) && !matched; ++k) {
      matched = cli_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return cli_usage_error(verb, "%s needs a value", names[k]);
    }
    if (matched) continue;
    if (argv[i][0] == '-') return cli_usage_error(verb, "unknown option '%s'", argv[i]);
    if (a->file) return cli_usage_error(verb, "more than one input ('%s', '%s')", a->file, argv[i]);
    a->file = argv[i];
  }
  if (!a->file) return cli_usage_error(verb, "missing %s", is_export ? "CKPT.h5" : "HF_DIR");
  if (!a->out) return cli_usage_error(verb, "missing -o %s", is_export ? "DIR" : "POLICY.h5");
  if (is_export) {
    if (strcmp(dtype, "bf16") == 0) a->task = "BF16";
    else if (strcmp(dtype, "fp32") == 0) a->task = "F32";
    else return cli_usage_error(verb, "--dtype must be bf16 or fp32, not '%s'", dtype);
    if (cli_parse_i64(shard, 1, 1 << 20, &a->size)) return cli_usage_error(verb, "--shard-mb must be 1..1048576");
  }
  return CLI_OK;
}

static int parse_import(int argc, char **argv, cli_args *a) { return parse_paths(&cli_verb_import, argc, argv, a, 0); }
static int parse_export(int argc, char **argv, cli_args *a) { return parse_paths(&cli_verb_export, argc, argv, a, 1); }

static int run_import(int argc, char **argv) {
  cli_args a;
  int rc = parse_import(argc, argv, &a);
  if (rc != CLI_OK) return rc;
  if (cli_make_parent_dirs(a.out)) return CLI_FAILED;
  if (drl_hf_import(a.file, a.out) != DRL_OK) return cli_fail(a.file);
  printf("imported %s to %s\n", a.file, a.out);
  return CLI_OK;
}

static int run_export(int argc, char **argv) {
  cli_args a;
  int rc = parse_export(argc, argv, &a);
  if (rc != CLI_OK) return rc;
  if (cli_make_parent_dirs(a.out)) return CLI_FAILED;
  if (drl_hf_export(a.file, a.out, a.task, (uint64_t)a.size << 20) != DRL_OK) return cli_fail(a.file);
  printf("exported %s to %s (%s)\n", a.file, a.out, strcmp(a.task, "BF16") == 0 ? "bf16" : "fp32");
  return CLI_OK;
}

const cli_verb cli_verb_import = {"import", "convert a Hugging Face model directory into a dynrl policy file",
                                  import_usage, parse_import, run_import};
const cli_verb cli_verb_export = {"export", "write a checkpoint's policy as a Hugging Face model directory",
                                  export_usage, parse_export, run_export};
