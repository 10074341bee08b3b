// RMSNorm forward and backward for the CUDA build (see src/cuda_kernels/norm.rs), HF's
// LlamaRMSNorm: statistics in f32, the normalised row rounded to the input dtype before the
// weight multiplies it.
//
// rms_fwd:  rstd_r = 1 / sqrt(mean_c x[r, c]^2 + eps),  n = x rstd,  y = T(T(n) w)
// rms_bwd:  dn = dy w,  dx = rstd (dn - n mean_c(dn n)),
//           dw_part[c, g] = sum over the rows r of block g of dy[r, c] T(n[r, c])
//           (the caller sums dw_part over g: one partial per block keeps the sum deterministic)
//
// x, y, w, dy, dx in the model dtype T (f32 or bf16); one block of 256 threads a row in the
// forward, grid-strided rows in the backward with the block's dw partial in shared memory.
#include "common.cuh"

// 1 / sqrt(mean(x^2) + eps) of one row, on every thread of the block.
template <typename T>
__device__ float row_rstd(const T *xr, int c, float eps) {
  float ss = 0.0f;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    float v = to_f(xr[j]);
    ss += v * v;
  }
  return rsqrtf(block_reduce(ss, false) / c + eps);
}

template <typename T>
__device__ void rms_fwd(const T *x, const T *w, T *y, int c, float eps) {
  long long r = blockIdx.x;
  const T *xr = x + r * c;
  T *yr = y + r * c;
  float rstd = row_rstd(xr, c, eps);
  for (int j = threadIdx.x; j < c; j += blockDim.x) yr[j] = from_f<T>(to_f(from_f<T>(to_f(xr[j]) * rstd)) * to_f(w[j]));
}

template <typename T>
__device__ void rms_bwd(const T *x, const T *w, const T *dy, T *dx, float *dw_part, long long rows, int c, float eps) {
  extern __shared__ float dw_acc[];  // c floats: column j is only ever touched by thread j % blockDim
  for (int j = threadIdx.x; j < c; j += blockDim.x) dw_acc[j] = 0.0f;
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * c, *dyr = dy + r * c;
    T *dxr = dx + r * c;
    float rstd = row_rstd(xr, c, eps);
    float dot = 0.0f;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
      float n = to_f(xr[j]) * rstd, g = to_f(dyr[j]);
      dot += g * to_f(w[j]) * n;
      dw_acc[j] += g * to_f(from_f<T>(n));
    }
    float mean_dot = block_reduce(dot, false) / c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
      float n = to_f(xr[j]) * rstd;
      dxr[j] = from_f<T>(rstd * (to_f(dyr[j]) * to_f(w[j]) - n * mean_dot));
    }
  }
  for (int j = threadIdx.x; j < c; j += blockDim.x) dw_part[(long long)j * gridDim.x + blockIdx.x] = dw_acc[j];
}

#define NORM_INSTANTIATE(T, NAME)                                                                    \
  extern "C" __global__ void rms_fwd_##NAME(const T *x, const T *w, T *y, int c, float eps) {        \
    rms_fwd<T>(x, w, y, c, eps);                                                                     \
  }                                                                                                  \
  extern "C" __global__ void rms_bwd_##NAME(const T *x, const T *w, const T *dy, T *dx, float *dw_part, \
                                            long long rows, int c, float eps) {                      \
    rms_bwd<T>(x, w, dy, dx, dw_part, rows, c, eps);                                                 \
  }

NORM_INSTANTIATE(float, f32)
NORM_INSTANTIATE(__nv_bfloat16, bf16)
