// Comparing two run directories: their final checkpoints bit for bit and their metrics series row by row.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "data/checkpoint.h"
#include "data/h5.h"
}

// A metrics series (/metrics/<name>) of a metrics file.
inline std::vector<double> read_series(const std::string &file, const char *name) {
  drl_h5_file f;
  EXPECT_EQ(drl_h5_open_read(file.c_str(), &f), DRL_OK) << drl_last_error();
  int64_t shape[1] = {0};
  void *data = nullptr;
  EXPECT_EQ(drl_h5_read_array(&f, name, DRL_H5_FLOAT64, 1, shape, 1 << 20, &data), DRL_OK) << drl_last_error();
  std::vector<double> v((double *)data, (double *)data + shape[0]);
  free(data);
  drl_h5_close(&f);
  return v;
}

// The metrics file's row count without the evaluation before training (the row of global step 0, when written).
inline size_t training_rows(const std::string &file) {
  drl_h5_file f;
  EXPECT_EQ(drl_h5_open_read(file.c_str(), &f), DRL_OK) << drl_last_error();
  int64_t shape[1] = {0};
  void *data = nullptr;
  EXPECT_EQ(drl_h5_read_array(&f, "/metrics/step", DRL_H5_INT64, 1, shape, 1 << 20, &data), DRL_OK)
      << drl_last_error();
  size_t rows = (size_t)shape[0] - (shape[0] > 0 && ((int64_t *)data)[0] == 0 ? 1 : 0);
  free(data);
  drl_h5_close(&f);
  return rows;
}

// A metrics series without the evaluation row before training: one value per training step.
inline std::vector<double> read_training_series(const std::string &file, const char *name) {
  std::vector<double> v = read_series(file, name);
  size_t extra = v.size() - training_rows(file);
  v.erase(v.begin(), v.begin() + (long)extra);
  return v;
}

// Two run directories hold bit-identical final checkpoints (policy, AdamW moments, position) and metrics rows (rows:
// the training steps' rows, besides the evaluation before training).
inline void expect_same_runs(const std::string &a, const std::string &b, size_t rows, std::vector<const char *> series) {
  drl_checkpoint x, y;
  ASSERT_EQ(drl_checkpoint_read((a + "/ckpt.h5").c_str(), nullptr, &x), DRL_OK) << drl_last_error();
  ASSERT_EQ(drl_checkpoint_read((b + "/ckpt.h5").c_str(), &x.layout, &y), DRL_OK) << drl_last_error();
  EXPECT_STREQ(x.phase, y.phase);
  EXPECT_EQ(x.trainer_step, y.trainer_step);
  EXPECT_EQ(x.optim_step, y.optim_step);
  size_t bytes = x.layout.total * sizeof(float);
  EXPECT_EQ(0, memcmp(x.params, y.params, bytes)) << a << " and " << b << ": parameters differ";
  EXPECT_EQ(0, memcmp(x.m, y.m, bytes)) << a << " and " << b << ": first moments differ";
  EXPECT_EQ(0, memcmp(x.v, y.v, bytes)) << a << " and " << b << ": second moments differ";
  drl_checkpoint_free(&x);
  drl_checkpoint_free(&y);
  for (const char *name : series) {
    std::vector<double> ra = read_series(a + "/metrics.h5", name), rb = read_series(b + "/metrics.h5", name);
    ASSERT_EQ(training_rows(a + "/metrics.h5"), rows) << name;
    ASSERT_EQ(rb.size(), ra.size()) << name;
    for (size_t i = 0; i < ra.size(); ++i)
      EXPECT_TRUE(ra[i] == rb[i] || (std::isnan(ra[i]) && std::isnan(rb[i]))) << name << " row " << i;
  }
}
