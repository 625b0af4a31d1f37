/* Error recording: library functions return drl_status and leave a message for drl_last_error(). */
#ifndef DRL_STATUS_H
#define DRL_STATUS_H

#include <dynrl.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DRL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DRL_PRINTF(f, a)
#endif

/* Records "file:line: message" as this thread's last error and returns s. */
drl_status drl_fail(drl_status s, const char *file, int line, const char *fmt, ...) DRL_PRINTF(4, 5);

/* Prefixes this thread's last error with "context: " (used when passing an error upward); returns s. */
drl_status drl_fail_context(drl_status s, const char *fmt, ...) DRL_PRINTF(2, 3);

/* Clears this thread's last error. */
void drl_clear_error(void);

#ifdef __cplusplus
}
#endif

#define DRL_FAIL(s, ...) drl_fail((s), __FILE__, __LINE__, __VA_ARGS__)

/* Propagates a non-OK status from a dynrl call. */
#define DRL_TRY(call)                    \
  do {                                   \
    drl_status drl_try_s_ = (call);      \
    if (drl_try_s_ != DRL_OK) return drl_try_s_; \
  } while (0)

/* In functions with `drl_status st = DRL_OK;` and a `done:` cleanup label: set st and jump on failure. */
#define DRL_TRY_GOTO(call)               \
  do {                                   \
    st = (call);                         \
    if (st != DRL_OK) goto done;         \
  } while (0)

#endif /* DRL_STATUS_H */
