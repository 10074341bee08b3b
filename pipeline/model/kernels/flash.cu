// Tiled causal attention (flash attention 2) for the CUDA build: see src/cuda_kernels/flash.rs.
//
// Layouts: q, o, dq (B, T, H, D) and k, v (B, T, G, D) bf16, contiguous, as the projections
// write them (no head split/merge copies); H = G R query heads, query head h reads key/value
// head h / R. lse and delta are f32 (B, H, T). D is 64 or 128 (template).
//
//   forward:  S = q k^T,  z = S / sqrt(D) with key > query masked,  P = softmax(z),  O = P v
//             lse = log2-domain logsumexp of z (so P = exp2(z log2 e - lse))
//   backward: delta = rowsum(dO * O)
//             dS = P * (dO v^T - delta)   (the gradient of the loss wrt z)
//             dQ = dS k / sqrt(D),  dK = dS^T q / sqrt(D),  dV = P^T dO
//
// Every kernel runs 4 warps; a warp owns 16 rows (queries, or keys in dkdv) and multiplies
// on the tensor cores with mma.sync m16n8k16 (bf16 in, f32 accumulate). Fragment layouts
// (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with gid = lane / 4, tig = lane % 4:
//   A 16x16: a0 (row gid, cols 2tig..+1), a1 (row gid+8, same cols), a2 (row gid, cols
//            8+2tig..+1), a3 (row gid+8, cols 8+2tig..+1)
//   B 16x8:  b0 (rows 2tig..+1, col gid), b1 (rows 8+2tig..+1, col gid)
//   C 16x8:  c0, c1 (row gid, cols 2tig..+1), c2, c3 (row gid+8, same cols)
// so the C fragments of two adjacent 8-column blocks are, packed to bf16, exactly the A
// fragment of the next product: P never leaves registers.
//
// Tiles of 64 queries and 64 keys; causal, so the query tile qt needs key tiles 0..qt and
// only the diagonal tile is masked. dK and dV are written per query head in f32 (B, T, H, D)
// and summed over each group's R heads by the caller: no atomics, deterministic.
#include "common.cuh"

#define TILE 64
#define WARPS 4
#define PAD 8  // bf16 per shared-memory row beyond D: rows 16 bytes apart modulo 128, no bank conflicts

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as bf16, `lo` in the low half (the lower column of a fragment pair).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

// Two adjacent bf16 (4-byte aligned) as one register.
__device__ __forceinline__ uint32_t ld2(const bf16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

// Two bf16 from different rows as one register, `lo` in the low half.
__device__ __forceinline__ uint32_t ld2_rows(const bf16 *lo, const bf16 *hi) {
  uint32_t a = *reinterpret_cast<const uint16_t *>(lo), b = *reinterpret_cast<const uint16_t *>(hi);
  return a | (b << 16);
}

// Row `t` of head `head` of a (B, T, heads, D) tensor.
template <int D>
__device__ __forceinline__ const bf16 *row_ptr(const bf16 *x, int b, int t, int T, int heads, int head) {
  return x + ((long long)(b * T + t) * heads + head) * D;
}

// TILE rows (t0 ..) of one head into shared memory (stride D + PAD), zeros past T; 16-byte loads.
template <int D>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *x, int b, int t0, int T, int heads, int head) {
  constexpr int CHUNKS = D / 8;  // uint4 per row
  for (int i = threadIdx.x; i < TILE * CHUNKS; i += WARPS * 32) {
    int r = i / CHUNKS, c = i % CHUNKS;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (t0 + r < T) v = reinterpret_cast<const uint4 *>(row_ptr<D>(x, b, t0 + r, T, heads, head))[c];
    *reinterpret_cast<uint4 *>(dst + r * (D + PAD) + c * 8) = v;
  }
}

// The A fragments (16 rows x D) of rows r0 and r0 + 8 of one head, straight from global memory.
template <int D>
__device__ __forceinline__ void load_a(uint32_t a[D / 16][4], const bf16 *x, int b, int r0, int T, int heads, int head) {
  int tig = (threadIdx.x & 31) & 3;
  const bf16 *p0 = r0 < T ? row_ptr<D>(x, b, r0, T, heads, head) : nullptr;
  const bf16 *p1 = r0 + 8 < T ? row_ptr<D>(x, b, r0 + 8, T, heads, head) : nullptr;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    int c = kk * 16 + 2 * tig;
    a[kk][0] = p0 ? ld2(p0 + c) : 0u;
    a[kk][1] = p1 ? ld2(p1 + c) : 0u;
    a[kk][2] = p0 ? ld2(p0 + c + 8) : 0u;
    a[kk][3] = p1 ? ld2(p1 + c + 8) : 0u;
  }
}

