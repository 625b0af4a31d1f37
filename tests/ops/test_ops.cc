// The op table on the CPU: every entry against its naive double-precision reference and, through the harness the GPU
// test uses, against a second run on the CPU; deliberately wrong ops that the harness must report; and the table's
// completeness against the dispatching ops the kernel sources declare. DRL_OPS_VERBOSE=1 prints, per shape, the worst
// error as a fraction of its bound; DRL_OPS_LARGE=1 also runs the large shapes, CPU against CPU.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "op_table.h"

extern "C" {
#include "kernels/status.h"
}

namespace {

std::string param_name(const testing::TestParamInfo<std::string> &i) { return i.param; }

drl_device open_cpu() {
  drl_device d;
  EXPECT_EQ(drl_device_open(&d, DRL_BACKEND_CPU, 0), DRL_OK);
  return d;
}

// The CPU marked as the device under test (index 1, which the CPU backend ignores), so a spoiled op can tell the two
// sides of a cross-backend comparison apart.
drl_device marked_cpu() {
  drl_device d = open_cpu();
  d.index = 1;
  return d;
}

bool verbose() {
  const char *v = getenv("DRL_OPS_VERBOSE");
  return v && *v && strcmp(v, "0") != 0;
}

class CpuOp : public testing::TestWithParam<std::string> {};

TEST_P(CpuOp, MatchesTheDoubleReference) {
  const OpEntry *e = op_find(GetParam());
  ASSERT_NE(e, nullptr);
  drl_device cpu = open_cpu();
  int checked = 0;
  for (const OpShape &s : e->shapes) {
    if (s.backends_only) continue;
    OpCase c = s.make();
    OpResult r = op_execute(&cpu, c);
    double worst = 0;
    for (const std::string &f : op_check_ref(c, r, &worst)) ADD_FAILURE() << "[" << s.label << "] " << f;
    if (verbose()) printf("  %-22s %-58s worst error / bound %.3g\n", e->name.c_str(), s.label.c_str(), worst);
    ++checked;
  }
  EXPECT_GT(checked, 0) << "every op needs a shape small enough for its reference";
}

// The cross-backend path of the GPU test, with the CPU on both sides: the same bits, twice. DRL_OPS_LARGE=1 adds the
// large shapes (slow: they are the sizes of a training step), to try a new entry's before a GPU is lent.
TEST_P(CpuOp, RepeatsItsBitsThroughTheBackendHarness) {
  const OpEntry *e = op_find(GetParam());
  ASSERT_NE(e, nullptr);
  drl_device cpu = open_cpu(), other = marked_cpu();
  const char *large = getenv("DRL_OPS_LARGE");
  bool small_only = !(large && *large && strcmp(large, "0") != 0);
  for (const std::string &f : op_check_entry_backends(*e, &cpu, &other, small_only)) ADD_FAILURE() << f;
}

INSTANTIATE_TEST_SUITE_P(Table, CpuOp, testing::ValuesIn(op_table_names()), param_name);

// ---- deliberately wrong ops: the harness must report each

// Spoils a run's result through the device API, so it works on any backend. p: the case's device pointers.
using Spoil = std::function<drl_status(const drl_device *, OpPtrs, const std::vector<size_t> &counts)>;

// A copy of the named entry whose run calls the real op, then spoil (on the marked device only when marked_only).
OpEntry spoiled(const std::string &name, Spoil spoil, bool marked_only = false) {
  OpEntry e = *op_find(name);
  e.name += "_spoiled";
  for (OpShape &s : e.shapes) {
    auto make = s.make;
    s.make = [make, spoil, marked_only]() {
      OpCase c = make();
      std::vector<size_t> counts;
      for (const Tensor &x : c.t) counts.push_back(x.count());
      OpRun run = c.run;
      c.run = [run, spoil, counts, marked_only](const drl_device *d, OpPtrs p) {
        drl_status st = run(d, p);
        if (st != DRL_OK || (marked_only && d->index != 1)) return st;
        return spoil(d, p, counts);
      };
      return c;
    };
  }
  return e;
}

// Moves float k of buf by ulps units in the last place.
drl_status nudge(const drl_device *d, void *buf, size_t k, int ulps) {
  float v;
  drl_status st = drl_copy_to_host(d, &v, (float *)buf + k, 4);
  if (st != DRL_OK) return st;
  for (int i = 0; i < ulps; ++i) v = std::nextafterf(v, INFINITY);
  st = drl_copy_to_device(d, (float *)buf + k, &v, 4);
  return st == DRL_OK ? drl_device_sync(d) : st;
}

drl_status put(const drl_device *d, void *buf, size_t k, float v) {
  drl_status st = drl_copy_to_device(d, (float *)buf + k, &v, 4);
  return st == DRL_OK ? drl_device_sync(d) : st;
}

bool any_has(const std::vector<std::string> &fails, const std::string &sub) {
  for (const std::string &f : fails)
    if (f.find(sub) != std::string::npos) return true;
  return false;
}

std::string joined(const std::vector<std::string> &fails) {
  std::string s;
  for (const std::string &f : fails) s += "\n  " + f;
  return s;
}

TEST(OpHarness, CatchesAnOutputTwoUlpOff) {
  drl_device cpu = open_cpu(), other = marked_cpu();
  // add's third tensor is out (a, in place): its last element, two ulp up (the reference allows half an ulp, the
  // backends none).
  OpEntry e = spoiled(
      "add",
      [](const drl_device *d, OpPtrs p, const std::vector<size_t> &n) {
        size_t out = n.size() > 2 ? 2 : 0;  // in place: a is the output
        return nudge(d, p[out], n[out] - 1, 2);
      },
      true);
  auto ref = op_check_entry_ref(e, &other), dev = op_check_entry_backends(e, &cpu, &other, true);
  EXPECT_TRUE(any_has(ref, "out[")) << joined(ref);
  EXPECT_TRUE(any_has(ref, "1 of ")) << "exactly one element is wrong:" << joined(ref);
  EXPECT_TRUE(any_has(dev, "out[")) << joined(dev);
  EXPECT_TRUE(op_check_entry_ref(e, &cpu).empty()) << "unmarked, the spoiled op is the real one";
}

TEST(OpHarness, CatchesOneUlpAgainstAnExactBackend) {
  drl_device cpu = open_cpu(), other = marked_cpu();
  // rmsnorm_forward's rstd (tensor 3), one ulp: within the reference's bound, but the backends promise bits.
  OpEntry e = spoiled(
      "rmsnorm_forward",
      [](const drl_device *d, OpPtrs p, const std::vector<size_t> &) { return nudge(d, p[3], 0, 1); }, true);
  auto dev = op_check_entry_backends(e, &cpu, &other, true);
  EXPECT_TRUE(any_has(dev, "rstd[0]")) << joined(dev);
}

TEST(OpHarness, CatchesSwappedOutputs) {
  drl_device cpu = open_cpu();
  // swiglu_backward writes dgate (tensor 3) and dup (tensor 4): swap them.
  OpEntry e = spoiled("swiglu_backward", [](const drl_device *d, OpPtrs p, const std::vector<size_t> &n) {
    std::vector<float> a(n[3]), b(n[4]);
    drl_status st = drl_copy_to_host(d, a.data(), p[3], a.size() * 4);
    if (st == DRL_OK) st = drl_copy_to_host(d, b.data(), p[4], b.size() * 4);
    if (st == DRL_OK) st = drl_copy_to_device(d, p[3], b.data(), b.size() * 4);
    if (st == DRL_OK) st = drl_copy_to_device(d, p[4], a.data(), a.size() * 4);
    return st == DRL_OK ? drl_device_sync(d) : st;
  });
  auto ref = op_check_entry_ref(e, &cpu);
  EXPECT_TRUE(any_has(ref, "dgate[")) << joined(ref);
  EXPECT_TRUE(any_has(ref, "dup[")) << joined(ref);
}

TEST(OpHarness, CatchesAnUnwrittenOutput) {
  drl_device cpu = open_cpu();
  // rmsnorm_forward leaves rstd's last element as it found it (NaN).
  OpEntry e = spoiled("rmsnorm_forward", [](const drl_device *d, OpPtrs p, const std::vector<size_t> &n) {
    return put(d, p[3], n[3] - 1, NAN);
  });
  auto ref = op_check_entry_ref(e, &cpu);
  EXPECT_TRUE(any_has(ref, "rstd[")) << joined(ref);
  EXPECT_TRUE(any_has(ref, "got nan")) << joined(ref);
}

TEST(OpHarness, CatchesAWritePastTheEnd) {
  drl_device cpu = open_cpu();
  // scale's x (tensor 0): one float behind its last element (in the guard band).
  OpEntry e = spoiled(
      "scale", [](const drl_device *d, OpPtrs p, const std::vector<size_t> &n) { return put(d, p[0], n[0], 1.0f); });
  auto ref = op_check_entry_ref(e, &cpu);
  EXPECT_TRUE(any_has(ref, "x: byte 0 past its end was written")) << joined(ref);
}

TEST(OpHarness, CatchesAChangedInput) {
  drl_device cpu = open_cpu();
  // axpy's x (tensor 0) is read only.
  OpEntry e =
      spoiled("axpy", [](const drl_device *d, OpPtrs p, const std::vector<size_t> &) { return nudge(d, p[0], 0, 1); });
  auto ref = op_check_entry_ref(e, &cpu);
  EXPECT_TRUE(any_has(ref, "an input must come back unchanged")) << joined(ref);
}

TEST(OpHarness, CatchesAGemmElementOffByOnePartInAThousand) {
  drl_device cpu = open_cpu(), other = marked_cpu();
  // gemm's C (tensor 2), element 0 scaled by 1.001: far outside (K + 3) u for the reference and 2e-5 across backends.
  OpEntry e = spoiled(
      "gemm",
      [](const drl_device *d, OpPtrs p, const std::vector<size_t> &) {
        float v;
        drl_status st = drl_copy_to_host(d, &v, p[2], 4);
        return st == DRL_OK ? put(d, p[2], 0, v * 1.001f) : st;
      },
      true);
  auto ref = op_check_entry_ref(e, &other), dev = op_check_entry_backends(e, &cpu, &other, true);
  EXPECT_TRUE(any_has(ref, "C[0]")) << joined(ref);
  EXPECT_TRUE(any_has(dev, "C[0]")) << joined(dev);
}

TEST(OpHarness, CatchesAFailedStatus) {
  drl_device cpu = open_cpu();
  OpEntry e = spoiled("bias_add", [](const drl_device *, OpPtrs, const std::vector<size_t> &) {
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "deliberately failed");
  });
  auto ref = op_check_entry_ref(e, &cpu);
  EXPECT_TRUE(any_has(ref, "deliberately failed")) << joined(ref);
}

