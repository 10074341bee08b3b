// Embedding lookup and its gradient for the CUDA build (see src/cuda_kernels/embed.rs).
//
// embed_fwd:  y[i, :] = w[ids[i], :]
// embed_bwd:  dw[ids[i], :] += dy[i, :]     into an f32 (V, C) buffer the caller zeroed
//
// One block of 256 threads per looked-up row. The backward adds with f32 atomics, so a token
// that appears many times is summed in f32 (candle's index_add summed in the model dtype);
// the order of those additions varies between runs.
#include "common.cuh"

template <typename T>
__device__ void embed_fwd(const T *w, const uint32_t *ids, T *y, int c) {
  long long i = blockIdx.x;
  const T *src = w + (long long)ids[i] * c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) y[i * c + j] = src[j];
}

template <typename T>
__device__ void embed_bwd(float *dw, const T *dy, const uint32_t *ids, int c) {
  long long i = blockIdx.x;
  float *dst = dw + (long long)ids[i] * c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) atomicAdd(dst + j, to_f(dy[i * c + j]));
}

#define EMBED_INSTANTIATE(T, NAME)                                                                   \
  extern "C" __global__ void embed_fwd_##NAME(const T *w, const uint32_t *ids, T *y, int c) {        \
    embed_fwd<T>(w, ids, y, c);                                                                      \
  }                                                                                                  \
  extern "C" __global__ void embed_bwd_##NAME(float *dw, const T *dy, const uint32_t *ids, int c) {  \
    embed_bwd<T>(dw, dy, ids, c);                                                                    \
  }

EMBED_INSTANTIATE(float, f32)
EMBED_INSTANTIATE(__nv_bfloat16, bf16)
