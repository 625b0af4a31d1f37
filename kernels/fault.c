#define _POSIX_C_SOURCE 200809L
#include "fault.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_MAX 16

typedef struct fault {
  char kind[24];
  char point[48]; /* empty: a rank:step spec */
  int rank;
  long long first, last; /* steps, or the reach count n (first == last) */
  char detail[96];
  long long reached; /* reaches of point so far */
} fault;

static fault faults[FAULT_MAX];
static int n_faults = -1; /* -1: DYNRL_FAULT not read yet */

/* One spec; 0 when malformed (a test that sets a malformed spec sees its fault never happen, and says so). */
static int parse_spec(const char *s, fault *f) {
  memset(f, 0, sizeof *f);
  int n = 0;
  if (sscanf(s, "%23[a-z_]@%n", f->kind, &n) != 1 || n == 0) return 0;
  s += n;
  if (isdigit((unsigned char)*s)) {
    n = 0;
    if (sscanf(s, "%d:%lld%n", &f->rank, &f->first, &n) != 2) return 0;
    s += n;
    f->last = f->first;
    if (*s == '-') {
      n = 0;
      if (sscanf(s + 1, "%lld%n", &f->last, &n) != 1) return 0;
      s += 1 + n;
    }
    if (*s == ':') snprintf(f->detail, sizeof f->detail, "%s", s + 1);
    else if (*s) return 0;
    return 1;
  }
  n = 0;
  if (sscanf(s, "%47[a-z_0-9]:%lld%n", f->point, &f->first, &n) != 2 || s[n] != '\0') return 0;
  f->last = f->first;
  return 1;
}

static void parse_env(void) {
  n_faults = 0;
  const char *env = getenv("DYNRL_FAULT");
  if (!env || !*env) return;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", env);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok && n_faults < FAULT_MAX; tok = strtok_r(NULL, ",", &save)) {
    if (parse_spec(tok, &faults[n_faults])) n_faults++;
    else fprintf(stderr, "dynrl: ignoring malformed DYNRL_FAULT spec '%s'\n", tok);
  }
}

void drl_fault_reset(void) { parse_env(); }

static int is_process_kind(const char *kind) {
  return !strcmp(kind, "kill") || !strcmp(kind, "exit") || !strcmp(kind, "hang");
}

static void act(const fault *f, const char *where) {
  fprintf(stderr, "dynrl: injected fault '%s' %s (DYNRL_FAULT)\n", f->kind, where);
  fflush(stderr);
  if (strcmp(f->kind, "kill") == 0) raise(SIGKILL);
  if (strcmp(f->kind, "exit") == 0) _exit(3);
  if (strcmp(f->kind, "hang") == 0)
    for (;;) pause();
}

void drl_fault_point(int rank, int64_t step) {
  if (n_faults < 0) parse_env();
  for (int i = 0; i < n_faults; ++i) {
    const fault *f = &faults[i];
    if (f->point[0] || !is_process_kind(f->kind) || rank != f->rank || step < f->first || step > f->last) continue;
    char where[64];
    snprintf(where, sizeof where, "on rank %d after step %lld", rank, (long long)step);
    act(f, where);
  }
}

void drl_fault_reach(const char *point) {
  if (n_faults < 0) parse_env();
  for (int i = 0; i < n_faults; ++i) {
    fault *f = &faults[i];
    if (!f->point[0] || strcmp(f->point, point) != 0 || ++f->reached != f->first || !is_process_kind(f->kind))
      continue;
    char where[96];
    snprintf(where, sizeof where, "at %s (reach %lld)", point, f->reached);
    act(f, where);
  }
}

int drl_fault_value(const char *kind, int rank, int64_t step, const char **detail) {
  if (n_faults < 0) parse_env();
  for (int i = 0; i < n_faults; ++i) {
    const fault *f = &faults[i];
    if (f->point[0] || strcmp(f->kind, kind) != 0 || rank != f->rank || step < f->first || step > f->last) continue;
    if (detail) *detail = f->detail;
    return 1;
  }
  return 0;
}

drl_fault_values drl_fault_values_at(int rank, int64_t step) {
  drl_fault_values f = {drl_fault_value("nan_loss", rank, step, NULL),
                        drl_fault_value("nan_grad", rank, step, NULL) || drl_fault_value("inf_grad", rank, step, NULL)};
  return f;
}
