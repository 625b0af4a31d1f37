// Configuration: defaults from the embedded YAML, files and --set overrides on top, messages that name the key,
// the value and what is allowed, and printing that loads back to the same config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/config.h"
#include "kernels/status.h"

namespace {

::testing::AssertionResult Contains(const std::string &text, const std::string &part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in: " << text;
}

std::string last_error() { return drl_last_error(); }

// Loads yaml over the defaults; expects failure with DRL_ERR_CONFIG and returns the message.
std::string load_error(const std::string &yaml, const char *origin = "test.yaml") {
  drl_config cfg;
  drl_clear_error();
  drl_status st = drl_config_load_string(&cfg, yaml.c_str(), origin);
  EXPECT_EQ(st, DRL_ERR_CONFIG) << "yaml:\n" << yaml << "\nmessage: " << last_error();
  return last_error();
}

drl_config load_ok(const std::string &yaml) {
  drl_config cfg;
  drl_status st = drl_config_load_string(&cfg, yaml.c_str(), "test.yaml");
  EXPECT_EQ(st, DRL_OK) << last_error() << "\nyaml:\n" << yaml;
  return cfg;
}

drl_config defaults() {
  drl_config cfg;
  EXPECT_EQ(drl_config_load_default(&cfg), DRL_OK) << last_error();
  return cfg;
}

std::string to_yaml(const drl_config &cfg) {
  char *text = nullptr;
  EXPECT_EQ(drl_config_to_yaml(&cfg, &text), DRL_OK) << last_error();
  std::string s = text ? text : "";
  free(text);
  return s;
}

std::string temp_path(const char *name) {
  const ::testing::TestInfo *t = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "dynrl_cfg_" + t->name() + "_" + name;
}

std::string write_file(const char *name, const std::string &bytes) {
  std::string path = temp_path(name);
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  return path;
}

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void set_ok(drl_config *cfg, const char *assignment) {
  EXPECT_EQ(drl_config_set(cfg, assignment), DRL_OK) << assignment << ": " << last_error();
}

}  // namespace

TEST(Config, DefaultLoadsAndValidates) {
  drl_config cfg;
  memset(&cfg, 0xab, sizeof cfg);
  ASSERT_EQ(drl_config_load_default(&cfg), DRL_OK) << last_error();
  EXPECT_EQ(drl_config_validate(&cfg), DRL_OK) << last_error();
  drl_config again = defaults();
  EXPECT_TRUE(drl_config_equal(&cfg, &again));
  drl_config_free(&cfg);
  drl_config_free(&cfg);  // idempotent
}

TEST(Config, DefaultValues) {
  drl_config c = defaults();
  EXPECT_EQ(c.run.seed, 1234u);
  EXPECT_STREQ(c.run.out_dir, "run");
  EXPECT_EQ(c.run.device, DRL_CFG_DEVICE_AUTO);
  EXPECT_EQ(c.run.device_index, 0);
  EXPECT_EQ(c.run.threads, 0);
  EXPECT_EQ(c.run.log_every, 10);
  EXPECT_FALSE(c.run.quiet);
  EXPECT_EQ(c.run.log_level, DRL_CFG_LOG_INFO);
  EXPECT_EQ(c.model.vocab_size, 0);
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.n_heads, 4);
  EXPECT_EQ(c.model.n_kv_heads, 4);
  EXPECT_EQ(c.model.d_ff, 512);
  EXPECT_EQ(c.model.max_seq, 64);
  EXPECT_TRUE(c.model.tied_embeddings);
  EXPECT_EQ(c.model.ffn, DRL_CFG_FFN_DENSE);
  EXPECT_EQ(c.model.rope_theta, 10000.0);
  EXPECT_EQ(c.model.init_std, 0.02);
  EXPECT_EQ(c.model.norm_eps, 1e-5);
  EXPECT_EQ(c.data.task, DRL_CFG_TASK_SORT);
  EXPECT_STREQ(c.data.path, "");
  EXPECT_EQ(c.data.n_train, 20000);
  EXPECT_EQ(c.data.n_eval, 256);
  EXPECT_EQ(c.data.size, 0);
  EXPECT_EQ(c.optim.name, DRL_CFG_OPTIM_ADAMW);
  EXPECT_EQ(c.optim.lr, 2e-3);
  EXPECT_EQ(c.optim.lr_schedule, DRL_CFG_LR_COSINE);
  EXPECT_EQ(c.optim.warmup_steps, 50);
  EXPECT_EQ(c.optim.min_lr_ratio, 0.1);
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_EQ(c.optim.weight_decay, 0.0);
  EXPECT_EQ(c.optim.grad_clip, 1.0);
  EXPECT_FALSE(c.optim.tf32);
  ASSERT_EQ(c.trainer.phases.count, 2);
  EXPECT_EQ(c.trainer.phases.items[0], DRL_CFG_PHASE_SFT);
  EXPECT_EQ(c.trainer.phases.items[1], DRL_CFG_PHASE_GRPO);
  EXPECT_EQ(c.trainer.eval_every, 100);
  EXPECT_EQ(c.trainer.ckpt_every, 500);
  EXPECT_FALSE(c.trainer.resume);
  EXPECT_EQ(c.sft.steps, 100);
  EXPECT_EQ(c.sft.batch_size, 32);
  EXPECT_EQ(c.grpo.steps, 500);
  EXPECT_EQ(c.grpo.prompts_per_step, 8);
  EXPECT_EQ(c.grpo.group_size, 16);
  EXPECT_EQ(c.grpo.temperature, 1.0);
  EXPECT_EQ(c.grpo.lr, 1e-4);
  EXPECT_EQ(c.grpo.top_k, 0);
  EXPECT_EQ(c.grpo.top_p, 1.0);
  EXPECT_EQ(c.grpo.max_new_tokens, 16);
  EXPECT_EQ(c.grpo.clip_low, 0.2);
  EXPECT_EQ(c.grpo.clip_high, 0.28);
  EXPECT_EQ(c.grpo.kl_beta, 0.0);
  EXPECT_EQ(c.grpo.ppo_epochs, 1);
  EXPECT_EQ(c.grpo.minibatches, 1);
}

