/* Deliberate faults, for the tests of what a job does when a rank dies or hangs. DYNRL_FAULT="kind@rank:step" makes
 * rank `rank` fail when it finishes global training step `step`: kind `kill` (SIGKILL, as a crash or the OOM killer
 * would), `hang` (stops making progress, as a deadlocked or stopped process would) or `exit` (exits with status 3).
 * Unset (always, outside tests), a fault point costs one branch. */
#ifndef DRL_FAULT_H
#define DRL_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fails here if DYNRL_FAULT names this rank and step. */
void drl_fault_point(int rank, int64_t step);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FAULT_H */