// The A fragment (16 rows from `row0`, columns kk*16 ..) of a tile in shared memory.
template <int D>
__device__ __forceinline__ void smem_a(uint32_t a[4], const bf16 *tile, int row0, int kk) {
  int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const bf16 *p = tile + (row0 + gid) * (D + PAD) + kk * 16 + 2 * tig;
  a[0] = ld2(p);
  a[1] = ld2(p + 8 * (D + PAD));
  a[2] = ld2(p + 8);
  a[3] = ld2(p + 8 * (D + PAD) + 8);
}

// acc (16 x TILE) += A (16 x D, fragments) * tile^T, the tile's rows as the product's columns.
template <int D>
__device__ __forceinline__ void mul_rows_t(float acc[TILE / 8][4], const uint32_t a[D / 16][4], const bf16 *tile) {
  int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
    for (int j = 0; j < TILE / 8; j++) {
      const bf16 *p = tile + (j * 8 + gid) * (D + PAD) + kk * 16 + 2 * tig;
      mma16816(acc[j], a[kk], ld2(p), ld2(p + 8));
    }
}

// acc (16 x D) += P (16 x TILE, C fragments packed to bf16) * tile (TILE x D).
template <int D>
__device__ __forceinline__ void mul_tile(float acc[D / 8][4], const float p[TILE / 8][4], const bf16 *tile) {
  int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  constexpr int S = D + PAD;
#pragma unroll
  for (int kk = 0; kk < TILE / 16; kk++) {
    uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                     pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    const bf16 *base = tile + (kk * 16 + 2 * tig) * S + gid;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      const bf16 *q = base + j * 8;
      mma16816(acc[j], a, ld2_rows(q, q + S), ld2_rows(q + 8 * S, q + 9 * S));
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float acc[N][4]) {
#pragma unroll
  for (int j = 0; j < N; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
}

// Column (within the tile) of element e of C fragment j; elements 2 and 3 are in row gid + 8.
__device__ __forceinline__ int frag_col(int j, int e) { return j * 8 + 2 * ((threadIdx.x & 31) & 3) + (e & 1); }

template <int D>
__device__ void flash_fwd(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *o, float *lse, int T, int H, int G,
                          float scale_log2) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *ks = reinterpret_cast<bf16 *>(smem), *vs = ks + TILE * (D + PAD);
  const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = h / (H / G);
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int r0 = qt * TILE + (threadIdx.x >> 5) * 16 + gid;  // rows r0 and r0 + 8
  uint32_t qa[D / 16][4];
  load_a<D>(qa, q, b, r0, T, H, h);
  float acc[D / 8][4];
  zero<D / 8>(acc);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  for (int kt = 0; kt <= qt; kt++) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<D>(ks, k, b, kt * TILE, T, G, g);
    load_tile<D>(vs, v, b, kt * TILE, T, G, g);
    __syncthreads();
    float s[TILE / 8][4];
    zero<TILE / 8>(s);
    mul_rows_t<D>(s, qa, ks);
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int j = 0; j < TILE / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int key = kt * TILE + frag_col(j, e), row = r0 + (e >> 1) * 8;
        float z = (key > row || key >= T) ? -INFINITY : s[j][e] * scale_log2;
        s[j][e] = z;
        mx[e >> 1] = fmaxf(mx[e >> 1], z);
      }
    float alpha[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffff, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffff, mx[i], 2));
      alpha[i] = exp2f(m[i] - mx[i]);  // 0 on the first tile (m = -inf)
      m[i] = mx[i];
      l[i] *= alpha[i];
    }
#pragma unroll
    for (int j = 0; j < TILE / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float p = exp2f(s[j][e] - m[e >> 1]);
        s[j][e] = p;
        l[e >> 1] += p;
      }
#pragma unroll
    for (int j = 0; j < D / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[j][e] *= alpha[e >> 1];
    mul_tile<D>(acc, s, vs);
  }
