/*
 * fl_tile_avx512.h -- the transposes of the tiles path (short packed rows, n <= 16
 * classes) with AVX-512 permutes.  Included by kernels_all.h only when the translation
 * unit targets AVX-512 (kernels_avx512.c); elsewhere the tiles path copies element by
 * element (tile_in / tile_out in softmax_impl.h).
 *
 * Why: with n = 10 the element-by-element copies in and out of the tile took more
 * than half of softmax's time at (65536, 10) (perf annotate), one load and one store
 * per element.  Here a group of 16 rows (8 for double) is loaded with one masked load
 * per row, transposed in registers, and stored with one store per class: far fewer
 * memory operations than the element-by-element copy.
 * For n < FL_TILE_VEC_MIN_N the scalar copy is as fast (n = 3: equal) and is kept.
 *
 * The transpose swaps one bit of the row index with the same bit of the column index
 * per stage (log2(width) stages): for rows r and r' = r | b (b = 1 << k),
 *   new[r][c]  = c & b ? old[r'][c ^ b] : old[r][c]
 *   new[r'][c] = c & b ? old[r'][c]     : old[r][c ^ b]
 * i.e. one two-source permute (vpermt2ps/pd) per output row and stage.
 */
#ifndef FL_TILE_AVX512_H
#define FL_TILE_AVX512_H

#include <immintrin.h>
#include <stddef.h>

#define FL_TILE_VEC_MIN_N 4

/* Permute indices of the stages: [2k] gives new[r], [2k + 1] gives new[r | (1 << k)]
 * (an index >= width selects from the second source, old[r | (1 << k)]). */