// The table's default texts are written the way the printer writes them, so the printed default is the embedded
// text itself (and `dynrl config print` shows the same commented layout).
TEST(Config, PrintedDefaultIsTheEmbeddedText) {
  drl_config c = defaults();
  EXPECT_EQ(to_yaml(c), std::string(drl_config_default_yaml()));
}

TEST(Config, ExampleFileMatchesEmbeddedDefault) {
  const std::string path = DRL_SOURCE_DIR "/configs/default.yaml";
  drl_config from_file;
  ASSERT_EQ(drl_config_load_file(&from_file, path.c_str()), DRL_OK) << last_error();
  drl_config c = defaults();
  EXPECT_TRUE(drl_config_equal(&from_file, &c));
  EXPECT_EQ(read_file(path), std::string(drl_config_default_yaml()))
      << "configs/default.yaml differs from the embedded default: regenerate it from drl_config_default_yaml()";
}

TEST(Config, PartialFileOverridesOnlyWhatItNames) {
  std::string path = write_file("partial.yaml",
                                "# a partial config\n"
                                "model:\n"
                                "  d_model: 256\n"
                                "grpo: {temperature: 0.7, group_size: 8}\n"
                                "run:\n"
                                "  out_dir: runs/a\n");
  drl_config got;
  ASSERT_EQ(drl_config_load_file(&got, path.c_str()), DRL_OK) << last_error();
  drl_config want = defaults();
  EXPECT_FALSE(drl_config_equal(&got, &want));
  want.model.d_model = 256;
  want.grpo.temperature = 0.7;
  want.grpo.group_size = 8;
  strcpy(want.run.out_dir, "runs/a");
  EXPECT_TRUE(drl_config_equal(&got, &want)) << to_yaml(got);
  remove(path.c_str());
}

TEST(Config, LoadStartsFromTheDefaultsNotFromCfg) {
  drl_config cfg = defaults();
  cfg.model.n_layers = 9;
  strcpy(cfg.data.path, "old.h5");
  ASSERT_EQ(drl_config_load_string(&cfg, "sft: {steps: 7}\n", nullptr), DRL_OK) << last_error();
  drl_config want = defaults();
  want.sft.steps = 7;
  EXPECT_TRUE(drl_config_equal(&cfg, &want)) << to_yaml(cfg);
}

TEST(Config, EmptyTextCommentsAndEmptyDocumentGiveDefaults) {
  drl_config d = defaults();
  for (const char *text : {"", "# nothing here\n", "---\n", "--- {}\n", "model: {}\n"}) {
    drl_config c = load_ok(text);
    EXPECT_TRUE(drl_config_equal(&c, &d)) << "'" << text << "'";
  }
}

TEST(Config, JsonIsYamlToo) {
  drl_config c = load_ok("{\"run\": {\"seed\": 5, \"device\": \"cuda\"}, \"trainer\": {\"phases\": [\"grpo\"]}}");
  EXPECT_EQ(c.run.seed, 5u);
  EXPECT_EQ(c.run.device, DRL_CFG_DEVICE_CUDA);
  ASSERT_EQ(c.trainer.phases.count, 1);
  EXPECT_EQ(c.trainer.phases.items[0], DRL_CFG_PHASE_GRPO);
}

TEST(Config, RoundTripDefault) {
  drl_config c = defaults();
  std::string text = to_yaml(c);
  drl_config back = load_ok(text);
  EXPECT_TRUE(drl_config_equal(&c, &back));
}

