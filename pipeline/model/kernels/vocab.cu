// Fused log-softmax + gather over the vocabulary for the distillation loss (see
// src/cuda_kernels.rs). For logits z (R, V) and J ids per row (the teacher's top-k and the
// sampled token):
//
// lse_gather:      out[r, i] = z[r, idx[r, i]] - lse_r  (i < J),   out[r, J] = lse_r
//                  lse_r = log sum_c exp(z[r, c]), one read of the row (online max and sum)
// lse_gather_bwd:  dz[r, c] = exp(z[r, c] - lse_r) * (g[r, J] - sum_i g[r, i])
//                             + sum_{i : idx[r, i] = c} g[r, i]
//
// f32 math; z and dz are f32 or bf16, out and g f32 (R, J + 1). One block of 256 threads a row.
#include "common.cuh"

template <typename T>
__device__ void lse_gather(const T *z, const uint32_t *idx, float *out, int v, int j) {
  long long r = blockIdx.x;
  const T *row = z + r * v;
  float m = -INFINITY, s = 0.0f;
  for (int c = threadIdx.x; c < v; c += blockDim.x) {
    float x = to_f(row[c]);
    if (x > m) {
      s = s * __expf(m - x) + 1.0f;
      m = x;
    } else {
      s += __expf(x - m);
    }
  }
  float mx = block_reduce(m, true);
  s = (m == -INFINITY) ? 0.0f : s * __expf(m - mx);
  float lse = mx + logf(block_reduce(s, false));
  for (int i = threadIdx.x; i < j; i += blockDim.x) out[r * (j + 1) + i] = to_f(row[idx[r * j + i]]) - lse;
  if (threadIdx.x == 0) out[r * (j + 1) + j] = lse;
}

// og holds [out | g] side by side: rows of 2 (J + 1) floats.
template <typename T>
__device__ void lse_gather_bwd(const T *z, const uint32_t *idx, const float *og, T *dz, int v, int j) {
  long long r = blockIdx.x;
  const T *row = z + r * v;
  T *drow = dz + r * v;
  const float *orow = og + r * 2 * (j + 1);
  const float *grow = orow + (j + 1);
  float lse = orow[j];
  float coef = grow[j];
  for (int i = 0; i < j; i++) coef -= grow[i];
  for (int c = threadIdx.x; c < v; c += blockDim.x) drow[c] = from_f<T>(__expf(to_f(row[c]) - lse) * coef);
  __syncthreads();  // the block's writes above are visible to thread 0 below
  if (threadIdx.x == 0) {
    for (int i = 0; i < j; i++) {
      uint32_t c = idx[r * j + i];
      drow[c] = from_f<T>(to_f(drow[c]) + grow[i]);  // one thread: repeated ids add up
    }
  }
}

#define VOCAB_INSTANTIATE(T, NAME)                                                                   \
  extern "C" __global__ void lse_gather_##NAME(const T *z, const uint32_t *idx, float *out, int v, int j) { \
    lse_gather<T>(z, idx, out, v, j);                                                                \
  }                                                                                                  \
  extern "C" __global__ void lse_gather_bwd_##NAME(const T *z, const uint32_t *idx, const float *og,   \
                                                   T *dz, int v, int j) {                            \
    lse_gather_bwd<T>(z, idx, og, dz, v, j);                                                         \
  }

VOCAB_INSTANTIATE(float, f32)
VOCAB_INSTANTIATE(__nv_bfloat16, bf16)
