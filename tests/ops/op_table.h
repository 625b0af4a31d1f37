// One table of every dispatching kernel op (in the spirit of ggml's test-backend-ops). An entry names the op (its
// public function without the drl_ prefix) and lists shapes; a shape builds an OpCase: the op's tensors with seeded
// inputs, a run() that calls the public dispatching entry point on any device, a naive double-precision reference and,
// per output, two tolerances: against the reference (the CPU op) and across backends (another backend against the
// CPU). tests/ops/test_ops.cc runs the table on the CPU against the references; tests/gpu/test_gpu_ops.cc runs it on
// the GPU against the CPU.
#pragma once
#include <stdint.h>

#include <functional>
#include <string>
#include <vector>

extern "C" {
#include "kernels/device.h"
}

enum class Ty { F32, F64, I32, I64, U32, U64, U8 };
size_t ty_size(Ty t);

// |got - want| <= abs + rel |want| + norm max|want| + ulp * (spacing of float, or of double for F64 outputs, at
// |want|) + mag * m[i], with m the case's per-element magnitude for that output. bits: identical bits instead (a NaN
// matches any NaN: CUDA returns its canonical NaN). zeros: where want is exactly 0, only 0 passes. Integer outputs are
// always compared exactly. why: the one-line reason for the bound.
struct Tol {
  bool bits = false;
  bool zeros = false;
  double abs = 0, rel = 0, norm = 0, ulp = 0, mag = 0;
  std::string why;
};
Tol exact(const std::string &why);
Tol ulps(double n, const std::string &why);
Tol near(double abs, double rel, const std::string &why);
Tol rel_to_max(double r, const std::string &why);
Tol magnitude(double k, const std::string &why);  // k * m[i]
Tol with_zeros(Tol t);
Tol plus_ulps(Tol t, double n);

// 2^-24: the unit roundoff of float.
constexpr double kU = 0x1p-24;

enum class Role {
  In,       // read only: must come back unchanged
  Out,      // written: starts as all-ones bytes (NaN), so an element the op does not write shows
  InOut,    // read and written (accumulating or in-place ops)
  Scratch,  // sized per device, starts as NaN, not compared
};

struct Tensor {
  std::string name;
  Ty ty = Ty::F32;
  Role role = Role::In;
  bool host = false;  // the op takes a host pointer on every backend (MoE offsets, SPSA contributions, reductions)
  std::vector<unsigned char> init;
  std::function<int64_t(const drl_device *)> scratch_bytes;
  Tol ref_tol, dev_tol;
  std::vector<double> mag;  // per-element magnitude for Tol::mag (filled by the case's reference)
  size_t count() const { return init.size() / ty_size(ty); }
};

struct OpCase;
// Device pointers of a case's tensors, in the order they were added (host pointers for host tensors).
using OpPtrs = void *const *;
using OpRun = std::function<drl_status(const drl_device *, OpPtrs)>;
// Expected values (double) of every output and in/out tensor, indexed like the tensors; m receives magnitudes.
using Want = std::vector<std::vector<double>>;
using OpRef = std::function<void(OpCase &, Want &want)>;

struct OpCase {
  std::vector<Tensor> t;
  OpRun run;
  OpRef ref;
  // Fills t[i].mag where a cross-backend tolerance uses Tol::mag (the reference fills them for its own check).
  std::function<void(OpCase &)> mags;

  template <class T>
  int in(const std::string &name, const std::vector<T> &v, bool host = false);
  template <class T>
  int inout(const std::string &name, const std::vector<T> &v, Tol ref_tol, Tol dev_tol);
  int out(const std::string &name, Ty ty, size_t n, Tol ref_tol, Tol dev_tol, bool host = false);
  int scratch(const std::string &name, std::function<int64_t(const drl_device *)> bytes);
  // A typed view of a tensor's initial contents.
  template <class T>
  const T *get(int i) const {
    return (const T *)t[i].init.data();
  }
  const float *f(int i) const { return get<float>(i); }
  const int32_t *i32(int i) const { return get<int32_t>(i); }
};

