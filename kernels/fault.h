/* Deliberate faults, for the tests of what a job does when a process dies, hangs, writes a non-finite value or runs
 * out of disk. DYNRL_FAULT holds one or more specs separated by commas:
 *
 *   kind@rank:step[-last][:detail]   at the end of global training step `step` (through `last`) on rank `rank`
 *   kind@point:n                     the n-th time (from 1) this process reaches the named point
 *
 * Process kinds, acted on here: `kill` (SIGKILL, as a crash or the OOM killer would), `hang` (stops making progress,
 * as a deadlocked or stopped process would), `exit` (exits with status 3). Any other kind (for example `nan_loss`)
 * is a value fault: the caller asks drl_fault_value whether to inject it. Unset (always, outside tests), a fault
 * point costs one branch. */
#ifndef DRL_FAULT_H
#define DRL_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fails here if a process-kind spec names this rank and global step. */
void drl_fault_point(int rank, int64_t step);

/* Fails here if a process-kind spec names this point and this is its n-th reach in this process. */
void drl_fault_reach(const char *point);

/* Reads DYNRL_FAULT again, forgetting reach counts (tests that change it within one process). */
void drl_fault_reset(void);

/* 1 if a spec of this value kind covers rank and step; *detail (when not NULL) gets the spec's detail ("" if none). */
int drl_fault_value(const char *kind, int rank, int64_t step, const char **detail);

/* The value faults covering this rank at the job's step, for a training step's loss and gradient: nan_loss makes the
 * loss NaN; grad (nan_grad, inf_grad) sets a value of the first shard's gradient before the reduction (see
 * drl_layout_inject_grad_fault), whose overlapped start is then disarmed. One hook for every phase. */
typedef struct drl_fault_values {
  int nan_loss, grad;
} drl_fault_values;
drl_fault_values drl_fault_values_at(int rank, int64_t step);

#ifdef __cplusplus
}
#endif
#endif /* DRL_FAULT_H */
