/*
 * fl_tile_avx2.h -- the transposes of the tiles path (short packed rows, n <= 16
 * classes) with AVX2 shuffles: the AVX2 build's twin of fl_tile_avx512.h (see there for
 * why the tiles path transposes in registers).  Included by kernels_all.h only when the
 * translation unit targets AVX2 + FMA and not AVX-512 (kernels_avx2.c).
 *
 * A group of 8 rows (4 for double) is cut into blocks of 8 (4) classes; each block is
 * loaded with one load per row (vmaskmovps for a block narrower than a vector, so
 * nothing past the row is read), transposed in registers -- the classic 8 x 8 float
 * transpose (unpack, shuffle, then vperm2f128 across the halves: 24 shuffles) or 4 x 4
 * double (unpack, vperm2f128: 8) -- and stored with one store per class.  The way back
 * stores a narrower block's rows with fl_store_partial_avx2_* (vmaskmovps as a store is
 * microcoded on AMD Zen 2/3).
 */
#ifndef FL_TILE_AVX2_H
#define FL_TILE_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include "fl_math_avx2.h"

#define FL_TILE_VEC_MIN_N 4

/* 8 x 8 floats in 8 registers, transposed in place */
static inline __attribute__((always_inline)) void fl_transpose8_ps(__m256 v[8])
{
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(v[k], v[k + 1]);       /* a0 b0 a1 b1 | a4 b4 a5 b5 */
        t[k + 1] = _mm256_unpackhi_ps(v[k], v[k + 1]);   /* a2 b2 a3 b3 | a6 b6 a7 b7 */
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));       /* column 0 | 4 */
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));   /* 1 | 5 */
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0)); /* 2 | 6 */
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2)); /* 3 | 7 */
    }
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        v[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

/* 4 x 4 doubles in 4 registers, transposed in place */
static inline __attribute__((always_inline)) void fl_transpose4_pd(__m256d v[4])
{
    const __m256d t0 = _mm256_unpacklo_pd(v[0], v[1]);   /* a0 b0 | a2 b2 */
    const __m256d t1 = _mm256_unpackhi_pd(v[0], v[1]);   /* a1 b1 | a3 b3 */
    const __m256d t2 = _mm256_unpacklo_pd(v[2], v[3]);
    const __m256d t3 = _mm256_unpackhi_pd(v[2], v[3]);
    v[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    v[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    v[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    v[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* tile[j * ts + r] = x[r * n + j] for the rows r < len rounded down to 8, j < n
 * (FL_TILE_VEC_MIN_N <= n <= 16); returns the number of rows done. */
static inline ptrdiff_t fl_tile_in_avx2_f32(const float *x, float *tile, ptrdiff_t ts,
                                            ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
    for (; r + 8 <= len; r += 8)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 8) {
            const ptrdiff_t w = n - j0 < 8 ? n - j0 : 8;
            const __m256i k = fl_head_mask_avx2_f32(w);
            __m256 v[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                v[i] = w == 8 ? _mm256_loadu_ps(x + (r + i) * n + j0)
                              : _mm256_maskload_ps(x + (r + i) * n + j0, k);
            fl_transpose8_ps(v);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                if (j < w) _mm256_storeu_ps(tile + (j0 + j) * ts + r, v[j]);
        }
    return r;
}

/* x[r * n + j] = tile[j * ts + r], the inverse of fl_tile_in_avx2_f32 */
static inline ptrdiff_t fl_tile_out_avx2_f32(float *x, const float *tile, ptrdiff_t ts,
                                             ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
    for (; r + 8 <= len; r += 8)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 8) {
            const ptrdiff_t w = n - j0 < 8 ? n - j0 : 8;
            __m256 v[8];
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                v[j] = j < w ? _mm256_loadu_ps(tile + (j0 + j) * ts + r) : _mm256_setzero_ps();
            fl_transpose8_ps(v);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                if (w == 8) _mm256_storeu_ps(x + (r + i) * n + j0, v[i]);
                else fl_store_partial_avx2_f32(x + (r + i) * n + j0, v[i], w);
            }
        }
    return r;
}

/* double: groups of 4 rows, the classes in blocks of 4 (one 4 x 4 transpose each) */
static inline ptrdiff_t fl_tile_in_avx2_f64(const double *x, double *tile, ptrdiff_t ts,
                                            ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= len; r += 4)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 4) {
            const ptrdiff_t w = n - j0 < 4 ? n - j0 : 4;
            const __m256i k = fl_head_mask_avx2_f64(w);
            __m256d v[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                v[i] = w == 4 ? _mm256_loadu_pd(x + (r + i) * n + j0)
                              : _mm256_maskload_pd(x + (r + i) * n + j0, k);
            fl_transpose4_pd(v);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                if (j < w) _mm256_storeu_pd(tile + (j0 + j) * ts + r, v[j]);
        }
    return r;
}

static inline ptrdiff_t fl_tile_out_avx2_f64(double *x, const double *tile, ptrdiff_t ts,
                                             ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= len; r += 4)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 4) {
            const ptrdiff_t w = n - j0 < 4 ? n - j0 : 4;
            __m256d v[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                v[j] = j < w ? _mm256_loadu_pd(tile + (j0 + j) * ts + r) : _mm256_setzero_pd();
            fl_transpose4_pd(v);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                if (w == 4) _mm256_storeu_pd(x + (r + i) * n + j0, v[i]);
                else fl_store_partial_avx2_f64(x + (r + i) * n + j0, v[i], w);
            }
        }
    return r;
}

#endif /* FL_TILE_AVX2_H */
