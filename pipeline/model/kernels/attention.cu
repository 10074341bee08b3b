// Fused attention softmax kernels for the CUDA build (see src/cuda_kernels.rs).
//
// masked_softmax:  P[r, :] = softmax(S[r, :] * scale + mask[b, t, :])       (f32 math)
// softmax_bwd:     dS[r, :] = scale * P[r, :] * (dP[r, :] - sum_j P[r, j] dP[r, j])
//
// Rows r run over (B, H, T) in order; row r belongs to batch b = r / (H T) and query t = r % T.
// The additive mask is f32 (Bm, 1, T, N) with Bm = 1 (broadcast over the batch) or B. One block
// of 256 threads per row; each thread strides over the row's N columns.
#include "common.cuh"

template <typename T>
__device__ void masked_softmax(const T *s, const float *mask, T *p, int n, int t_q, int heads,
                               long long mask_batch_stride, float scale) {
  long long r = blockIdx.x;
  long long b = r / ((long long)heads * t_q);
  long long t = r % t_q;
  const T *srow = s + r * n;
  const float *mrow = mask + b * mask_batch_stride + t * n;
  T *prow = p + r * n;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, to_f(srow[j]) * scale + mrow[j]);
  mx = block_reduce(mx, true);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) sum += __expf(to_f(srow[j]) * scale + mrow[j] - mx);
  sum = block_reduce(sum, false);
  float inv = 1.0f / sum;
  for (int j = threadIdx.x; j < n; j += blockDim.x) prow[j] = from_f<T>(__expf(to_f(srow[j]) * scale + mrow[j] - mx) * inv);
}

template <typename T>
__device__ void softmax_bwd(const T *p, const T *dp, T *ds, int n, float scale) {
  long long r = blockIdx.x;
  const T *prow = p + r * n;
  const T *dprow = dp + r * n;
  T *dsrow = ds + r * n;
  float dot = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) dot += to_f(prow[j]) * to_f(dprow[j]);
  dot = block_reduce(dot, false);
  for (int j = threadIdx.x; j < n; j += blockDim.x) dsrow[j] = from_f<T>(scale * to_f(prow[j]) * (to_f(dprow[j]) - dot));
}

#define INSTANTIATE(T, NAME)                                                                         \
  extern "C" __global__ void masked_softmax_##NAME(const T *s, const float *mask, T *p, int n, int t_q, \
                                                   int heads, long long mask_batch_stride, float scale) { \
    masked_softmax<T>(s, mask, p, n, t_q, heads, mask_batch_stride, scale);                        \
  }                                                                                                  \
  extern "C" __global__ void softmax_bwd_##NAME(const T *p, const T *dp, T *ds, int n, float scale) { \
    softmax_bwd<T>(p, dp, ds, n, scale);                                                            \
  }

INSTANTIATE(float, f32)
INSTANTIATE(__nv_bfloat16, bf16)
