// The op table's harness: runs a case on a device, compares it with the reference or with another backend, and finds
// the dispatching ops the kernel sources declare.
#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

#include "op_table.h"

extern "C" {
#include "kernels/status.h"
}

size_t ty_size(Ty t) {
  switch (t) {
    case Ty::F32:
    case Ty::I32:
    case Ty::U32:
      return 4;
    case Ty::F64:
    case Ty::I64:
    case Ty::U64:
      return 8;
    case Ty::U8:
      return 1;
  }
  return 1;
}

Tol exact(const std::string &why) {
  Tol t;
  t.bits = true;
  t.why = why;
  return t;
}
Tol ulps(double n, const std::string &why) {
  Tol t;
  t.ulp = n;
  t.why = why;
  return t;
}
Tol near(double abs, double rel, const std::string &why) {
  Tol t;
  t.abs = abs;
  t.rel = rel;
  t.why = why;
  return t;
}
Tol rel_to_max(double r, const std::string &why) {
  Tol t;
  t.norm = r;
  t.why = why;
  return t;
}
Tol magnitude(double k, const std::string &why) {
  Tol t;
  t.mag = k;
  t.why = why;
  return t;
}
Tol with_zeros(Tol t) {
  t.zeros = true;
  return t;
}
Tol plus_ulps(Tol t, double n) {
  t.ulp += n;
  return t;
}

int OpCase::out(const std::string &name, Ty ty, size_t n, Tol ref_tol, Tol dev_tol, bool host) {
  Tensor x;
  x.name = name;
  x.ty = ty;
  x.role = Role::Out;
  x.host = host;
  x.init.assign(n * ty_size(ty), 0xFF);
  x.ref_tol = ref_tol;
  x.dev_tol = dev_tol;
  t.push_back(std::move(x));
  return (int)t.size() - 1;
}

int OpCase::scratch(const std::string &name, std::function<int64_t(const drl_device *)> bytes) {
  Tensor x;
  x.name = name;
  x.ty = Ty::U8;
  x.role = Role::Scratch;
  x.scratch_bytes = std::move(bytes);
  t.push_back(std::move(x));
  return (int)t.size() - 1;
}

// ---- running a case ----

namespace {

// Bytes behind every tensor that the op must leave alone.
const size_t kGuard = 256;
const unsigned char kGuardByte = 0xA5;

std::string status_text(drl_status st) {
  std::ostringstream o;
  o << "status " << (int)st << ": " << drl_last_error();
  return o.str();
}

}  // namespace

OpResult op_execute(const drl_device *dev, const OpCase &c) {
  OpResult r;
  const size_t n = c.t.size();
  std::vector<void *> ptr(n, nullptr);
  std::vector<size_t> bytes(n, 0);
  std::vector<std::vector<unsigned char>> image(n);
  r.after.resize(n);
  bool ok = true;
  for (size_t i = 0; i < n && ok; ++i) {
    const Tensor &x = c.t[i];
    if (x.role == Role::Scratch) {
      int64_t b = x.scratch_bytes(dev);
      if (b < 0) {
        r.problems.push_back(x.name + ": the op's scratch size function refused the shape");
        ok = false;
        break;
      }
      bytes[i] = (size_t)b;
      image[i].assign(bytes[i] + kGuard, kGuardByte);
      std::fill(image[i].begin(), image[i].begin() + (ptrdiff_t)bytes[i], 0xFF);  // NaN: no op may rely on zeros
    } else {
      bytes[i] = x.init.size();
      image[i].assign(bytes[i] + kGuard, kGuardByte);
      std::copy(x.init.begin(), x.init.end(), image[i].begin());
    }
    if (x.host) {
      ptr[i] = image[i].data();
      continue;
    }
    drl_status st = drl_alloc(dev, &ptr[i], image[i].size(), x.name.c_str());
    if (st == DRL_OK) st = drl_copy_to_device(dev, ptr[i], image[i].data(), image[i].size());
    if (st != DRL_OK) {
      r.problems.push_back(x.name + ": " + status_text(st));
      ok = false;
    }
  }
  if (ok) {
    drl_status st = drl_device_sync(dev);  // the uploads are stream-ordered; the images must outlive them
    if (st == DRL_OK) st = c.run(dev, ptr.data());
    if (st != DRL_OK) r.problems.push_back("the op failed: " + status_text(st));
    drl_status sync = drl_device_sync(dev);
    if (sync != DRL_OK) r.problems.push_back("sync after the op: " + status_text(sync));
  }
  for (size_t i = 0; i < n; ++i) {
    const Tensor &x = c.t[i];
    if (!ptr[i]) continue;
    std::vector<unsigned char> back = image[i];
    if (!x.host) {
      if (ok) {
        drl_status st = drl_copy_to_host(dev, back.data(), ptr[i], back.size());
        if (st != DRL_OK) r.problems.push_back(x.name + ": copy back: " + status_text(st));
      }
      drl_free(dev, ptr[i]);
    }
    if (!ok) continue;
    for (size_t k = bytes[i]; k < back.size(); ++k)
      if (back[k] != kGuardByte) {
        r.problems.push_back(x.name + ": byte " + std::to_string(k - bytes[i]) + " past its end was written");
        break;
      }
    back.resize(bytes[i]);
    r.after[i] = std::move(back);
  }
  return r;
}

