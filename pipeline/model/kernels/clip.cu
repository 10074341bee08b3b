// Global gradient norm over many f32 (or many bf16) tensors without leaving the device (see
// src/cuda_kernels/optim.rs).
//
// grad_sq_partials_{f32,bf16}: table = [ptr_0 .. ptr_{n-1} | len_0 .. len_{n-1} | (tensor, start) per chunk]
//                   (u64); block b sums g^2 over chunk b (up to CHUNK elements of one tensor)
//                   into partials[b]: one launch for every parameter's gradient.
// clip_coef:        one block adds the partials in a fixed order (f64) and writes
//                   out[0] = ||g||, out[1] = max_norm / (||g|| + 1e-6) if max_norm > 0 and
//                   ||g|| > max_norm, else 1; the AdamW kernel scales g by out[1].
#include "common.cuh"

template <typename T>
__device__ void grad_sq_partials(const unsigned long long *table, int n, long long chunk, double *partials) {
  long long b = blockIdx.x;
  const unsigned long long *lens = table + n;
  const unsigned long long *chunks = table + 2 * n;
  unsigned long long tensor = chunks[2 * b];
  long long start = (long long)chunks[2 * b + 1];
  long long end = min(start + chunk, (long long)lens[tensor]);
  const T *g = (const T *)table[tensor];
  float acc = 0.0f;
  for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
    float x = to_f(g[i]);
    acc += x * x;
  }
  acc = block_reduce(acc, false);
  if (threadIdx.x == 0) partials[b] = (double)acc;
}

extern "C" __global__ void grad_sq_partials_f32(const unsigned long long *table, int n, long long chunk, double *partials) {
  grad_sq_partials<float>(table, n, chunk, partials);
}

extern "C" __global__ void grad_sq_partials_bf16(const unsigned long long *table, int n, long long chunk, double *partials) {
  grad_sq_partials<__nv_bfloat16>(table, n, chunk, partials);
}

extern "C" __global__ void clip_coef(const double *partials, long long count, float max_norm, float *out) {
  __shared__ double shared[1024];
  double acc = 0.0;
  for (long long i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  shared[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double norm = sqrt(shared[0]);
    out[0] = (float)norm;
    out[1] = (max_norm > 0.0f && norm > (double)max_norm) ? (float)((double)max_norm / (norm + 1e-6)) : 1.0f;
  }
}
