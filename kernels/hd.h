/* DRL_HD marks per-element math shared by the CPU and CUDA implementations of an op. */
#ifndef DRL_HD_H
#define DRL_HD_H

#ifdef __CUDACC__
#define DRL_HD __host__ __device__
#else
#define DRL_HD
#endif

#endif /* DRL_HD_H */
