// DYNRL_FAULT parsing and matching (kernels/fault.h). Process faults are exercised by forking: the child must die
// the way the spec says, exactly at the named step or reach, and not before.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

extern "C" {
#include "kernels/fault.h"
}

namespace {

void set_faults(const char *spec) {
  if (spec) setenv("DYNRL_FAULT", spec, 1);
  else unsetenv("DYNRL_FAULT");
  drl_fault_reset();
}

// Runs body in a child; returns its wait status.
template <class F> int in_child(F body) {
  pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(Fault, UnsetInjectsNothing) {
  set_faults(nullptr);
  EXPECT_FALSE(drl_fault_value("nan_loss", 0, 1, nullptr));
  int st = in_child([] {
    for (int s = 0; s < 100; ++s) drl_fault_point(0, s);
    drl_fault_reach("ckpt_written");
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(Fault, ValueSpecsMatchRankStepRangeAndDetail) {
  set_faults("nan_loss@0:5,inf_grad@1:3-6:blocks.0.wq,kill@0:100");
  const char *detail = nullptr;
  EXPECT_FALSE(drl_fault_value("nan_loss", 0, 4, &detail));
  EXPECT_TRUE(drl_fault_value("nan_loss", 0, 5, &detail));
  EXPECT_STREQ(detail, "");
  EXPECT_FALSE(drl_fault_value("nan_loss", 1, 5, &detail));
  EXPECT_FALSE(drl_fault_value("nan_loss", 0, 6, &detail));
  for (int s = 3; s <= 6; ++s) {
    EXPECT_TRUE(drl_fault_value("inf_grad", 1, s, &detail)) << s;
    EXPECT_STREQ(detail, "blocks.0.wq");
  }
  EXPECT_FALSE(drl_fault_value("inf_grad", 1, 7, nullptr));
  EXPECT_FALSE(drl_fault_value("kill", 0, 99, nullptr));  // another kind
  set_faults(nullptr);
}

TEST(Fault, ProcessFaultsFireAtTheirStepOnly) {
  set_faults("exit@2:7");
  int st = in_child([] {
    for (int s = 0; s < 7; ++s) drl_fault_point(2, s);  // before the step
    for (int s = 0; s < 20; ++s) drl_fault_point(1, s);  // another rank
    std::_Exit(9);
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 9) << st;
  st = in_child([] { drl_fault_point(2, 7); });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3) << st;
  set_faults("kill@0:3");
  st = in_child([] { drl_fault_point(0, 3); });
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  set_faults(nullptr);
}

TEST(Fault, PointFaultsFireAtTheNthReach) {
  set_faults("kill@ckpt_written:3");
  int st = in_child([] {
    drl_fault_reach("ckpt_written");
    drl_fault_reach("ckpt_renamed");
    drl_fault_reach("ckpt_written");
    std::_Exit(9);
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 9) << st;
  st = in_child([] {
    for (int i = 0; i < 3; ++i) drl_fault_reach("ckpt_written");
    std::_Exit(9);
  });
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  set_faults(nullptr);
}

TEST(Fault, MalformedSpecsAreIgnoredAndTheRestApply) {
  set_faults("kill@,nan_loss@0:x,exit@0:2x,nan_loss@0:2");
  EXPECT_TRUE(drl_fault_value("nan_loss", 0, 2, nullptr));
  EXPECT_FALSE(drl_fault_value("exit", 0, 2, nullptr));
  set_faults(nullptr);
}

}  // namespace