// A shape of an op. backends_only: too large for the naive reference (or outside its domain, e.g. non-finite inputs):
// compared across backends only. The label says what the shape exercises.
struct OpShape {
  std::string label;
  bool backends_only = false;
  std::function<OpCase()> make;
};

struct OpEntry {
  std::string name;  // the dispatching function without drl_: "rmsnorm_backward"
  std::vector<OpShape> shapes;
};

const std::vector<OpEntry> &op_table();

// The table's op names, in table order: the parameters of the table's gtest suites (CPU and GPU).
inline std::vector<std::string> op_table_names() {
  std::vector<std::string> v;
  for (const OpEntry &e : op_table()) v.push_back(e.name);
  return v;
}
const OpEntry *op_find(const std::string &name);

// ---- the harness ----

// One run of a case on a device: every tensor copied there (each with a guard band behind it), run(), a sync, and the
// contents copied back. problems: a failed status, a guard band written.
struct OpResult {
  std::vector<std::vector<unsigned char>> after;
  std::vector<std::string> problems;
};
OpResult op_execute(const drl_device *dev, const OpCase &c);

// Each failure of a run against the case's reference (outputs within ref_tol, inputs unchanged), one line each;
// empty when everything passes. worst (optional) receives the largest |error| / bound over the outputs.
std::vector<std::string> op_check_ref(OpCase &c, const OpResult &r, double *worst = nullptr);
// The same against another backend's run (outputs within dev_tol of base, inputs unchanged).
std::vector<std::string> op_check_backends(OpCase &c, const OpResult &base, const OpResult &r, double *worst = nullptr);
// Every shape of an entry on dev against the reference (shapes marked backends_only are skipped).
std::vector<std::string> op_check_entry_ref(const OpEntry &e, const drl_device *dev);
// Every shape of an entry on dev against base, twice on dev (the second run must repeat the first's bits). With
// small_only, shapes marked backends_only are skipped. report (optional) receives each shape's worst error / bound
// over the outputs compared within a tolerance (0 where all are exact).
std::vector<std::string> op_check_entry_backends(
    const OpEntry &e, const drl_device *base, const drl_device *dev, bool small_only,
    const std::function<void(const std::string &label, double worst)> &report = nullptr);

// The dispatching ops the kernel headers declare (drl_status drl_<name>(const drl_device *...)), minus device
// management and (unless keep_not_ops) the helpers op_not_ops() lists; and the CUDA twins kernels/*.cu define. Fills
// why when it finds no sources, and returns what it found.
std::vector<std::string> op_declared(const std::string &source_dir, std::string *why, bool keep_not_ops = false);
std::vector<std::string> op_cuda_twins(const std::string &source_dir, std::string *why);
// Names op_declared leaves out on purpose, with the reason.
const std::vector<std::pair<std::string, std::string>> &op_not_ops();

// ---- template members ----

template <class T>
constexpr Ty ty_of();
template <>
constexpr Ty ty_of<float>() {
  return Ty::F32;
}
template <>
constexpr Ty ty_of<double>() {
  return Ty::F64;
}
template <>
constexpr Ty ty_of<int32_t>() {
  return Ty::I32;
}
template <>
constexpr Ty ty_of<int64_t>() {
  return Ty::I64;
}
template <>
constexpr Ty ty_of<uint32_t>() {
  return Ty::U32;
}
template <>
constexpr Ty ty_of<uint64_t>() {
  return Ty::U64;
}
template <>
constexpr Ty ty_of<uint8_t>() {
  return Ty::U8;
}

template <class T>
int OpCase::in(const std::string &name, const std::vector<T> &v, bool host) {
  Tensor x;
  x.name = name;
  x.ty = ty_of<T>();
  x.role = Role::In;
  x.host = host;
  x.init.assign((const unsigned char *)v.data(), (const unsigned char *)(v.data() + v.size()));
  t.push_back(std::move(x));
  return (int)t.size() - 1;
}

template <class T>
int OpCase::inout(const std::string &name, const std::vector<T> &v, Tol ref_tol, Tol dev_tol) {
  int i = in(name, v);
  t[i].role = Role::InOut;
  t[i].ref_tol = ref_tol;
  t[i].dev_tol = dev_tol;
  return i;
}
