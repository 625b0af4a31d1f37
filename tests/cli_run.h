// Running the dynrl command from a test as a user would: a child process with its own environment and limits,
// its output in a file, and how it ended.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

struct CliExit {
  int code = -1;   // exit status, or -1 when ended by a signal
  int signal = 0;  // the signal that ended it
  std::string log;  // stdout and stderr together
};

struct CliLimits {
  rlim_t fsize = 0;     // RLIMIT_FSIZE in bytes (0: none); SIGXFSZ is reset to its default: dynrl must ignore it
  rlim_t as = 0;        // RLIMIT_AS in bytes (0: none)
  unsigned alarm_s = 0; // SIGALRM after this many seconds (0: none), so that a hang ends as a signal
};

// Runs `dynrl args...` with DYNRL_FAULT=fault (unset when empty), output to log_path.
inline CliExit run_dynrl(const std::vector<std::string> &args, const std::string &fault, const std::string &log_path,
                         CliLimits limits = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fault.empty()) unsetenv("DYNRL_FAULT");
    else setenv("DYNRL_FAULT", fault.c_str(), 1);
    signal(SIGXFSZ, SIG_DFL);
    struct rlimit fs = {limits.fsize, limits.fsize}, as = {limits.as, limits.as};
    if (limits.fsize > 0 && setrlimit(RLIMIT_FSIZE, &fs) != 0) _exit(126);
    if (limits.as > 0 && setrlimit(RLIMIT_AS, &as) != 0) _exit(126);
    if (limits.alarm_s) alarm(limits.alarm_s);
    std::vector<char *> argv{(char *)DRL_CLI_PATH};
    for (const std::string &a : args) argv.push_back((char *)a.c_str());
    argv.push_back(nullptr);
    execv(DRL_CLI_PATH, argv.data());
    _exit(127);
  }
  CliExit e;
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) e.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
  std::ifstream in(log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  e.log = ss.str();
  return e;
}

// a followed by b.
inline std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string> &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// `train --quiet` into dir with each of sets and extra as --set, and --resume when asked.
inline std::vector<std::string> train_args(const std::vector<std::string> &sets, const std::string &dir,
                                           const std::vector<std::string> &extra = {}, bool resume = false) {
  std::vector<std::string> a = {"train", "--quiet", "--set", "run.out_dir=" + dir};
  for (const auto *list : {&sets, &extra})
    for (const std::string &kv : *list) {
      a.push_back("--set");
      a.push_back(kv);
    }
  if (resume) a.push_back("--resume");
  return a;
}