// ---- comparing ----

namespace {

bool is_float(Ty t) { return t == Ty::F32 || t == Ty::F64; }

double value(Ty ty, const unsigned char *p, size_t k) {
  switch (ty) {
    case Ty::F32: {
      float v;
      std::memcpy(&v, p + 4 * k, 4);
      return v;
    }
    case Ty::F64: {
      double v;
      std::memcpy(&v, p + 8 * k, 8);
      return v;
    }
    case Ty::I32: {
      int32_t v;
      std::memcpy(&v, p + 4 * k, 4);
      return v;
    }
    case Ty::I64: {
      int64_t v;
      std::memcpy(&v, p + 8 * k, 8);
      return (double)v;
    }
    case Ty::U32: {
      uint32_t v;
      std::memcpy(&v, p + 4 * k, 4);
      return v;
    }
    case Ty::U64: {
      uint64_t v;
      std::memcpy(&v, p + 8 * k, 8);
      return (double)v;
    }
    case Ty::U8:
      return p[k];
  }
  return 0;
}

// The spacing of the output's type just above |w|.
double spacing(Ty ty, double w) {
  if (!std::isfinite(w)) return 0;
  if (ty == Ty::F64) {
    double a = std::fabs(w);
    return std::nextafter(a, INFINITY) - a;
  }
  float a = (float)std::fabs(w);
  if (!std::isfinite(a)) return std::numeric_limits<double>::infinity();
  return (double)std::nextafterf(a, INFINITY) - (double)a;
}

std::string fmt(double v) {
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

// Compares n elements of a tensor with want (doubles) under tol; returns "" or one line describing the failures.
std::string compare_values(const Tensor &x, const unsigned char *got, const std::vector<double> &want, const Tol &tol,
                           double *worst) {
  const size_t n = x.count();
  if (want.size() != n)
    return x.name + ": the reference gave " + std::to_string(want.size()) + " values for " + std::to_string(n);
  if (tol.mag != 0 && x.mag.size() != n) return x.name + ": the tolerance uses magnitudes the case did not compute";
  const bool exact_values = tol.bits || !is_float(x.ty);
  double maxabs = 0;
  if (tol.norm != 0)
    for (double w : want)
      if (std::isfinite(w)) maxabs = std::max(maxabs, std::fabs(w));
  size_t bad = 0, first = n;
  double first_bound = 0, local_worst = 0;
  for (size_t k = 0; k < n; ++k) {
    double g = value(x.ty, got, k), w = want[k];
    bool pass;
    double bound = 0, ratio = 0;
    if (std::isnan(w) || std::isnan(g)) {
      pass = std::isnan(w) && std::isnan(g);
      ratio = pass ? 0 : INFINITY;
    } else if (exact_values || std::isinf(w) || std::isinf(g)) {
      pass = g == w;
      ratio = pass ? 0 : INFINITY;
    } else if (tol.zeros && w == 0) {
      pass = g == 0;
      ratio = pass ? 0 : INFINITY;
    } else {
      bound = tol.abs + tol.rel * std::fabs(w) + tol.norm * maxabs + tol.ulp * spacing(x.ty, w) +
              (tol.mag != 0 ? tol.mag * x.mag[k] : 0.0);
      double err = std::fabs(g - w);
      pass = err <= bound;
      ratio = err == 0 ? 0 : (bound > 0 ? err / bound : INFINITY);
    }
    local_worst = std::max(local_worst, ratio);
    if (!pass) {
      if (bad++ == 0) {
        first = k;
        first_bound = bound;
      }
    }
  }
  if (worst) *worst = std::max(*worst, local_worst);
  if (!bad) return "";
  double g = value(x.ty, got, first), w = want[first];
  std::ostringstream o;
  o << x.name << "[" << first << "]: got " << fmt(g) << ", want " << fmt(w);
  if (!exact_values && std::isfinite(g) && std::isfinite(w))
    o << " (|error| " << fmt(std::fabs(g - w)) << " > bound " << fmt(first_bound) << ")";
  o << "; " << bad << " of " << n << " elements outside the tolerance (" << tol.why << ")";
  return o.str();
}

// Bit-for-bit comparison of two images of a tensor; NaN matches NaN whatever its payload.
std::string compare_bits(const Tensor &x, const std::vector<unsigned char> &got, const std::vector<unsigned char> &want,
                         const std::string &what) {
  if (got.size() != want.size()) return x.name + ": sizes differ";
  const size_t es = ty_size(x.ty), n = got.size() / es;
  size_t bad = 0, first = n;
  for (size_t k = 0; k < n; ++k) {
    if (std::memcmp(got.data() + k * es, want.data() + k * es, es) == 0) continue;
    if (is_float(x.ty) && std::isnan(value(x.ty, got.data(), k)) && std::isnan(value(x.ty, want.data(), k))) continue;
    if (bad++ == 0) first = k;
  }
  if (!bad) return "";
  std::ostringstream o;
  o << x.name << "[" << first << "]: " << fmt(value(x.ty, got.data(), first)) << " vs "
    << fmt(value(x.ty, want.data(), first)) << "; " << bad << " of " << n << " elements differ (" << what << ")";
  return o.str();
}

}  // namespace

std::vector<std::string> op_check_ref(OpCase &c, const OpResult &r, double *worst) {
  if (!r.problems.empty()) return r.problems;
  Want want(c.t.size());
  c.ref(c, want);
  std::vector<std::string> fails;
  for (size_t i = 0; i < c.t.size(); ++i) {
    const Tensor &x = c.t[i];
    std::string f;
    if (x.role == Role::In)
      f = compare_bits(x, r.after[i], x.init, "an input must come back unchanged");
    else if (x.role != Role::Scratch)
      f = compare_values(x, r.after[i].data(), want[i], x.ref_tol, worst);
    if (!f.empty()) fails.push_back(f);
  }
  return fails;
}

std::vector<std::string> op_check_backends(OpCase &c, const OpResult &base, const OpResult &r, double *worst) {
  std::vector<std::string> fails = base.problems;
  for (const std::string &p : r.problems) fails.push_back(p);
  if (!fails.empty()) return fails;
  if (c.mags) c.mags(c);
  for (size_t i = 0; i < c.t.size(); ++i) {
    const Tensor &x = c.t[i];
    std::string f;
    if (x.role == Role::In) {
      f = compare_bits(x, r.after[i], x.init, "an input must come back unchanged");
    } else if (x.role != Role::Scratch) {
      if (x.dev_tol.bits || !is_float(x.ty)) {
        f = compare_bits(x, r.after[i], base.after[i], x.dev_tol.why);
      } else {
        std::vector<double> want(x.count());
        for (size_t k = 0; k < want.size(); ++k) want[k] = value(x.ty, base.after[i].data(), k);
        f = compare_values(x, r.after[i].data(), want, x.dev_tol, worst);
      }
    }
    if (!f.empty()) fails.push_back(f);
  }
  return fails;
}

std::vector<std::string> op_check_entry_ref(const OpEntry &e, const drl_device *dev) {
  std::vector<std::string> fails;
  for (const OpShape &s : e.shapes) {
    if (s.backends_only) continue;
    OpCase c = s.make();
    OpResult r = op_execute(dev, c);
    for (const std::string &f : op_check_ref(c, r)) fails.push_back("[" + s.label + "] " + f);
  }
  return fails;
}

std::vector<std::string> op_check_entry_backends(const OpEntry &e, const drl_device *base, const drl_device *dev,
                                                 bool small_only,
                                                 const std::function<void(const std::string &, double)> &report) {
  std::vector<std::string> fails;
  for (const OpShape &s : e.shapes) {
    if (small_only && s.backends_only) continue;
    OpCase c = s.make();
    OpResult rb = op_execute(base, c), r1 = op_execute(dev, c);
    double worst = 0;
    for (const std::string &f : op_check_backends(c, rb, r1, &worst)) fails.push_back("[" + s.label + "] " + f);
    if (report) report(s.label, worst);
    OpResult r2 = op_execute(dev, c);
    for (const std::string &p : r2.problems) fails.push_back("[" + s.label + "] second run: " + p);
    if (!r1.problems.empty() || !r2.problems.empty()) continue;
    for (size_t i = 0; i < c.t.size(); ++i) {
      if (c.t[i].role == Role::In || c.t[i].role == Role::Scratch) continue;
      std::string f = compare_bits(c.t[i], r2.after[i], r1.after[i], "a second run must repeat the first's bits");
      if (!f.empty()) fails.push_back("[" + s.label + "] " + f);
    }
  }
  return fails;
}

const OpEntry *op_find(const std::string &name) {
  for (const OpEntry &e : op_table())
    if (e.name == name) return &e;
  return nullptr;
}

// ---- what the sources declare ----

namespace {

// The files of dir whose names end in suffix, sorted.
std::vector<std::string> files_ending(const std::string &dir, const std::string &suffix) {
  std::vector<std::string> out;
  DIR *d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent *e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(dir + "/" + n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const std::string &path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Every first capture of re over the files of dir ending in suffix (minus the file named skip), in file order.
std::vector<std::string> matches(const std::string &dir, const std::string &suffix, const std::string &skip,
                                 const std::regex &re, std::string *why) {
  std::vector<std::string> names;
  std::vector<std::string> files = files_ending(dir, suffix);
  if (files.empty()) {
    if (why) *why = "no *" + suffix + " files under " + dir;
    return names;
  }
  for (const std::string &path : files) {
    if (path.size() >= skip.size() && path.compare(path.size() - skip.size(), skip.size(), skip) == 0) continue;
    std::string text = slurp(path);
    for (std::sregex_iterator m(text.begin(), text.end(), re), end; m != end; ++m) {
      std::string name = (*m)[1];
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  return names;
}

}  // namespace

const std::vector<std::pair<std::string, std::string>> &op_not_ops() {
  static const std::vector<std::pair<std::string, std::string>> v = {
      {"layout_first_nonfinite", "a diagnostic scan: copies tensors to the host and looks for NaN / Inf, no CUDA twin"},
      {"layout_inject_grad_fault", "fault injection for tests: one value written through drl_copy_to_device"},
  };
  return v;
}

std::vector<std::string> op_declared(const std::string &source_dir, std::string *why, bool keep_not_ops) {
  // drl_status drl_<name>(const drl_device *...: the public entry points that take a device. device.h holds device
  // management (alloc, copies, sync, streams), not ops; the _cuda twins are the other half of an op.
  static const std::regex re(R"(drl_status\s+drl_(\w+)\s*\(\s*const\s+drl_device\s*\*)");
  std::vector<std::string> all = matches(source_dir + "/kernels", ".h", "/device.h", re, why), ops;
  for (const std::string &n : all) {
    bool twin = n.size() > 5 && n.compare(n.size() - 5, 5, "_cuda") == 0;
    bool not_op = false;
    for (const auto &p : op_not_ops()) not_op |= p.first == n;
    if (!twin && (keep_not_ops || !not_op)) ops.push_back(n);
  }
  return ops;
}

std::vector<std::string> op_cuda_twins(const std::string &source_dir, std::string *why) {
  static const std::regex re(R"(drl_status\s+drl_(\w+)_cuda\s*\()");
  return matches(source_dir + "/kernels", ".cu", "/device.cu", re, why);
}
