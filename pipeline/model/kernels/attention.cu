// Fused attention softmax kernels for the CUDA build (see src/cuda_kernels/attention.rs).
//
// masked_softmax:  P[r, :] = softmax(S[r, :] * scale + mask[b, t, :])       (f32 math)
// softmax_bwd:     dS[r, :] = scale * P[r, :] * (dP[r, :] - sum_j P[r, j] dP[r, j])
//
// Rows r run over (B, G, R T) in order (G key/value heads, R query heads per group, so a
// grouped-query layer needs no repeated keys); row r belongs to batch b = r / rows_per_batch
// and query t = r % T. The additive mask is f32 (Bm, 1, T, N) with Bm = 1 (broadcast over the
// batch) or B. One block of 256 threads per row.
//
// Each row is read once: a thread keeps its PER = ceil(N / 256) values in registers (PER is a
// template constant, so they stay registers). A masked entry (mask <= -1e8; a causal row's
// whole future) is never loaded: its probability is exactly 0, as exp(-1e9 - max) was, and in
// the backward pass P = 0 makes dS = 0 without loading dP. A row with no visible key gets
// P = 0 (not NaN). Rows longer than 16 * 256 use the strided fallback (three reads).
#include "common.cuh"

#define MASK_SKIP -1e8f
#define THREADS 256

template <typename T>
__device__ __forceinline__ float masked_logit(const T *srow, const float *mrow, int j, float scale) {
  float m = mrow[j];
  return m > MASK_SKIP ? to_f(srow[j]) * scale + m : -INFINITY;
}

template <typename T, int PER>
__device__ void masked_softmax(const T *s, const float *mask, T *p, int n, int t_q, long long rows_per_batch,
                               long long mask_batch_stride, float scale) {
  long long r = blockIdx.x;
  long long b = r / rows_per_batch;
  long long t = r % t_q;
  const T *srow = s + r * n;
  const float *mrow = mask + b * mask_batch_stride + t * n;
  T *prow = p + r * n;
  float v[PER];
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < PER; k++) {
    int j = threadIdx.x + k * THREADS;
    v[k] = j < n ? masked_logit(srow, mrow, j, scale) : -INFINITY;
    mx = fmaxf(mx, v[k]);
  }
  mx = block_reduce(mx, true);
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < PER; k++) {
    v[k] = v[k] == -INFINITY ? 0.0f : __expf(v[k] - mx);
    sum += v[k];
  }
  sum = block_reduce(sum, false);
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
  for (int k = 0; k < PER; k++) {
    int j = threadIdx.x + k * THREADS;
    if (j < n) prow[j] = from_f<T>(v[k] * inv);
  }
}

template <typename T>
__device__ void masked_softmax_long(const T *s, const float *mask, T *p, int n, int t_q, long long rows_per_batch,
                                    long long mask_batch_stride, float scale) {
  long long r = blockIdx.x;
  long long b = r / rows_per_batch;
  long long t = r % t_q;
  const T *srow = s + r * n;
  const float *mrow = mask + b * mask_batch_stride + t * n;
  T *prow = p + r * n;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < n; j += THREADS) mx = fmaxf(mx, masked_logit(srow, mrow, j, scale));
  mx = block_reduce(mx, true);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n; j += THREADS) {
    float x = masked_logit(srow, mrow, j, scale);
    sum += x == -INFINITY ? 0.0f : __expf(x - mx);
  }
  sum = block_reduce(sum, false);
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int j = threadIdx.x; j < n; j += THREADS) {
    float x = masked_logit(srow, mrow, j, scale);
    prow[j] = from_f<T>(x == -INFINITY ? 0.0f : __expf(x - mx) * inv);
  }
}

template <typename T, int PER>
__device__ void softmax_bwd(const T *p, const T *dp, T *ds, int n, float scale) {
  long long r = blockIdx.x;
  const T *prow = p + r * n;
  const T *dprow = dp + r * n;
  T *dsrow = ds + r * n;
  float pv[PER], dv[PER];
  float dot = 0.0f;
#pragma unroll
  for (int k = 0; k < PER; k++) {
    int j = threadIdx.x + k * THREADS;
    pv[k] = j < n ? to_f(prow[j]) : 0.0f;
    dv[k] = pv[k] != 0.0f ? to_f(dprow[j]) : 0.0f;
    dot += pv[k] * dv[k];
  }
  dot = block_reduce(dot, false);
#pragma unroll
  for (int k = 0; k < PER; k++) {
    int j = threadIdx.x + k * THREADS;
    if (j < n) dsrow[j] = from_f<T>(scale * pv[k] * (dv[k] - dot));
  }
}

template <typename T>
__device__ void softmax_bwd_long(const T *p, const T *dp, T *ds, int n, float scale) {
  long long r = blockIdx.x;
  const T *prow = p + r * n;
  const T *dprow = dp + r * n;
  T *dsrow = ds + r * n;
  float dot = 0.0f;
  for (int j = threadIdx.x; j < n; j += THREADS) {
    float pj = to_f(prow[j]);
    if (pj != 0.0f) dot += pj * to_f(dprow[j]);
  }
  dot = block_reduce(dot, false);
  for (int j = threadIdx.x; j < n; j += THREADS) {
    float pj = to_f(prow[j]);
    dsrow[j] = from_f<T>(pj != 0.0f ? scale * pj * (to_f(dprow[j]) - dot) : 0.0f);
  }
}

#define SOFTMAX_ARGS(T) const T *s, const float *mask, T *p, int n, int t_q, long long rows_per_batch, long long mask_batch_stride, float scale
#define SOFTMAX_PASS s, mask, p, n, t_q, rows_per_batch, mask_batch_stride, scale
#define INSTANTIATE(T, NAME)                                                                                     \
  extern "C" __global__ void masked_softmax_##NAME##_4(SOFTMAX_ARGS(T)) { masked_softmax<T, 4>(SOFTMAX_PASS); }      \
  extern "C" __global__ void masked_softmax_##NAME##_8(SOFTMAX_ARGS(T)) { masked_softmax<T, 8>(SOFTMAX_PASS); }      \
  extern "C" __global__ void masked_softmax_##NAME##_16(SOFTMAX_ARGS(T)) { masked_softmax<T, 16>(SOFTMAX_PASS); }    \
  extern "C" __global__ void masked_softmax_##NAME##_long(SOFTMAX_ARGS(T)) { masked_softmax_long<T>(SOFTMAX_PASS); } \
  extern "C" __global__ void softmax_bwd_##NAME##_4(const T *p, const T *dp, T *ds, int n, float scale) {         \
    softmax_bwd<T, 4>(p, dp, ds, n, scale);                                                                      \
  }                                                                                                              \
  extern "C" __global__ void softmax_bwd_##NAME##_8(const T *p, const T *dp, T *ds, int n, float scale) {         \
    softmax_bwd<T, 8>(p, dp, ds, n, scale);                                                                      \
  }                                                                                                              \
  extern "C" __global__ void softmax_bwd_##NAME##_16(const T *p, const T *dp, T *ds, int n, float scale) {        \
    softmax_bwd<T, 16>(p, dp, ds, n, scale);                                                                     \
  }                                                                                                              \
  extern "C" __global__ void softmax_bwd_##NAME##_long(const T *p, const T *dp, T *ds, int n, float scale) {      \
    softmax_bwd_long<T>(p, dp, ds, n, scale);                                                                    \
  }

INSTANTIATE(float, f32)
INSTANTIATE(__nv_bfloat16, bf16)
