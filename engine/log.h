/* Console output of the engine: levelled messages and progress lines, printed by rank 0 only. A progress line is
 * redrawn in place with a bar and ETA on a terminal and printed as a plain line every log_every steps otherwise. */
#ifndef DRL_LOG_H
#define DRL_LOG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum drl_log_level { DRL_LOG_ERROR = 0, DRL_LOG_WARN, DRL_LOG_INFO, DRL_LOG_DEBUG } drl_log_level;

/* Sets the most detailed level printed (quiet = warnings and errors only) and this process's rank (only rank 0
 * prints below DRL_LOG_ERROR). */
void drl_log_setup(drl_log_level level, int quiet, int rank);

/* Whether progress may redraw a bar in place (default 1): only when stdout is a terminal as well. Otherwise, or with
 * 0 (a job of several processes, or --no-progress), progress is a line every `every` steps. */
void drl_log_allow_bar(int allowed);

/* Prints one message at level to stderr (errors, warnings) or stdout (the rest). */
void drl_log(drl_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

typedef struct drl_log_progress {
  const char *label;
  int64_t total, start; /* steps; start = the step the loop resumed from */
  double t0;            /* when the loop started */
  int every;            /* plain-line period when not on a terminal */
  int tty;
} drl_log_progress;

/* Starts a progress display of total steps, resuming at step start. */
void drl_log_progress_begin(drl_log_progress *p, const char *label, int64_t total, int64_t start, int every);

/* Shows step (1-based) with the caller's summary text ("loss 0.41 tok/s 12000"); adds the ETA. */
void drl_log_progress_update(drl_log_progress *p, int64_t step, const char *text);

/* Ends the display (a newline after an in-place bar). */
void drl_log_progress_end(drl_log_progress *p);

/* Monotonic seconds. */
double drl_log_seconds(void);

#ifdef __cplusplus
}
#endif
#endif /* DRL_LOG_H */