TEST(Config, RoundTripNonDefaultValues) {
  drl_config c = defaults();
  c.run.seed = UINT64_MAX;
  strcpy(c.run.out_dir, "my run: with spaces # and a hash");
  c.run.device = DRL_CFG_DEVICE_CUDA;
  c.run.device_index = 3;
  c.run.threads = 1024;
  c.run.quiet = true;
  c.run.log_level = DRL_CFG_LOG_DEBUG;
  c.model.vocab_size = 1048576;
  c.model.d_model = 96;
  c.model.n_heads = 6;
  c.model.n_kv_heads = 2;
  c.model.tied_embeddings = false;
  c.model.ffn = DRL_CFG_FFN_MOE;
  c.model.rope_theta = 500000.0;
  c.model.init_std = 1.0 / 3.0;
  c.model.norm_eps = 1e-6;
  c.data.task = DRL_CFG_TASK_KEYFORK;
  strcpy(c.data.path, "data dir/\"quoted\" \\ back\tslash \xc3\xbcn\xc3\xaf.h5");
  c.optim.name = DRL_CFG_OPTIM_SPSA;
  c.optim.lr = 3e-4;
  c.optim.lr_schedule = DRL_CFG_LR_CONSTANT;
  c.optim.min_lr_ratio = 0.1;
  c.optim.beta2 = 0.999;
  c.optim.eps = 1e-12;
  c.optim.weight_decay = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
  c.optim.grad_clip = 0.0;
  c.optim.tf32 = true;
  c.trainer.phases.count = 1;
  c.trainer.phases.items[0] = DRL_CFG_PHASE_GRPO;
  c.trainer.resume = true;
  c.grpo.temperature = 0.7;
  c.grpo.top_p = 0.95;
  c.grpo.kl_beta = 5e-324;  // the smallest subnormal
  c.grpo.clip_high = 1e-300;
  ASSERT_EQ(drl_config_validate(&c), DRL_OK) << last_error();

  std::string text = to_yaml(c);
  EXPECT_TRUE(Contains(text, "lr: 0.0003\n"));
  EXPECT_TRUE(Contains(text, "min_lr_ratio: 0.1\n"));
  EXPECT_TRUE(Contains(text, "rope_theta: 500000.0\n"));
  EXPECT_TRUE(Contains(text, "weight_decay: 0.30000000000000004\n"));
  EXPECT_TRUE(Contains(text, "out_dir: \"my run: with spaces # and a hash\"\n"));
  EXPECT_TRUE(Contains(text, "phases: [grpo]\n"));
  drl_config back = load_ok(text);
  EXPECT_TRUE(drl_config_equal(&c, &back)) << text << "\n---\n" << to_yaml(back);
  EXPECT_EQ(to_yaml(back), text);
}

// Strings YAML would read as something else, or mangle, come back unchanged.
TEST(Config, RoundTripTrickyStrings) {
  const char *strings[] = {"yes",  "No",     "null", "~",     "123",       "1e5",    "0x1F",  ".inf", "-dash",
                           " lead", "trail ", "a: b", "a #b",  "[list]",    "{map}",  "&anchor", "*alias", "!tag",
                           "%pct", "@at",    "`bq`", "'sq'",  "\"dq\"",    "back\\slash", "new\nline", "\x01\x7f",
                           "\xc2\x85 NEL", "\xef\xbf\xbe", "plain/path_1.2-x", ""};
  for (const char *s : strings) {
    drl_config c = defaults();
    strcpy(c.data.path, s);
    std::string text = to_yaml(c);
    drl_config back = load_ok(text);
    EXPECT_STREQ(back.data.path, s) << text;
  }
}

TEST(Config, SetEachType) {
  drl_config c = defaults();
  set_ok(&c, "run.seed=18446744073709551615");
  EXPECT_EQ(c.run.seed, UINT64_MAX);
  set_ok(&c, "model.d_model=256");
  EXPECT_EQ(c.model.d_model, 256);
  set_ok(&c, "optim.lr=3e-4");
  EXPECT_EQ(c.optim.lr, 3e-4);
  set_ok(&c, "run.quiet=true");
  EXPECT_TRUE(c.run.quiet);
  set_ok(&c, "model.tied_embeddings=no");
  EXPECT_FALSE(c.model.tied_embeddings);
  set_ok(&c, "run.out_dir=my run: 1 # not a comment");  // strings are taken verbatim
  EXPECT_STREQ(c.run.out_dir, "my run: 1 # not a comment");
  set_ok(&c, "data.path=");
  EXPECT_STREQ(c.data.path, "");
  set_ok(&c, "run.device=cuda");
  EXPECT_EQ(c.run.device, DRL_CFG_DEVICE_CUDA);
  set_ok(&c, "trainer.phases=grpo");
  ASSERT_EQ(c.trainer.phases.count, 1);
  EXPECT_EQ(c.trainer.phases.items[0], DRL_CFG_PHASE_GRPO);
  set_ok(&c, "trainer.phases=grpo, sft");
  ASSERT_EQ(c.trainer.phases.count, 2);
  EXPECT_EQ(c.trainer.phases.items[0], DRL_CFG_PHASE_GRPO);
  EXPECT_EQ(c.trainer.phases.items[1], DRL_CFG_PHASE_SFT);
  set_ok(&c, "trainer.phases=[sft,grpo]");
  EXPECT_EQ(c.trainer.phases.items[0], DRL_CFG_PHASE_SFT);
  set_ok(&c, " grpo.top_p = 0.5 ");  // spaces around the key and a number are ignored
  EXPECT_EQ(c.grpo.top_p, 0.5);
  EXPECT_EQ(drl_config_validate(&c), DRL_OK) << last_error();
}

