// Shared by the unit tests: a fresh temporary directory per test and a check on drl_last_error()'s text.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

extern "C" {
#include "kernels/status.h"
}

inline std::string last_error() { return drl_last_error(); }

#define EXPECT_ERROR_HAS(sub) EXPECT_NE(last_error().find(sub), std::string::npos) << "message: " << last_error()

// A fixture whose tests each get their own directory under /tmp, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  std::string dir_;

  void SetUp() override {
    char tmpl[] = "/tmp/dynrl_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    drl_clear_error();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string &name) const { return dir_ + "/" + name; }
};