static const int fl_tile_idx16[8][16] __attribute__((aligned(64))) = {
    {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
    {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31},
    {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
    {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
    {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
    {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
    {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
    {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
};
static const long long fl_tile_idx8[6][8] __attribute__((aligned(64))) = {
    {0, 8, 2, 10, 4, 12, 6, 14},
    {1, 9, 3, 11, 5, 13, 7, 15},
    {0, 1, 8, 9, 4, 5, 12, 13},
    {2, 3, 10, 11, 6, 7, 14, 15},
    {0, 1, 2, 3, 8, 9, 10, 11},
    {4, 5, 6, 7, 12, 13, 14, 15},
};

/* one stage on the registers r and q = r | (1 << k); written out in full below, as
 * gcc does not unroll the stage loops into register code by itself (measured: the
 * looped form kept v[] in memory and was slower than the scalar copy) */
#define FL_TPAIR_PS(v, I, k, r, q) do {                                      \
        const __m512 a_ = v[r], c_ = v[q];                                   \
        v[r] = _mm512_permutex2var_ps(a_, I[2 * (k)], c_);                   \
        v[q] = _mm512_permutex2var_ps(a_, I[2 * (k) + 1], c_);               \
    } while (0)
#define FL_TPAIR_PD(v, I, k, r, q) do {                                      \
        const __m512d a_ = v[r], c_ = v[q];                                  \
        v[r] = _mm512_permutex2var_pd(a_, I[2 * (k)], c_);                   \
        v[q] = _mm512_permutex2var_pd(a_, I[2 * (k) + 1], c_);               \
    } while (0)

/* 16 x 16 floats in 16 registers, transposed in place */
static inline __attribute__((always_inline)) void fl_transpose16_ps(__m512 v[16], const __m512i I[8])
{
    FL_TPAIR_PS(v, I, 0, 0, 1); FL_TPAIR_PS(v, I, 0, 2, 3); FL_TPAIR_PS(v, I, 0, 4, 5); FL_TPAIR_PS(v, I, 0, 6, 7);
    FL_TPAIR_PS(v, I, 0, 8, 9); FL_TPAIR_PS(v, I, 0, 10, 11); FL_TPAIR_PS(v, I, 0, 12, 13); FL_TPAIR_PS(v, I, 0, 14, 15);
    FL_TPAIR_PS(v, I, 1, 0, 2); FL_TPAIR_PS(v, I, 1, 1, 3); FL_TPAIR_PS(v, I, 1, 4, 6); FL_TPAIR_PS(v, I, 1, 5, 7);
    FL_TPAIR_PS(v, I, 1, 8, 10); FL_TPAIR_PS(v, I, 1, 9, 11); FL_TPAIR_PS(v, I, 1, 12, 14); FL_TPAIR_PS(v, I, 1, 13, 15);
    FL_TPAIR_PS(v, I, 2, 0, 4); FL_TPAIR_PS(v, I, 2, 1, 5); FL_TPAIR_PS(v, I, 2, 2, 6); FL_TPAIR_PS(v, I, 2, 3, 7);
    FL_TPAIR_PS(v, I, 2, 8, 12); FL_TPAIR_PS(v, I, 2, 9, 13); FL_TPAIR_PS(v, I, 2, 10, 14); FL_TPAIR_PS(v, I, 2, 11, 15);
    FL_TPAIR_PS(v, I, 3, 0, 8); FL_TPAIR_PS(v, I, 3, 1, 9); FL_TPAIR_PS(v, I, 3, 2, 10); FL_TPAIR_PS(v, I, 3, 3, 11);
    FL_TPAIR_PS(v, I, 3, 4, 12); FL_TPAIR_PS(v, I, 3, 5, 13); FL_TPAIR_PS(v, I, 3, 6, 14); FL_TPAIR_PS(v, I, 3, 7, 15);
}

/* 8 x 8 doubles in 8 registers, transposed in place */
static inline __attribute__((always_inline)) void fl_transpose8_pd(__m512d v[8], const __m512i I[6])
{
    FL_TPAIR_PD(v, I, 0, 0, 1); FL_TPAIR_PD(v, I, 0, 2, 3); FL_TPAIR_PD(v, I, 0, 4, 5); FL_TPAIR_PD(v, I, 0, 6, 7);
    FL_TPAIR_PD(v, I, 1, 0, 2); FL_TPAIR_PD(v, I, 1, 1, 3); FL_TPAIR_PD(v, I, 1, 4, 6); FL_TPAIR_PD(v, I, 1, 5, 7);
    FL_TPAIR_PD(v, I, 2, 0, 4); FL_TPAIR_PD(v, I, 2, 1, 5); FL_TPAIR_PD(v, I, 2, 2, 6); FL_TPAIR_PD(v, I, 2, 3, 7);
}

/* tile[j * ts + r] = x[r * n + j] for the rows r < len rounded down to 16, j < n
 * (FL_TILE_VEC_MIN_N <= n <= 16); returns the number of rows done. */
static inline ptrdiff_t fl_tile_in_avx512_f32(const float *x, float *tile, ptrdiff_t ts,
                                              ptrdiff_t n, ptrdiff_t len)
{
    __m512i I[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) I[k] = _mm512_load_si512((const void *)fl_tile_idx16[k]);
    const __mmask16 m = (__mmask16)((1u << n) - 1u);
    ptrdiff_t r = 0;
    for (; r + 16 <= len; r += 16) {
        __m512 v[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) v[i] = _mm512_maskz_loadu_ps(m, x + (r + i) * n);
        fl_transpose16_ps(v, I);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            if (j < n) _mm512_storeu_ps(tile + j * ts + r, v[j]);
    }
    return r;
}

/* x[r * n + j] = tile[j * ts + r], the inverse of fl_tile_in_avx512_f32 */
static inline ptrdiff_t fl_tile_out_avx512_f32(float *x, const float *tile, ptrdiff_t ts,
                                               ptrdiff_t n, ptrdiff_t len)
{
    __m512i I[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) I[k] = _mm512_load_si512((const void *)fl_tile_idx16[k]);
    const __mmask16 m = (__mmask16)((1u << n) - 1u);
    ptrdiff_t r = 0;
    for (; r + 16 <= len; r += 16) {
        __m512 v[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            v[j] = j < n ? _mm512_loadu_ps(tile + j * ts + r) : _mm512_setzero_ps();
        fl_transpose16_ps(v, I);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(x + (r + i) * n, m, v[i]);
    }
    return r;
}

/* double: groups of 8 rows, the classes in blocks of 8 (one 8 x 8 transpose each) */
static inline ptrdiff_t fl_tile_in_avx512_f64(const double *x, double *tile, ptrdiff_t ts,
                                              ptrdiff_t n, ptrdiff_t len)
{
    __m512i I[6];
#pragma GCC unroll 6
    for (int k = 0; k < 6; k++) I[k] = _mm512_load_si512((const void *)fl_tile_idx8[k]);
    ptrdiff_t r = 0;
    for (; r + 8 <= len; r += 8)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 8) {
            const ptrdiff_t w = n - j0 < 8 ? n - j0 : 8;
            const __mmask8 m = (__mmask8)((1u << w) - 1u);
            __m512d v[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) v[i] = _mm512_maskz_loadu_pd(m, x + (r + i) * n + j0);
            fl_transpose8_pd(v, I);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                if (j < w) _mm512_storeu_pd(tile + (j0 + j) * ts + r, v[j]);
        }
    return r;
}

static inline ptrdiff_t fl_tile_out_avx512_f64(double *x, const double *tile, ptrdiff_t ts,
                                               ptrdiff_t n, ptrdiff_t len)
{
    __m512i I[6];
#pragma GCC unroll 6
    for (int k = 0; k < 6; k++) I[k] = _mm512_load_si512((const void *)fl_tile_idx8[k]);
    ptrdiff_t r = 0;
    for (; r + 8 <= len; r += 8)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 8) {
            const ptrdiff_t w = n - j0 < 8 ? n - j0 : 8;
            const __mmask8 m = (__mmask8)((1u << w) - 1u);
            __m512d v[8];
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                v[j] = j < w ? _mm512_loadu_pd(tile + (j0 + j) * ts + r) : _mm512_setzero_pd();
            fl_transpose8_pd(v, I);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) _mm512_mask_storeu_pd(x + (r + i) * n + j0, m, v[i]);
        }
    return r;
}

#endif /* FL_TILE_AVX512_H */