TEST(OpHarness, CatchesARunThatDoesNotRepeatItself) {
  drl_device cpu = open_cpu(), other = marked_cpu();
  // Every second run on the device under test moves one element by an ulp: each run alone matches the reference.
  auto calls = std::make_shared<int>(0);
  OpEntry e = spoiled(
      "rank_sum",
      [calls](const drl_device *d, OpPtrs p, const std::vector<size_t> &n) {
        size_t out = n.size() > 1 ? 1 : 0;  // in place: in is the output
        return (*calls)++ % 2 ? nudge(d, p[out], n[out] / 2, 1) : DRL_OK;
      },
      true);
  auto dev = op_check_entry_backends(e, &cpu, &other, true);
  EXPECT_TRUE(any_has(dev, "a second run must repeat the first's bits")) << joined(dev);
}

// ---- the table against the sources

bool has(const std::vector<std::string> &v, const std::string &s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(OpTable, ListsEveryDispatchingOpTheKernelsDeclare) {
  std::string why;
  std::vector<std::string> declared = op_declared(DRL_SOURCE_DIR, &why);
  ASSERT_TRUE(why.empty()) << why;
  // The discovery itself must work, or this test would pass on nothing.
  ASSERT_GE(declared.size(), 40u) << "found only" << joined(declared);
  for (const char *known : {"adamw", "gemm", "gemm_strided_batched", "attention_forward", "rmsnorm_backward",
                            "sde_step", "moe_dispatch", "rng_fill", "lm_head_backward"})
    EXPECT_TRUE(has(declared, known)) << known << " not found among" << joined(declared);
  for (const std::string &n : declared)
    EXPECT_NE(op_find(n), nullptr) << "kernels/ declares drl_" << n << "(const drl_device *, ...), a dispatching op "
                                   << "the op table does not list: add an entry to tests/ops/op_table.cc";
  for (const OpEntry &e : op_table())
    EXPECT_TRUE(has(declared, e.name)) << "the op table lists " << e.name << ", which no kernel header declares";
  printf("  %zu dispatching ops declared, %zu in the table\n", declared.size(), op_table().size());
}

TEST(OpTable, EveryCudaTwinBelongsToAListedOp) {
  std::string why;
  std::vector<std::string> twins = op_cuda_twins(DRL_SOURCE_DIR, &why);
  ASSERT_TRUE(why.empty()) << why;
  ASSERT_GE(twins.size(), 35u) << "found only" << joined(twins);
  for (const std::string &n : twins)
    EXPECT_TRUE(op_find(n) || op_find(n + "_forward"))
        << "kernels/*.cu defines drl_" << n << "_cuda, whose op the table does not list";
}

TEST(OpTable, NamesAreUniqueAndTheNonOpsAreDeclaredAndUnlisted) {
  std::vector<std::string> names = op_table_names();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end()) << "an op listed twice";
  std::string why;
  std::vector<std::string> all = op_declared(DRL_SOURCE_DIR, &why, true);
  for (const auto &p : op_not_ops()) {
    EXPECT_TRUE(has(all, p.first)) << p.first << " is excused from the table but no longer declared";
    EXPECT_EQ(op_find(p.first), nullptr) << p.first << " is both excused and listed";
  }
}

// A new op in a header, declared over several lines, is found (the discovery is not tied to today's formatting).
TEST(OpTable, DiscoveryFindsANewOp) {
  char tmpl[] = "/tmp/dynrl_ops_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(system(("mkdir -p " + dir + "/kernels").c_str()), 0);
  std::ofstream(dir + "/kernels/frob.h") << "drl_status drl_frobnicate(\n    const drl_device *dev, float *x);\n"
                                            "drl_status drl_frobnicate_cuda(const drl_device *dev, float *x);\n"
                                            "int64_t drl_frob_scratch(const drl_device *dev);\n";
  std::ofstream(dir + "/kernels/device.h") << "drl_status drl_device_sync(const drl_device *dev);\n";
  std::ofstream(dir + "/kernels/frob.cu") << "extern \"C\" drl_status drl_frobnicate_cuda(const drl_device *dev,\n"
                                             "                                         float *x) {}\n";
  std::string why;
  EXPECT_EQ(op_declared(dir, &why), std::vector<std::string>{"frobnicate"});
  EXPECT_EQ(op_cuda_twins(dir, &why), std::vector<std::string>{"frobnicate"});
  EXPECT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

}  // namespace
