/* DRL_RANGE("name"): an NVTX range from here to the end of the enclosing scope, so nsys shows every phase.
 * A no-op in builds without CUDA. NVTX3 is header-only: with no profiler attached each range costs a branch. */
#ifndef DRL_NVTX_H
#define DRL_NVTX_H

#define DRL_CAT_(a, b) a##b
#define DRL_CAT(a, b) DRL_CAT_(a, b)

#if defined(DRL_HAVE_CUDA) && defined(__GNUC__)
#include <nvtx3/nvToolsExt.h>

static inline int drl_range_begin_(const char *name) { return nvtxRangePushA(name); }
static inline void drl_range_end_(int *depth) { (void)depth; nvtxRangePop(); }
#define DRL_RANGE(name) \
  __attribute__((cleanup(drl_range_end_), unused)) int DRL_CAT(drl_range_, __LINE__) = drl_range_begin_(name)
#else
#define DRL_RANGE(name) ((void)0)
#endif

#endif /* DRL_NVTX_H */
