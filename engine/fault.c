#define _POSIX_C_SOURCE 200809L
#include "fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fault {
  int parsed, armed;
  char kind[8];
  int rank;
  long long step;
} fault;

static fault the_fault;

void drl_fault_point(int rank, int64_t step) {
  fault *f = &the_fault;
  if (!f->parsed) {
    f->parsed = 1;
    const char *spec = getenv("DYNRL_FAULT");
    f->armed = spec && sscanf(spec, "%7[a-z]@%d:%lld", f->kind, &f->rank, &f->step) == 3;
  }
  if (!f->armed || rank != f->rank || step != f->step) return;
  fprintf(stderr, "dynrl: rank %d: injected fault '%s' after step %lld (DYNRL_FAULT)\n", rank, f->kind, f->step);
  fflush(stderr);
  if (strcmp(f->kind, "kill") == 0) raise(SIGKILL);
  if (strcmp(f->kind, "exit") == 0) _exit(3);
  if (strcmp(f->kind, "hang") == 0)
    for (;;) pause();
}