TEST(Config, SetRejectsBadInputAndLeavesCfgUnchanged) {
  drl_config c = defaults();
  const drl_config before = c;
  struct Case {
    const char *assignment;
    const char *parts[3];
  } cases[] = {
      {"model.d_model", {"section.key=value", nullptr, nullptr}},
      {"d_model=3", {"section.key=value", nullptr, nullptr}},
      {"model.d_modle=3", {"model.d_modle", "d_model", "n_layers"}},
      {"modle.d_model=3", {"unknown section 'modle'", "model", nullptr}},
      {"model.d_model=abc", {"model.d_model", "integer", "'abc'"}},
      {"model.d_model=0", {"model.d_model", "0 is out of range", "[1, 65536]"}},
      {"model.d_model=99999999999999999999", {"model.d_model", "out of range", nullptr}},
      {"run.seed=-1", {"run.seed", "unsigned", nullptr}},
      {"optim.lr=fast", {"optim.lr", "number", nullptr}},
      {"optim.lr=nan", {"optim.lr", "finite", nullptr}},
      {"run.quiet=maybe", {"run.quiet", "true or false", nullptr}},
      {"run.device=gpu", {"run.device", "cpu, cuda", "'gpu'"}},
      {"run.out_dir=", {"run.out_dir", "empty", nullptr}},
      {"run.out_dir=\xff\xfe", {"run.out_dir", "UTF-8", nullptr}},
      {"trainer.phases=", {"trainer.phases", "empty", "sft, grpo"}},
      {"trainer.phases=sft,sft", {"trainer.phases", "'sft' appears more than once", nullptr}},
      {"trainer.phases=sft,", {"trainer.phases", "''", nullptr}},
      {"trainer.phases=sft,rl", {"trainer.phases", "'rl' is not one of: sft, grpo", nullptr}},
  };
  for (const Case &k : cases) {
    drl_clear_error();
    EXPECT_EQ(drl_config_set(&c, k.assignment), DRL_ERR_CONFIG) << k.assignment;
    for (const char *part : k.parts)
      if (part) {
        EXPECT_TRUE(Contains(last_error(), part)) << k.assignment;
      }
    EXPECT_TRUE(drl_config_equal(&c, &before)) << k.assignment;
  }
}

TEST(Config, UnknownKeyNamesPathAndAllowedKeys) {
  std::string msg = load_error("run:\n  seed: 1\nmodel:\n  d_model: 128\n  d_modle: 64\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:5:"));
  EXPECT_TRUE(Contains(msg, "'model.d_modle'"));
  EXPECT_TRUE(Contains(msg, "did you mean 'd_model'"));
  EXPECT_TRUE(Contains(msg, "vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq, tied_embeddings, ffn, "
                            "rope_theta, init_std, norm_eps"));
}

TEST(Config, UnknownSectionListsSections) {
  std::string msg = load_error("modle:\n  d_model: 128\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:1:"));
  EXPECT_TRUE(Contains(msg, "unknown section 'modle'"));
  EXPECT_TRUE(Contains(msg, "run, model, moe, data, optim, trainer, sft, grpo, d3s, dist, spsa, flow, tree"));
}

