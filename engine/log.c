#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static drl_log_level max_level = DRL_LOG_INFO;
static int log_rank = 0;
static int bar_allowed = 1;

void drl_log_allow_bar(int allowed) { bar_allowed = allowed != 0; }

void drl_log_setup(drl_log_level level, int quiet, int rank) {
  max_level = quiet && level > DRL_LOG_WARN ? DRL_LOG_WARN : level;
  log_rank = rank;
}

static int printing(drl_log_level level) { return level <= max_level && (log_rank == 0 || level == DRL_LOG_ERROR); }

void drl_log(drl_log_level level, const char *fmt, ...) {
  if (!printing(level)) return;
  FILE *out = level <= DRL_LOG_WARN ? stderr : stdout;
  if (level == DRL_LOG_WARN) fputs("warning: ", out);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(out, fmt, ap);
  va_end(ap);
  fputc('\n', out);
  fflush(out);
}

double drl_log_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void drl_log_progress_begin(drl_log_progress *p, const char *label, int64_t total, int64_t start, int every) {
  p->label = label;
  p->total = total;
  p->start = start;
  p->t0 = drl_log_seconds();
  p->every = every > 0 ? every : 1;
  p->tty = bar_allowed && isatty(STDOUT_FILENO);
}

static void format_duration(double s, char *buf, size_t cap) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void drl_log_progress_update(drl_log_progress *p, int64_t step, const char *text) {
  if (!printing(DRL_LOG_INFO)) return;
  int last = step == p->total;
  if (!p->tty && step % p->every != 0 && !last) return;
  double done = (double)(step - p->start), elapsed = drl_log_seconds() - p->t0;
  double eta = done > 0 ? elapsed / done * (double)(p->total - step) : 0.0;
  char eta_s[32], el_s[32];
  format_duration(eta, eta_s, sizeof eta_s);
  format_duration(elapsed, el_s, sizeof el_s);
  if (p->tty) {
    char bar[21];
    int fill = p->total > 0 ? (int)(20 * step / p->total) : 20;
    for (int i = 0; i < 20; ++i) bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    printf("\r%s [%s] %lld/%lld %s | %s, %s eta %s\033[K", p->label, bar, (long long)step, (long long)p->total, text,
           el_s, p->label, eta_s);
  } else {
    printf("%s %lld/%lld %s | %s, %s eta %s\n", p->label, (long long)step, (long long)p->total, text, el_s, p->label,
           eta_s);
  }
  fflush(stdout);
}

void drl_log_progress_end(drl_log_progress *p) {
  if (p->tty && printing(DRL_LOG_INFO)) {
    putchar('\n');
    fflush(stdout);
  }
}
