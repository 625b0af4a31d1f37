// The op table (tests/ops/op_table.cc) on the GPU: every shape of every dispatching op on the CUDA backend against the
// CPU backend, within the table's cross-backend tolerance (exact bits wherever both run the shared per-element math),
// inputs unchanged, nothing written past a buffer, and a second GPU run repeating the first's bits. Each op prints
// its worst error as a fraction of its bound. DRL_OPS_SMALL=1 runs only the small shapes (for compute-sanitizer).
#include <stdio.h>
#include <stdlib.h>

#include <cstring>
#include <string>
#include <vector>

#include "../ops/op_table.h"
#include "gpu_skip.h"

namespace {

std::string param_name(const testing::TestParamInfo<std::string> &i) { return i.param; }

bool small_only() {
  const char *v = getenv("DRL_OPS_SMALL");
  return v && *v && strcmp(v, "0") != 0;
}

class GpuOp : public testing::TestWithParam<std::string> {};

TEST_P(GpuOp, MatchesTheCpu) {
  drl_device gpu;
  DRL_REQUIRE_GPU(gpu);
  drl_device cpu;
  ASSERT_EQ(drl_device_open(&cpu, DRL_BACKEND_CPU, 0), DRL_OK);
  const OpEntry *e = op_find(GetParam());
  ASSERT_NE(e, nullptr);
  double worst = 0;
  std::string at;
  auto report = [&](const std::string &label, double w) {
    if (w > worst) worst = w, at = label;
  };
  for (const std::string &f : op_check_entry_backends(*e, &cpu, &gpu, small_only(), report)) ADD_FAILURE() << f;
  printf("[ measured ] %s: worst GPU-vs-CPU error %.3g of its bound%s%s\n", e->name.c_str(), worst,
         at.empty() ? "" : " at ", at.c_str());
  EXPECT_EQ(drl_device_sync(&gpu), DRL_OK) << drl_last_error();
  drl_device_close(&gpu);
}

INSTANTIATE_TEST_SUITE_P(Table, GpuOp, testing::ValuesIn(op_table_names()), param_name);

}  // namespace