TEST(Config, WrongTypeNamesKeyAndExpectedType) {
  std::string msg = load_error("model:\n  d_model: abc\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:2:"));
  EXPECT_TRUE(Contains(msg, "model.d_model: expected an integer in [1, 65536], got 'abc'"));

  // A lax reader (strtoll/strtod, YAML 1.1 octal) would take these as 1, 0.001 and 8; they are refused.
  EXPECT_TRUE(Contains(load_error("model: {d_model: 1.5}"), "model.d_model: expected an integer"));
  EXPECT_TRUE(Contains(load_error("optim: {lr: 1e-3x}"), "optim.lr: expected a number"));
  EXPECT_TRUE(Contains(load_error("model: {n_layers: 010}"), "leading zeros"));
  EXPECT_TRUE(Contains(load_error("data: {n_train: 20_000}"), "data.n_train: expected an integer"));
  EXPECT_TRUE(Contains(load_error("run: {quiet: maybe}"), "run.quiet: expected true or false, got 'maybe'"));
  EXPECT_TRUE(Contains(load_error("run: {seed: -1}"), "run.seed: expected an unsigned 64-bit integer"));
  EXPECT_TRUE(Contains(load_error("optim: {lr: .inf}"), "optim.lr"));
  EXPECT_TRUE(Contains(load_error("model: {d_model: [1, 2]}"), "model.d_model: expected an integer in [1, 65536], "
                                                               "got a list"));
  EXPECT_TRUE(Contains(load_error("model: {d_model: }"), "model.d_model: expected an integer in [1, 65536], got an "
                                                         "empty value"));
  EXPECT_TRUE(Contains(load_error("run: {out_dir: {a: 1}}"), "run.out_dir: expected a string"));
  EXPECT_TRUE(Contains(load_error("trainer: {phases: sft}"), "trainer.phases: expected a list"));
  EXPECT_TRUE(Contains(load_error("model: 3"), "section 'model': expected a mapping of keys"));
}

TEST(Config, OutOfRangeNamesValueAndRange) {
  std::string msg = load_error("model:\n  d_model: 0\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:2:"));
  EXPECT_TRUE(Contains(msg, "model.d_model: 0 is out of range [1, 65536]"));
  EXPECT_TRUE(Contains(load_error("grpo: {top_p: 0}"), "grpo.top_p: 0.0 is out of range (0, 1]"));
  EXPECT_TRUE(Contains(load_error("grpo: {top_p: 1.5}"), "grpo.top_p: 1.5 is out of range (0, 1]"));
  EXPECT_TRUE(Contains(load_error("optim: {beta1: 1.0}"), "optim.beta1: 1.0 is out of range [0, 1)"));
  EXPECT_TRUE(Contains(load_error("grpo: {group_size: 0}"), "grpo.group_size: 0 is out of range [1, 65536]"));
  EXPECT_TRUE(Contains(load_error("run: {threads: 1025}"), "run.threads: 1025 is out of range [0, 1024]"));
  EXPECT_TRUE(Contains(load_error("optim: {lr: -0.001}"), "optim.lr: -0.001 is out of range [0, 10]"));
  EXPECT_TRUE(Contains(load_error("model: {d_model: 99999999999}"), "model.d_model: 99999999999 is out of range"));
  EXPECT_TRUE(Contains(load_error("optim: {eps: 1e-400}"), "optim.eps: '1e-400' is not a finite number"));
  EXPECT_TRUE(Contains(load_error("run: {out_dir: ''}"), "run.out_dir: must not be empty"));
  std::string long_dir(DRL_CONFIG_STR_CAP, 'x');
  EXPECT_TRUE(Contains(load_error("run: {out_dir: " + long_dir + "}"), "run.out_dir: the string is 1024 bytes long"));
}

TEST(Config, BadEnumListsAllowedValues) {
  std::string msg = load_error("run:\n  device: gpu\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:2:"));
  EXPECT_TRUE(Contains(msg, "run.device: 'gpu' is not one of: auto, cpu, cuda"));
  EXPECT_TRUE(Contains(load_error("run: {log_level: verbose}"), "'verbose' is not one of: error, warn, info, debug"));
  EXPECT_TRUE(Contains(load_error("run: {device: CPU}"), "'CPU' is not one of: auto, cpu, cuda"));
  EXPECT_TRUE(Contains(load_error("trainer: {phases: [sft, ppo]}"), "trainer.phases: 'ppo' is not one of: sft, grpo"));
}

TEST(Config, MalformedYamlGivesLine) {
  std::string msg = load_error("run:\n  seed: 1\nmodel:\n  d_model: 128\n n_layers: 4\n");
  EXPECT_TRUE(Contains(msg, "malformed YAML"));
  EXPECT_TRUE(Contains(msg, "test.yaml:5:"));
  msg = load_error("model:\n  d_model: 128\n  n_heads: [4, 2\n");
  EXPECT_TRUE(Contains(msg, "malformed YAML"));
  EXPECT_TRUE(Contains(msg, "test.yaml:4:"));
  EXPECT_TRUE(Contains(msg, "line 3"));  // where the unclosed list starts
  msg = load_error("run:\n\tseed: 1\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:2:"));
}

TEST(Config, EmptyPhasesRejected) {
  std::string msg = load_error("trainer:\n  phases: []\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:2:"));
  EXPECT_TRUE(Contains(msg, "trainer.phases: the list is empty; give at least one of: sft, grpo"));
}

TEST(Config, RepeatedPhaseRejected) {
  std::string msg = load_error("trainer:\n  phases:\n    - sft\n    - grpo\n    - sft\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:5:"));
  EXPECT_TRUE(Contains(msg, "trainer.phases: 'sft' appears more than once"));
}

