// Error recording: statuses carry "file:line: message", thread-locally, and names for every status.
#include <gtest/gtest.h>

#include <string>
#include <thread>

extern "C" {
#include "kernels/status.h"
}

namespace {
drl_status failing_call(int x) { return DRL_FAIL(DRL_ERR_CONFIG, "value %d is bad", x); }
drl_status propagates(int x) {
  DRL_TRY(failing_call(x));
  return DRL_OK;
}
}  // namespace

TEST(Status, FailRecordsFileLineAndMessage) {
  drl_clear_error();
  EXPECT_STREQ(drl_last_error(), "");
  EXPECT_EQ(propagates(7), DRL_ERR_CONFIG);
  std::string msg = drl_last_error();
  EXPECT_EQ(msg.rfind("test_status.cc:", 0), 0u) << msg;  // base name only: no build-machine paths
  EXPECT_NE(msg.find("value 7 is bad"), std::string::npos) << msg;
}

TEST(Status, ContextIsPrefixed) {
  failing_call(3);
  EXPECT_EQ(drl_fail_context(DRL_ERR_IO, "loading %s", "cfg.yaml"), DRL_ERR_IO);
  std::string msg = drl_last_error();
  EXPECT_EQ(msg.rfind("loading cfg.yaml: test_status.cc:", 0), 0u) << msg;
  EXPECT_NE(msg.find("value 3 is bad"), std::string::npos);
}

TEST(Status, LongMessagesAreTruncatedNotOverflowed) {
  std::string big(10000, 'x');
  DRL_FAIL(DRL_ERR_IO, "%s", big.c_str());
  std::string msg = drl_last_error();
  EXPECT_GT(msg.size(), 1000u);
  EXPECT_LT(msg.size(), 4096u);
}

TEST(Status, ErrorsAreThreadLocal) {
  failing_call(1);
  std::thread t([] { failing_call(2); });
  t.join();
  EXPECT_NE(std::string(drl_last_error()).find("value 1"), std::string::npos);
}

TEST(Status, EveryStatusHasAName) {
  for (int s = DRL_OK; s <= DRL_ERR_INTERNAL; ++s) {
    std::string name = drl_status_name((drl_status)s);
    EXPECT_EQ(name.rfind("DRL_", 0), 0u);
    EXPECT_NE(name, "DRL_ERR_UNKNOWN") << s;
  }
  EXPECT_STREQ(drl_status_name((drl_status)999), "DRL_ERR_UNKNOWN");
  EXPECT_STREQ(drl_version(), DYNRL_VERSION_STRING);
}