#pragma unroll
  for (int i = 0; i < 2; i++) {
    l[i] += __shfl_xor_sync(0xffffffff, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffff, l[i], 2);
    int row = r0 + i * 8;
    if (row < T) {
      float inv = 1.0f / l[i];
      bf16 *orow = o + ((long long)(b * T + row) * H + h) * D;
#pragma unroll
      for (int j = 0; j < D / 8; j++)
        *reinterpret_cast<uint32_t *>(orow + j * 8 + 2 * tig) = pack_bf16(acc[j][2 * i] * inv, acc[j][2 * i + 1] * inv);
      if (tig == 0) lse[((long long)b * H + h) * T + row] = m[i] + log2f(l[i]);
    }
  }
}

// delta[b, h, t] = sum_d dO * O, one warp per (b, t, h) row of D values.
template <int D>
__device__ void flash_delta(const bf16 *o, const bf16 *d_o, float *delta, int T, int H, long long rows) {
  long long r = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (r >= rows) return;
  int lane = threadIdx.x & 31;
  const bf16 *a = o + r * D, *c = d_o + r * D;
  float sum = 0.0f;
  for (int i = lane; i < D; i += 32) sum += __bfloat162float(a[i]) * __bfloat162float(c[i]);
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, off);
  long long bt = r / H;
  int h = r % H, t = bt % T, b = bt / T;
  if (lane == 0) delta[((long long)b * H + h) * T + t] = sum;
}

// dQ for 64 queries of one head: loops over key tiles 0..qt.
template <int D>
__device__ void flash_dq(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *d_o, const float *lse, const float *delta,
                         bf16 *dq, int T, int H, int G, float scale_log2, float scale) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *ks = reinterpret_cast<bf16 *>(smem), *vs = ks + TILE * (D + PAD);
  const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = h / (H / G);
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int r0 = qt * TILE + (threadIdx.x >> 5) * 16 + gid;
  uint32_t qa[D / 16][4], da[D / 16][4];
  load_a<D>(qa, q, b, r0, T, H, h);
  load_a<D>(da, d_o, b, r0, T, H, h);
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int i = 0; i < 2; i++) {
    int row = r0 + i * 8;
    row_lse[i] = row < T ? lse[((long long)b * H + h) * T + row] : INFINITY;
    row_delta[i] = row < T ? delta[((long long)b * H + h) * T + row] : 0.0f;
  }
  float acc[D / 8][4];
  zero<D / 8>(acc);
  for (int kt = 0; kt <= qt; kt++) {
    __syncthreads();
    load_tile<D>(ks, k, b, kt * TILE, T, G, g);
    load_tile<D>(vs, v, b, kt * TILE, T, G, g);
    __syncthreads();
    float s[TILE / 8][4], dp[TILE / 8][4];
    zero<TILE / 8>(s);
    zero<TILE / 8>(dp);
    mul_rows_t<D>(s, qa, ks);
    mul_rows_t<D>(dp, da, vs);
#pragma unroll
    for (int j = 0; j < TILE / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int key = kt * TILE + frag_col(j, e), row = r0 + (e >> 1) * 8, i = e >> 1;
        float p = (key > row || key >= T) ? 0.0f : exp2f(s[j][e] * scale_log2 - row_lse[i]);
        s[j][e] = p * (dp[j][e] - row_delta[i]);  // dS
      }
    // dQ += dS k: B fragments are k's rows (keys) by its columns (D), read across rows.
    mul_tile<D>(acc, s, ks);
  }
#pragma unroll
  for (int i = 0; i < 2; i++) {
    int row = r0 + i * 8;
    if (row >= T) continue;
    bf16 *out = dq + ((long long)(b * T + row) * H + h) * D;
#pragma unroll
    for (int j = 0; j < D / 8; j++)
      *reinterpret_cast<uint32_t *>(out + j * 8 + 2 * tig) = pack_bf16(acc[j][2 * i] * scale, acc[j][2 * i + 1] * scale);
  }
}