TEST(Config, DuplicateKeysAndSectionsRejected) {
  std::string msg = load_error("model:\n  d_model: 128\n  d_model: 256\n");
  EXPECT_TRUE(Contains(msg, "test.yaml:3:"));
  EXPECT_TRUE(Contains(msg, "model.d_model is given twice (first at line 2)"));
  msg = load_error("model: {}\nrun: {}\nmodel: {}\n");
  EXPECT_TRUE(Contains(msg, "section 'model' is given twice (first at line 1)"));
}

TEST(Config, UnsupportedYamlFeaturesRejected) {
  EXPECT_TRUE(Contains(load_error("sft:\n"), "section 'sft' is empty"));
  EXPECT_TRUE(Contains(load_error("sft: {}\n---\ngrpo: {}\n"), "one YAML document"));
  EXPECT_TRUE(Contains(load_error("data: {path: \"a\\0b\"}\n"), "NUL"));
}

TEST(Config, MissingFileIsAnIoError) {
  std::string path = temp_path("does_not_exist.yaml");
  drl_config cfg;
  EXPECT_EQ(drl_config_load_file(&cfg, path.c_str()), DRL_ERR_IO);
  EXPECT_TRUE(Contains(last_error(), path));
  EXPECT_TRUE(Contains(last_error(), "No such file"));
}

TEST(Config, FileThatIsNotYamlRejected) {
  // An HDF5 signature and binary bytes: not UTF-8 text at all.
  std::string path = write_file("binary.h5", std::string("\x89HDF\r\n\x1a\n\0\0\0\0\x08\x08\0\x04\xff\xfe", 18));
  drl_config cfg;
  EXPECT_EQ(drl_config_load_file(&cfg, path.c_str()), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), path + ":1:"));
  EXPECT_TRUE(Contains(last_error(), "malformed YAML"));
  remove(path.c_str());

  // Text that parses as YAML but is not a config.
  path = write_file("notes.txt", "int main(void) { return 0; }\n");
  EXPECT_EQ(drl_config_load_file(&cfg, path.c_str()), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "not a dynrl config"));
  remove(path.c_str());

  path = write_file("list.yaml", "- run\n- model\n");
  EXPECT_EQ(drl_config_load_file(&cfg, path.c_str()), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "not a dynrl config"));
  remove(path.c_str());
}

TEST(Config, FailedLoadLeavesCfgUnchanged) {
  drl_config c = defaults();
  c.sft.steps = 42;
  const drl_config before = c;
  EXPECT_EQ(drl_config_load_string(&c, "sft: {steps: 7}\nmodel: {d_model: x}\n", "t"), DRL_ERR_CONFIG);
  EXPECT_TRUE(drl_config_equal(&c, &before));
}

TEST(Config, ValidateChecksRangesAndRulesBetweenKeys) {
  drl_config c = defaults();
  c.grpo.temperature = 0.0;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "grpo.temperature: 0.0 is out of range (0, 100]"));

  c = defaults();
  c.optim.lr = NAN;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "optim.lr: nan is not a finite number"));

  c = defaults();
  c.run.device = (drl_cfg_device)7;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "run.device: holds 7"));

  c = defaults();
  memset(c.run.out_dir, 'a', sizeof c.run.out_dir);
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "run.out_dir: the string is not NUL-terminated"));

  c = defaults();
  c.trainer.phases.count = 0;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "trainer.phases: the list is empty"));

  c = defaults();
  c.model.n_heads = 3;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "model.d_model (128) must be a multiple of model.n_heads (3)"));

  c = defaults();
  c.model.d_model = 100;
  c.model.n_heads = 4;  // head size 25
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "must be even"));

  c = defaults();
  c.model.n_kv_heads = 3;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "model.n_heads (4) must be a multiple of model.n_kv_heads (3)"));

  c = defaults();
  set_ok(&c, "grpo.loss=gspo");
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "set grpo.loss_agg=seq_mean_token_mean"));
  set_ok(&c, "grpo.loss_agg=seq_mean_token_mean");
  EXPECT_EQ(drl_config_validate(&c), DRL_OK) << last_error();

  // A file is validated as a whole once loaded, and the message names it.
  EXPECT_TRUE(Contains(load_error("model: {n_heads: 3}", "cross.yaml"), "cross.yaml: "));

  // --set checks one key; rules between keys wait for validate, so overrides may come in any order.
  c = defaults();
  set_ok(&c, "model.n_heads=6");  // 128 / 6 and 6 / 4 are invalid until the next two overrides
  set_ok(&c, "model.n_kv_heads=2");
  set_ok(&c, "model.d_model=96");
  EXPECT_EQ(drl_config_validate(&c), DRL_OK) << last_error();
}

