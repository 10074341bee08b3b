// SwiGLU for the CUDA build (see src/cuda_kernels/mlp.rs): the Llama MLP's `silu(g) * u`.
//
// swiglu_fwd:  h = T(silu(g) u),  silu(g) = g s,  s = 1 / (1 + exp(-g))
// swiglu_bwd:  dg = dh u s (1 + g (1 - s)),  du = dh g s;  written side by side as [dg | du]
//
// f32 math on f32 or bf16 tensors of n elements; grid-stride loops.
#include "common.cuh"

template <typename T>
__device__ void swiglu_fwd(const T *g, const T *u, T *h, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float gv = to_f(g[i]);
    h[i] = from_f<T>(gv / (1.0f + __expf(-gv)) * to_f(u[i]));
  }
}

template <typename T>
__device__ void swiglu_bwd(const T *g, const T *u, const T *dh, T *dgu, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float gv = to_f(g[i]), uv = to_f(u[i]), d = to_f(dh[i]);
    float s = 1.0f / (1.0f + __expf(-gv));
    dgu[i] = from_f<T>(d * uv * s * (1.0f + gv * (1.0f - s)));
    dgu[n + i] = from_f<T>(d * gv * s);
  }
}

#define MLP_INSTANTIATE(T, NAME)                                                                     \
  extern "C" __global__ void swiglu_fwd_##NAME(const T *g, const T *u, T *h, long long n) {          \
    swiglu_fwd<T>(g, u, h, n);                                                                       \
  }                                                                                                  \
  extern "C" __global__ void swiglu_bwd_##NAME(const T *g, const T *u, const T *dh, T *dgu, long long n) { \
    swiglu_bwd<T>(g, u, dh, dgu, n);                                                                 \
  }

MLP_INSTANTIATE(float, f32)
MLP_INSTANTIATE(__nv_bfloat16, bf16)
