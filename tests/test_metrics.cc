// The metrics file: rows appended per step, readable while the writer runs (SWMR), truncated on resume.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "data/h5.h"
#include "data/metrics.h"
}

namespace {

class Metrics : public TempDirTest {};

std::vector<double> read_series(const std::string &path, const char *name) {
  drl_h5_file f;
  EXPECT_EQ(drl_h5_open_read(path.c_str(), &f), DRL_OK) << last_error();
  int64_t shape[1];
  void *data = nullptr;
  EXPECT_EQ(drl_h5_read_array(&f, name, DRL_H5_FLOAT64, 1, shape, 1 << 20, &data), DRL_OK) << last_error();
  std::vector<double> v((double *)data, (double *)data + shape[0]);
  free(data);
  drl_h5_close(&f);
  return v;
}

const char *const kNames[] = {"loss", "reward_mean"};

}  // namespace

TEST_F(Metrics, RowsAppendAndReadBack) {
  drl_metrics m;
  ASSERT_EQ(drl_metrics_open(&m, path("m.h5").c_str(), kNames, 2, -1, 4), DRL_OK) << last_error();
  for (int s = 1; s <= 10; ++s) {
    double v[2] = {1.0 / s, 0.1 * s};
    ASSERT_EQ(drl_metrics_log(&m, s, v), DRL_OK) << last_error();
  }
  drl_metrics_close(&m);
  std::vector<double> loss = read_series(path("m.h5"), "/metrics/loss");
  ASSERT_EQ(loss.size(), 10u);
  EXPECT_EQ(loss[3], 0.25);
  EXPECT_EQ(read_series(path("m.h5"), "/metrics/reward_mean")[9], 0.1 * 10);
}

// A reader opened with SWMR sees flushed rows while the writer still holds the file.
TEST_F(Metrics, ReadableWhileWriting) {
  drl_metrics m;
  ASSERT_EQ(drl_metrics_open(&m, path("m.h5").c_str(), kNames, 2, -1, 1), DRL_OK) << last_error();
  for (int s = 1; s <= 3; ++s) {
    double v[2] = {(double)s, 0};
    ASSERT_EQ(drl_metrics_log(&m, s, v), DRL_OK);
  }
  hid_t f = H5Fopen(path("m.h5").c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t d = H5Dopen2(f, "/metrics/loss", H5P_DEFAULT);
  ASSERT_GE(d, 0);
  hid_t space = H5Dget_space(d);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  EXPECT_EQ(n, 3u);
  H5Sclose(space);
  double more[2] = {4, 0};
  ASSERT_EQ(drl_metrics_log(&m, 4, more), DRL_OK);
  ASSERT_GE(H5Drefresh(d), 0);
  space = H5Dget_space(d);
  H5Sget_simple_extent_dims(space, &n, nullptr);
  EXPECT_EQ(n, 4u);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  drl_metrics_close(&m);
}

// Resuming at step 6 keeps rows 1..6 and rewrites what follows; a fresh run (resume_step -1) starts over.
TEST_F(Metrics, ResumeDropsRowsAfterTheCheckpoint) {
  drl_metrics m;
  std::string p = path("m.h5");
  ASSERT_EQ(drl_metrics_open(&m, p.c_str(), kNames, 2, -1, 100), DRL_OK);
  for (int s = 1; s <= 9; ++s) {
    double v[2] = {(double)s, 0};
    ASSERT_EQ(drl_metrics_log(&m, s, v), DRL_OK);
  }
  drl_metrics_close(&m);
  ASSERT_EQ(drl_metrics_open(&m, p.c_str(), kNames, 2, 6, 100), DRL_OK) << last_error();
  EXPECT_EQ(m.rows, 6);
  double v[2] = {70, 0};
  ASSERT_EQ(drl_metrics_log(&m, 7, v), DRL_OK);
  drl_metrics_close(&m);
  std::vector<double> loss = read_series(p, "/metrics/loss");
  ASSERT_EQ(loss.size(), 7u);
  EXPECT_EQ(loss[5], 6.0);
  EXPECT_EQ(loss[6], 70.0);
  // Other names: a new file, the old one kept beside it (twice: .old, then .old.1).
  const char *other[] = {"accuracy"};
  ASSERT_EQ(drl_metrics_open(&m, p.c_str(), other, 1, 6, 100), DRL_OK) << last_error();
  EXPECT_EQ(m.rows, 0);
  drl_metrics_close(&m);
  EXPECT_EQ(read_series(p + ".old", "/metrics/loss").size(), 7u);
  ASSERT_EQ(drl_metrics_open(&m, p.c_str(), kNames, 2, 6, 100), DRL_OK) << last_error();
  EXPECT_EQ(m.rows, 0);
  drl_metrics_close(&m);
  EXPECT_EQ(read_series(p + ".old.1", "/metrics/accuracy").size(), 0u);
  EXPECT_EQ(read_series(p + ".old", "/metrics/loss").size(), 7u);
  ASSERT_EQ(drl_metrics_open(&m, p.c_str(), other, 1, -1, 100), DRL_OK);
  EXPECT_EQ(m.rows, 0);
  drl_metrics_close(&m);
}

TEST_F(Metrics, BadNamesAndPathsAreErrors) {
  drl_metrics m;
  const char *bad[] = {"a/b"};
  EXPECT_EQ(drl_metrics_open(&m, path("m.h5").c_str(), bad, 1, -1, 1), DRL_ERR_INVALID_ARG);
  EXPECT_ERROR_HAS("a/b");
  EXPECT_NE(drl_metrics_open(&m, path("no/such/dir/m.h5").c_str(), kNames, 2, -1, 1), DRL_OK);
  EXPECT_ERROR_HAS("m.h5");
  drl_metrics_close(&m);
}
