// One fused AdamW step over a parameter tensor, in place (see src/cuda_kernels/optim.rs), with
// the gradient first scaled by the global-norm clipping coefficient clip[1] (kernels/clip.cu):
//   g = g * clip[1]
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p = p * decay - lr * (m / bc1) / (sqrt(v / bc2) + eps)       decay = 1 - lr wd, or 1
//   copy = bf16(p)                                                when copy is not null
// The same formula as the composed CPU path in pipeline/train/src/optim.rs, in f32. The
// gradient is f32 or bf16 (as the bf16 compute copies' backward pass leaves it); `copy` is the
// master's bf16 compute copy, rewritten here so that no cast kernel runs before the next step.
#include "common.cuh"

template <typename G>
__device__ void adamw(float *p, const G *g, float *m, float *v, const float *clip, __nv_bfloat16 *copy, long long n,
                      float lr, float b1, float b2, float eps, float decay, float bc1, float bc2) {
  float coef = clip[1];
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float gi = to_f(g[i]) * coef;
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] * decay - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps));
    p[i] = pi;
    if (copy) copy[i] = __float2bfloat16(pi);
  }
}

extern "C" __global__ void adamw_f32(float *p, const float *g, float *m, float *v, const float *clip, __nv_bfloat16 *copy,
                                     long long n, float lr, float b1, float b2, float eps, float decay, float bc1, float bc2) {
  adamw(p, g, m, v, clip, copy, n, lr, b1, b2, eps, decay, bc1, bc2);
}

extern "C" __global__ void adamw_bf16(float *p, const __nv_bfloat16 *g, float *m, float *v, const float *clip,
                                      __nv_bfloat16 *copy, long long n, float lr, float b1, float b2, float eps, float decay,
                                      float bc1, float bc2) {
  adamw(p, g, m, v, clip, copy, n, lr, b1, b2, eps, decay, bc1, bc2);
}