TEST(Config, MoeFirstLayerMustLeaveAnMoeBlock) {
  drl_config c = defaults();
  c.moe.first_layer = 4;  // dense FFN: moe.* is unused
  EXPECT_EQ(drl_config_validate(&c), DRL_OK) << last_error();
  c.model.ffn = DRL_CFG_FFN_MOE;
  EXPECT_EQ(drl_config_validate(&c), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "moe.first_layer (4) leaves no MoE block among model.n_layers = 4"));
  c.moe.first_layer = 3;
  EXPECT_EQ(drl_config_validate(&c), DRL_OK) << last_error();
}

// The rules between a config and the job that runs it: the rank count, the flow policy's limits.
TEST(Config, CheckJobShardsAndFlowRules) {
  drl_config c = defaults();  // sft.batch_size 32, grpo.prompts_per_step 8
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_OK) << last_error();
  EXPECT_EQ(drl_config_check_job(&c, 8), DRL_OK) << last_error();
  EXPECT_EQ(drl_config_check_job(&c, 3), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "sft.batch_size (32) must be a multiple of the 3 data-parallel shards"));
  c.dist.shards = 16;  // the shard count, whatever the ranks
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "grpo.prompts_per_step (8) must be a multiple of the 16 data-parallel shards"));
  c.trainer.phases.count = 1;  // sft alone
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_OK) << last_error();
  c = defaults();
  c.optim.name = DRL_CFG_OPTIM_SPSA;  // every contribution takes a whole batch
  EXPECT_EQ(drl_config_check_job(&c, 3), DRL_OK) << last_error();

  c = defaults();
  set_ok(&c, "trainer.phases=flow_pretrain,flow_grpo");
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_OK) << last_error();
  EXPECT_EQ(drl_config_check_job(&c, 2), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "the flow phases run on one process; this job has 2 ranks"));
  set_ok(&c, "trainer.phases=flow_grpo,grpo");
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "trainer.phases mixes flow phases with 'grpo'"));
  set_ok(&c, "trainer.phases=flow_grpo");
  set_ok(&c, "optim.name=spsa");
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "the flow phases need optim.name: adamw"));
  set_ok(&c, "optim.name=adamw");
  set_ok(&c, "flow.time_features=15");
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "flow.time_features (15) must be even"));
  set_ok(&c, "flow.time_features=16");
  set_ok(&c, "tree.window_start=7");
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "tree.window_start (7) + tree.depth (4) must be at most tree.steps (10)"));
  set_ok(&c, "tree.window_start=0");
  set_ok(&c, "tree.conditions_per_iter=65536");
  set_ok(&c, "tree.branch=8");  // 65536 x 8^4 leaves
  EXPECT_EQ(drl_config_check_job(&c, 1), DRL_ERR_CONFIG);
  EXPECT_TRUE(Contains(last_error(), "tree.conditions_per_iter x leaves per condition = 268435456 points per call"));

  EXPECT_EQ(drl_config_check_job(nullptr, 1), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_check_job(&c, 0), DRL_ERR_INVALID_ARG);
}

TEST(Config, CheckApiRefusesSpsaAndFlowPhases) {
  drl_config c = defaults();
  EXPECT_EQ(drl_config_check_api(&c), DRL_OK) << last_error();
  c.optim.name = DRL_CFG_OPTIM_SPSA;
  EXPECT_EQ(drl_config_check_api(&c), DRL_ERR_UNSUPPORTED);
  EXPECT_TRUE(Contains(last_error(), "the engine API trains with optim.name: adamw"));
  c = defaults();
  set_ok(&c, "trainer.phases=flow_pretrain");
  EXPECT_EQ(drl_config_check_api(&c), DRL_ERR_UNSUPPORTED);
  EXPECT_TRUE(Contains(last_error(), "the flow phases (flow_pretrain) run through dynrl train"));
  EXPECT_EQ(drl_config_check_api(nullptr), DRL_ERR_INVALID_ARG);
}

TEST(Config, EqualSeesEveryKindOfDifference) {
  drl_config a = defaults();
  EXPECT_TRUE(drl_config_equal(&a, &a));
  drl_config b = a;
  b.optim.lr = std::nextafter(a.optim.lr, 1.0);
  EXPECT_FALSE(drl_config_equal(&a, &b));
  b = a;
  b.data.path[0] = 'x';
  EXPECT_FALSE(drl_config_equal(&a, &b));
  b = a;
  b.trainer.phases.items[0] = DRL_CFG_PHASE_GRPO;
  EXPECT_FALSE(drl_config_equal(&a, &b));
  b = a;
  b.run.seed += 1;
  EXPECT_FALSE(drl_config_equal(&a, &b));
  b = a;
  b.run.quiet = !a.run.quiet;
  EXPECT_FALSE(drl_config_equal(&a, &b));
  // Bytes after a string's NUL do not count.
  b = a;
  b.run.out_dir[sizeof b.run.out_dir - 1] = 'z';
  EXPECT_TRUE(drl_config_equal(&a, &b));
  // The differing keys by name, in key order.
  b = a;
  b.grpo.lr *= 2;
  b.run.seed += 1;
  b.trainer.phases.count = 1;
  char names[128];
  EXPECT_EQ(drl_config_diff(&a, &b, names, sizeof names), 3);
  EXPECT_STREQ(names, "run.seed, trainer.phases, grpo.lr");
  EXPECT_EQ(drl_config_diff(&a, &b, names, 12), 3) << "a short buffer truncates the names, not the count";
  EXPECT_EQ(drl_config_diff(&a, &a, names, sizeof names), 0);
  EXPECT_STREQ(names, "");
}

