// Row-broadcast add for the CUDA build (see src/cuda_kernels/add.rs): a bias or a residual.
//
// add_rows:  out[i] = T(a[i] + b[i % period])   a and out of n elements, b of `period`
//            (period = n: a same-shape add; period = C: b broadcast over a's rows)
// col_sum:   db[c] = T(sum over r of dy[r, c])  dy (rows, cols), sums in f32
//
// add_rows moves 16 bytes per load (8 bf16 or 4 f32): the caller guarantees that n, period and
// both inputs' element offsets are multiples of that width. col_sum: one block of 32 x 32
// threads per 32 columns; each thread sums every 32nd row, then the block adds the 32 partial
// sums in a fixed order (deterministic, unlike atomics).
#include "common.cuh"

template <typename T>
__device__ void add_rows(const T *a, const T *b, T *out, long long n, long long period) {
  constexpr int V = 16 / sizeof(T);
  const long long vectors = n / V;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < vectors; i += (long long)gridDim.x * blockDim.x) {
    uint4 av = reinterpret_cast<const uint4 *>(a)[i];
    uint4 bv = *reinterpret_cast<const uint4 *>(b + (i * V) % period);
    uint4 ov;
    const T *ae = reinterpret_cast<const T *>(&av);
    const T *be = reinterpret_cast<const T *>(&bv);
    T *oe = reinterpret_cast<T *>(&ov);
#pragma unroll
    for (int k = 0; k < V; k++) oe[k] = from_f<T>(to_f(ae[k]) + to_f(be[k]));
    reinterpret_cast<uint4 *>(out)[i] = ov;
  }
}

template <typename T>
__device__ void col_sum(const T *dy, T *db, long long rows, long long cols) {
  __shared__ float part[32][33];
  const long long c = (long long)blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < cols) {
#pragma unroll 8
    for (long long r = threadIdx.y; r < rows; r += 32) s += to_f(dy[r * cols + c]);
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = 0.0f;
    for (int k = 0; k < 32; k++) t += part[k][threadIdx.x];
    db[c] = from_f<T>(t);
  }
}

#define ADD_INSTANTIATE(T, NAME)                                                                        \
  extern "C" __global__ void add_rows_##NAME(const T *a, const T *b, T *out, long long n, long long period) { \
    add_rows<T>(a, b, out, n, period);                                                                  \
  }                                                                                                     \
  extern "C" __global__ void col_sum_##NAME(const T *dy, T *db, long long rows, long long cols) {       \
    col_sum<T>(dy, db, rows, cols);                                                                     \
  }

ADD_INSTANTIATE(float, f32)
ADD_INSTANTIATE(__nv_bfloat16, bf16)
