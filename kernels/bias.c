/* CPU bias ops. The backward gives each thread whole blocks of columns and walks all rows for them (contiguous reads of
 * the block of each row), so every column is still summed in ascending r: the thread count changes no bit. */
#include "bias.h"

#include "nvtx.h"

/* Columns per block of the backward: the accumulators of one block stay in registers / L1. */
#define BIAS_COL_BLOCK 64

drl_status drl_bias_add_cpu(float *y, const float *b, int64_t rows, int cols) {
#pragma omp parallel for schedule(static) if (rows * cols > DRL_OMP_MIN_CHEAP)
  for (int64_t r = 0; r < rows; ++r) {
    float *yr = y + r * cols;
    for (int c = 0; c < cols; ++c) yr[c] = drl_fadd(yr[c], b[c]);
  }
  return DRL_OK;
}

drl_status drl_bias_backward_cpu(float *db, const float *dy, int64_t rows, int cols) {
  const int blocks = (cols + BIAS_COL_BLOCK - 1) / BIAS_COL_BLOCK;
#pragma omp parallel for schedule(static) if (rows * cols > DRL_OMP_MIN_CHEAP)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * BIAS_COL_BLOCK, nc = cols - c0 < BIAS_COL_BLOCK ? cols - c0 : BIAS_COL_BLOCK;
    double acc[BIAS_COL_BLOCK];
    for (int j = 0; j < nc; ++j) acc[j] = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const float *g = dy + r * cols + c0;
      for (int j = 0; j < nc; ++j) acc[j] = drl_bias_acc(acc[j], g[j]);
    }
    for (int j = 0; j < nc; ++j) db[c0 + j] = drl_bias_finish(db[c0 + j], acc[j]);
  }
  return DRL_OK;
}

static drl_status check_shape(const char *op, int64_t rows, int cols) {
  if (rows < 0 || cols < 0)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: negative size rows=%lld cols=%d", op, (long long)rows, cols);
  if (cols > 0 && rows > INT64_MAX / cols)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "%s: rows=%lld x cols=%d overflows the index range", op, (long long)rows,
                    cols);
  return DRL_OK;
}

drl_status drl_bias_add(const drl_device *dev, float *y, const float *b, int64_t rows, int cols) {
  DRL_RANGE("bias_add");
  DRL_TRY(check_shape("drl_bias_add", rows, cols));
  if (rows == 0 || cols == 0) return DRL_OK;
  if (!y || !b)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_bias_add: NULL buffer (y %p, b %p)", (void *)y, (const void *)b);
  DRL_DISPATCH_CUDA(dev, drl_bias_add_cuda(dev, y, b, rows, cols));
  return drl_bias_add_cpu(y, b, rows, cols);
}

drl_status drl_bias_backward(const drl_device *dev, float *db, const float *dy, int64_t rows, int cols) {
  DRL_RANGE("bias_backward");
  DRL_TRY(check_shape("drl_bias_backward", rows, cols));
  if (rows == 0 || cols == 0) return DRL_OK; /* an empty sum adds nothing */
  if (!db || !dy)
    return DRL_FAIL(DRL_ERR_INVALID_ARG, "drl_bias_backward: NULL buffer (db %p, dy %p)", (void *)db,
                    (const void *)dy);
  DRL_DISPATCH_CUDA(dev, drl_bias_backward_cuda(dev, db, dy, rows, cols));
  return drl_bias_backward_cpu(db, dy, rows, cols);
}