// Aliases are refused with the key and line they stand at, and nothing is printed.
TEST(Config, AliasesAreRefusedNotPrinted) {
  ::testing::internal::CaptureStderr();
  std::string msg = load_error("sft: {steps: &n 5}\ngrpo:\n  steps: *n\n");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "");
  EXPECT_TRUE(Contains(msg, "test.yaml:3: grpo.steps: YAML aliases (*n) are not supported"));
  EXPECT_TRUE(Contains(load_error("trainer: {phases: [sft, *p]}\n"), "test.yaml:1: trainer.phases: YAML aliases (*p)"));
  EXPECT_TRUE(Contains(load_error("sft: &s {steps: 5}\ngrpo: *s\n"), "test.yaml:2: section 'grpo': YAML aliases (*s)"));
  // An anchor without an alias is harmless.
  drl_config c = load_ok("sft: {steps: &n 5}\n");
  EXPECT_EQ(c.sft.steps, 5);
}

TEST(Config, ErrorsAreNotPrinted) {
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  drl_config cfg;
  drl_config_load_string(&cfg, "model: {d_modle: 1}", "t");
  drl_config_load_string(&cfg, "model: {d_model: [", "t");
  drl_config_load_string(&cfg, "run: {device: gpu}", "t");
  drl_config_set(&cfg, "run.nope=1");
  drl_config_load_file(&cfg, temp_path("missing.yaml").c_str());
  std::string err = ::testing::internal::GetCapturedStderr();
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(err, "");
  EXPECT_EQ(out, "");
}

TEST(Config, HelpListsEveryKey) {
  char *text = nullptr;
  ASSERT_EQ(drl_config_help(&text), DRL_OK);
  std::string help = text;
  free(text);
  EXPECT_TRUE(Contains(help, "model.d_model"));
  EXPECT_TRUE(Contains(help, "width of the residual stream (an integer in [1, 65536]; default 128)\n"));
  EXPECT_TRUE(Contains(help, "grpo.top_p"));
  EXPECT_TRUE(Contains(help, "(0, 1]"));
  EXPECT_TRUE(Contains(help, "trainer.phases"));
  EXPECT_TRUE(Contains(help, "one of: auto, cpu, cuda"));
  // One line per key: as many lines as "key: value" lines in the default YAML.
  size_t lines = 0, keys = 0;
  for (char ch : help) lines += ch == '\n';
  std::istringstream def(drl_config_default_yaml());
  for (std::string line; std::getline(def, line);)
    if (line.rfind("  ", 0) == 0 && line.rfind("  #", 0) != 0) ++keys;
  EXPECT_EQ(lines, keys);
  EXPECT_GT(keys, 50u);
}

TEST(Config, NullArgumentsAreRejected) {
  drl_config cfg;
  char *text = nullptr;
  EXPECT_EQ(drl_config_load_default(nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_load_file(&cfg, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_load_string(&cfg, nullptr, "x"), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_set(&cfg, nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_validate(nullptr), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_to_yaml(nullptr, &text), DRL_ERR_INVALID_ARG);
  EXPECT_EQ(drl_config_help(nullptr), DRL_ERR_INVALID_ARG);
}

extern "C" {
#include "data/task.h"
}

// The config's task enumeration and the data layer's built-in tasks are the same set.
TEST(Config, TaskEnumMatchesBuiltInTasks) {
  drl_config cfg;
  ASSERT_EQ(drl_config_load_default(&cfg), DRL_OK);
  int n = 0;
  for (const char *const *name = drl_task_names(); *name; ++name, ++n) {
    std::string assignment = std::string("data.task=") + *name;
    EXPECT_EQ(drl_config_set(&cfg, assignment.c_str()), DRL_OK) << *name << ": " << drl_last_error();
  }
  EXPECT_EQ(n, DRL_CFG_COUNT_task);
}

// Every example configuration in configs/ loads and validates.
TEST(Config, ExampleConfigsLoad) {
  int n = 0;
  for (const auto &entry : std::filesystem::directory_iterator(DRL_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    drl_config cfg;
    EXPECT_EQ(drl_config_load_file(&cfg, entry.path().c_str()), DRL_OK) << entry.path() << ": " << drl_last_error();
    ++n;
  }
  EXPECT_GE(n, 5);
}