// dK and dV of 64 keys from one query head h (f32, (B, T, H, D)): loops over query tiles kt ..
template <int D>
__device__ void flash_dkdv(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *d_o, const float *lse, const float *delta,
                           float *dk, float *dv, int T, int H, int G, float scale_log2, float scale) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *ks = reinterpret_cast<bf16 *>(smem), *vs = ks + TILE * (D + PAD), *qs = vs + TILE * (D + PAD),
       *ds = qs + TILE * (D + PAD);
  float *lse_s = reinterpret_cast<float *>(ds + TILE * (D + PAD)), *delta_s = lse_s + TILE;
  const int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = h / (H / G);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int k0 = kt * TILE + warp * 16 + gid;  // key rows k0 and k0 + 8
  load_tile<D>(ks, k, b, kt * TILE, T, G, g);
  load_tile<D>(vs, v, b, kt * TILE, T, G, g);
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  zero<D / 8>(dk_acc);
  zero<D / 8>(dv_acc);
  const int tiles = (T + TILE - 1) / TILE;
  for (int qt = kt; qt < tiles; qt++) {
    __syncthreads();
    load_tile<D>(qs, q, b, qt * TILE, T, H, h);
    load_tile<D>(ds, d_o, b, qt * TILE, T, H, h);
    for (int i = threadIdx.x; i < TILE; i += WARPS * 32) {
      int row = qt * TILE + i;
      lse_s[i] = row < T ? lse[((long long)b * H + h) * T + row] : INFINITY;
      delta_s[i] = row < T ? delta[((long long)b * H + h) * T + row] : 0.0f;
    }
    __syncthreads();
    // S^T (16 keys x 64 queries) and dP^T = v dO^T, each from fragments of this warp's keys.
    float st[TILE / 8][4], dpt[TILE / 8][4];
    zero<TILE / 8>(st);
    zero<TILE / 8>(dpt);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t ka[4], va[4];
      smem_a<D>(ka, ks, warp * 16, kk);
      smem_a<D>(va, vs, warp * 16, kk);
#pragma unroll
      for (int j = 0; j < TILE / 8; j++) {
        const bf16 *pq = qs + (j * 8 + gid) * (D + PAD) + kk * 16 + 2 * tig;
        const bf16 *pd = ds + (j * 8 + gid) * (D + PAD) + kk * 16 + 2 * tig;
        mma16816(st[j], ka, ld2(pq), ld2(pq + 8));
        mma16816(dpt[j], va, ld2(pd), ld2(pd + 8));
      }
    }
#pragma unroll
    for (int j = 0; j < TILE / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int c = frag_col(j, e), query = qt * TILE + c, key = k0 + (e >> 1) * 8;
        float p = (key > query || key >= T) ? 0.0f : exp2f(st[j][e] * scale_log2 - lse_s[c]);
        st[j][e] = p;
        dpt[j][e] = p * (dpt[j][e] - delta_s[c]);  // dS^T
      }
    mul_tile<D>(dv_acc, st, ds);   // dV += P^T dO
    mul_tile<D>(dk_acc, dpt, qs);  // dK += dS^T q
  }
#pragma unroll
  for (int i = 0; i < 2; i++) {
    int row = k0 + i * 8;
    if (row >= T) continue;
    long long off = ((long long)(b * T + row) * H + h) * D;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      int c = j * 8 + 2 * tig;
      *reinterpret_cast<float2 *>(dk + off + c) = make_float2(dk_acc[j][2 * i] * scale, dk_acc[j][2 * i + 1] * scale);
      *reinterpret_cast<float2 *>(dv + off + c) = make_float2(dv_acc[j][2 * i], dv_acc[j][2 * i + 1]);
    }
  }
}

#define FLASH(D)                                                                                                         \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) flash_fwd_##D(const bf16 *q, const bf16 *k, const bf16 *v,   \
                                                                         bf16 *o, float *lse, int T, int H, int G,       \
                                                                         float scale_log2) {                             \
    flash_fwd<D>(q, k, v, o, lse, T, H, G, scale_log2);                                                                  \
  }                                                                                                                      \
  extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                               \
      flash_delta_##D(const bf16 *o, const bf16 *d_o, float *delta, int T, int H, long long rows) {                      \
    flash_delta<D>(o, d_o, delta, T, H, rows);                                                                           \
  }                                                                                                                      \
  extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                               \
      flash_dq_##D(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *d_o, const float *lse, const float *delta,   \
                   bf16 *dq, int T, int H, int G, float scale_log2, float scale) {                                       \
    flash_dq<D>(q, k, v, d_o, lse, delta, dq, T, H, G, scale_log2, scale);                                               \
  }                                                                                                                      \
  extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                               \
      flash_dkdv_##D(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *d_o, const float *lse,                     \
                     const float *delta, float *dk, float *dv, int T, int H, int G, float scale_log2, float scale) {     \
    flash_dkdv<D>(q, k, v, d_o, lse, delta, dk, dv, T, H, G, scale_log2, scale);                                         \
  }

FLASH(64)
FLASH(128)
