/* The bias of a linear layer: y[r, :] += b (forward) and db += the column sums of dy (backward), both row-major
 * [rows, cols]. The backward sums each column in double over rows in ascending order, on both backends, so the result
 * is the same bits on the CPU (any thread count) and the GPU. */
#ifndef DRL_BIAS_H
#define DRL_BIAS_H

#include <stdint.h>

#include "device.h"
#include "exp.h" /* drl_dadd */
#include "hd.h"
#include "philox.h" /* drl_fadd: explicitly rounded */

#ifdef __cplusplus
extern "C" {
#endif

/* y[r, c] += b[c] for r < rows, c < cols (a linear layer's bias). */
drl_status drl_bias_add(const drl_device *dev, float *y, const float *b, int64_t rows, int cols);

/* db[c] += the sum over r of dy[r, c], accumulated in double over r ascending and rounded to float once, then added:
 * the same bits on both backends and any thread count. */
drl_status drl_bias_backward(const drl_device *dev, float *db, const float *dy, int64_t rows, int cols);

drl_status drl_bias_add_cpu(float *y, const float *b, int64_t rows, int cols);
drl_status drl_bias_backward_cpu(float *db, const float *dy, int64_t rows, int cols);
drl_status drl_bias_add_cuda(const drl_device *dev, float *y, const float *b, int64_t rows, int cols);
drl_status drl_bias_backward_cuda(const drl_device *dev, float *db, const float *dy, int64_t rows, int cols);

#ifdef __cplusplus
}
#endif

/* ---- the math shared by both implementations ---- */

/* One column's running sum plus dy[r, c], in double (exact while the terms span < 29 binades; rounded otherwise, in
 * the same order on both backends). */
static inline DRL_HD double drl_bias_acc(double acc, float dy) { return drl_dadd(acc, (double)dy); }

/* The column total added to db: rounded to float once, then one float add. */
static inline DRL_HD float drl_bias_finish(float db, double acc) { return drl_fadd(db, (float)acc); }

#endif /* DRL_BIAS_H */
