/* Fuzz target: the YAML config loader and the --set override parser (engine/config.h).
 *
 * Input: YAML text, then optionally a NUL byte and NUL-separated "section.key=value" overrides. The text is loaded
 * from a string and, bytes and all (NULs included), from a file; the overrides are applied in order. Checked: a
 * failed load or override leaves the config unchanged, and a valid config prints as YAML that loads back equal. */
#include <string.h>

#include "engine/config.h"
#include "fuzz.h"

#define MAX_SETS 64

/* A valid config printed and loaded back is the same config (config.h: drl_config_to_yaml). */
static void check_round_trip(const drl_config *cfg) {
  char *text = NULL;
  FUZZ_CHECK(drl_config_to_yaml(cfg, &text) == DRL_OK, "printing a valid config failed: %s", drl_last_error());
  drl_config back;
  FUZZ_CHECK(drl_config_load_string(&back, text, "printed config") == DRL_OK,
             "the printed config does not load back: %s\n%s", drl_last_error(), text);
  FUZZ_CHECK(drl_config_equal(cfg, &back), "the printed config loads back different:\n%s", text);
  drl_config_free(&back);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = (char *)malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';

  static drl_config def; /* the defaults, loaded once */
  static int have_def;
  if (!have_def) {
    FUZZ_CHECK(drl_config_load_default(&def) == DRL_OK, "the default config does not load: %s", drl_last_error());
    have_def = 1;
  }
  drl_config cfg;

  /* With a NUL inside, the whole input also as a file: the file reader sees every byte, NULs included (without
   * one it would only repeat the string load below). */
  if (memchr(data, '\0', size)) {
    const char *path = fuzz_temp_path("config.yaml");
    fuzz_write_file(path, data, size);
    cfg = def;
    if (drl_config_load_file(&cfg, path) == DRL_OK) {
      FUZZ_CHECK(drl_config_validate(&cfg) == DRL_OK, "a loaded config fails validation: %s", drl_last_error());
    } else {
      FUZZ_CHECK(drl_last_error()[0] != '\0', "load_file failed without a message");
      FUZZ_CHECK(drl_config_equal(&cfg, &def), "a failed load_file changed the config");
    }
  }

  /* The text up to the first NUL as a string, then the overrides after it. */
  cfg = def;
  if (drl_config_load_string(&cfg, buf, "fuzz input") != DRL_OK) {
    FUZZ_CHECK(drl_last_error()[0] != '\0', "load_string failed without a message");
    FUZZ_CHECK(drl_config_equal(&cfg, &def), "a failed load_string changed the config");
  }
  size_t at = strlen(buf) + 1;
  int n_sets = 0;
  for (; at <= size && n_sets < MAX_SETS; at += strlen(buf + at) + 1, ++n_sets) {
    drl_config before = cfg;
    if (drl_config_set(&cfg, buf + at) != DRL_OK) {
      FUZZ_CHECK(drl_last_error()[0] != '\0', "--set failed without a message");
      FUZZ_CHECK(drl_config_equal(&cfg, &before), "a failed --set changed the config");
    }
  }
  /* Once per input, after the overrides: printing and loading back costs two more loads. */
  if (drl_config_validate(&cfg) == DRL_OK) check_round_trip(&cfg);
  drl_config_free(&cfg);
  free(buf);
  return 0;
}
