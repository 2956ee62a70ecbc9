/*
 * fl_math_avx2.h -- exp of a shifted argument (x - max <= 0), the row max and the
 * widening float sum around it, the one-read rows' common case and the streamed softmax
 * output pieces, for AVX2 + FMA (with fl_tile_avx2.h, the AVX2 build's intrinsics).  The
 * same functions, under the same names with avx2 for avx512, as fl_math_avx512.h;
 * included by kernels_all.h only when the translation unit targets AVX2 + FMA and not
 * AVX-512 (kernels_avx2.c).
 *
 * Why: gcc's vectorization of the portable loops (fl_expf_nonpos under `omp simd`) ran
 * the rows at about half of what a hand-written AVX2 loop does on the same core: it
 * keeps one accumulator per reduction (a dependent vmaxps / vaddpd chain), converts the
 * float exponentials to double a lane group at a time through shuffles, and the
 * one-read rows built from it were slower than two passes.  Here:
 *   exp        float: table-driven, exp(v) = 2^(k/8) * e^r with k = round(v * 8/ln2),
 *              r = v - k ln2/8 (Cody-Waite, two FMAs; v - k ln2_hi is exact), |r| <=
 *              ln2/16.  2^(j/8), j = k mod 8, comes from an 8-entry table held in one
 *              register (vpermd takes j straight from the low bits of the shifter's
 *              sum t = v * 8/ln2 + 1.5 * 2^23), 2^(k div 8) is t << 20 added to the
 *              table entry's bits, and e^r - 1 = r (1 + r/2 + c3 r^2 + c4 r^3), a
 *              degree-4 polynomial whose approximation error (8e-11 relative) is
 *              nothing beside the table's rounding (0.54 * 2^-24 relative at worst, j =
 *              2).  The last step is one FMA, s + s * (r q), so the product never
 *              rounds on its own (s * r would go subnormal near FLT_MIN).  9 operations
 *              per 8 floats on the FMA/multiply pipes (the degree-6 form without a
 *              table took 11: they bound the rows at one thread); the others (the
 *              shifter's subtraction, vpermd, the shift and the integer add) go to the
 *              other pipes.  Results below FLT_MIN (v < log(FLT_MIN)) are flushed to
 *              0, as the portable fl_expf_nonpos does: an absolute error under 1.2e-38
 *              in a probability.  A NaN v propagates through the final FMA whatever
 *              the garbage in s (the table entry and the shift only build s).
 *              double: the AVX-512 file's algorithm (n by the 1.5 * 2^52 shifter,
 *              Cody-Waite r, degree-11 Horner, 2^n from the shifter's own bits, the
 *              scaling a multiply so that a NaN keeps its payload).  Max ulp:
 *              tests/test_simd_math.py, MAX_ULP_AVX2.
 *   reductions four independent accumulators (the loops run at the load rate, not at a
 *              dependent chain's latency); the float sums widen each half-vector
 *              straight from memory (vcvtps2pd with a memory operand).
 *   tails      the last partial vector goes through the same vector code: loaded with
 *              vmaskmovps (masked lanes read nothing, so never past the row), written
 *              by fl_store_partial_avx2_f32 (4 + 2 + 1 element stores: vmaskmovps as a
 *              store is microcoded on AMD Zen 2/3).
 *
 * x is clamped nowhere: -inf gives NaN inside the polynomial, replaced by the flush's
 * 0 (x < lo is true for -inf); NaN fails that compare and propagates.
 */
#ifndef FL_MATH_AVX2_H
#define FL_MATH_AVX2_H

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define FL_AVX2_INLINE static inline __attribute__((always_inline))

/* Bits of 2^(j/8) rounded to float, j = 0..7, less j << 20: adding t << 20 (whose bits
 * 20..22 are j and whose higher bits are k div 8) gives the bits of 2^(k/8). */
static const int fl_exp2_eighths_avx2[8] __attribute__((aligned(32))) = {
    0x3f800000, 0x3f7b95c2, 0x3f7837f0, 0x3f75fed7, 0x3f7504f3, 0x3f75672a, 0x3f7744fd, 0x3f7ac0c7};

/* exp(v) for v <= 0 or NaN, 8 floats; 0 below log(FLT_MIN) */
FL_AVX2_INLINE __m256 fl_expf_nonpos_v8(__m256 v)
{
    const __m256 sh = _mm256_set1_ps(12582912.0f);             /* 1.5 * 2^23 */
    const __m256 t = _mm256_fmadd_ps(v, _mm256_set1_ps(11.541560327111707f), sh);
    const __m256 k = _mm256_sub_ps(t, sh);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0x1.62e4p-4f), v);    /* ln2/8 in 15 bits */
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0x1.7f7d1cp-23f), r);
    const __m256i tb = _mm256_castps_si256(t);
    const __m256i table = _mm256_load_si256((const __m256i *)fl_exp2_eighths_avx2);
    const __m256 s = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permutevar8x32_epi32(table, tb),
                                                          _mm256_slli_epi32(tb, 20)));
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(0.04166460037231445f), r,
                               _mm256_set1_ps(0.16668617725372314f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    const __m256 f = _mm256_fmadd_ps(s, _mm256_mul_ps(q, r), s);
    const __m256 flush = _mm256_cmp_ps(v, _mm256_set1_ps(-87.3365447505531f), _CMP_LT_OQ);
    return _mm256_andnot_ps(flush, f);
}

/* exp(v) for v <= 0 or NaN, 4 doubles; 0 below log(DBL_MIN) */
FL_AVX2_INLINE __m256d fl_exp_nonpos_v4(__m256d v)
{
    const __m256d sh = _mm256_set1_pd(6755399441056767.0);     /* 1.5 * 2^52 + 1023 */
    const __m256d t = _mm256_fmadd_pd(v, _mm256_set1_pd(1.4426950408889634074), sh);
    const __m256d n = _mm256_sub_pd(t, sh);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93145751953125e-1), v);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.42860682030941723212e-6), r);
    __m256d p = _mm256_set1_pd(2.5110037605963777e-08);          /* fl_exp_reduced's */
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(2.763263963904103e-07));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(2.755724091857897e-06));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(2.4801485482328494e-05));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.9841269890047113e-04));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.3888888952314775e-03));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(8.333333333319601e-03));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(4.16666666664881e-02));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.666666666666668e-01));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(5.000000000000019e-01));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    const __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52));
    const __m256d flush = _mm256_cmp_pd(v, _mm256_set1_pd(-708.3964185322641), _CMP_LT_OQ);
    return _mm256_andnot_pd(flush, _mm256_mul_pd(p, s));
}

/* Lane masks for the first k < 8 (4) elements, for vmaskmovps/pd loads */
FL_AVX2_INLINE __m256i fl_head_mask_avx2_f32(ptrdiff_t k)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

FL_AVX2_INLINE __m256i fl_head_mask_avx2_f64(ptrdiff_t k)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(k), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* p[0 .. k) = the first k (< 8) lanes of v */
FL_AVX2_INLINE void fl_store_partial_avx2_f32(float *p, __m256 v, ptrdiff_t k)
{
    __m128 h = _mm256_castps256_ps128(v);
    if (k & 4) { _mm_storeu_ps(p, h); h = _mm256_extractf128_ps(v, 1); p += 4; }
    if (k & 2) { _mm_storel_pi((__m64 *)p, h); h = _mm_movehl_ps(h, h); p += 2; }
    if (k & 1) _mm_store_ss(p, h);
}

FL_AVX2_INLINE void fl_store_partial_avx2_f64(double *p, __m256d v, ptrdiff_t k)
{
    __m128d h = _mm256_castpd256_pd128(v);
    if (k & 2) { _mm_storeu_pd(p, h); h = _mm256_extractf128_pd(v, 1); p += 2; }
    if (k & 1) _mm_store_sd(p, h);
}

/* e[j] = exp(x[j] - m), j < len */
FL_AVX2_INLINE void fl_exp_shifted_avx2_f32(const float *x, float m, float *e, ptrdiff_t len)
{
    const __m256 mv = _mm256_set1_ps(m);
    ptrdiff_t j = 0;
    for (; j + 16 <= len; j += 16) {
        _mm256_storeu_ps(e + j, fl_expf_nonpos_v8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
        _mm256_storeu_ps(e + j + 8, fl_expf_nonpos_v8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv)));
    }
    for (; j + 8 <= len; j += 8)
        _mm256_storeu_ps(e + j, fl_expf_nonpos_v8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
    if (j < len) {
        const __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x + j, fl_head_mask_avx2_f32(len - j)), mv);
        fl_store_partial_avx2_f32(e + j, fl_expf_nonpos_v8(v), len - j);
    }
}

FL_AVX2_INLINE void fl_exp_shifted_avx2_f64(const double *x, double m, double *e, ptrdiff_t len)
{
    const __m256d mv = _mm256_set1_pd(m);
    ptrdiff_t j = 0;
    for (; j + 4 <= len; j += 4)
        _mm256_storeu_pd(e + j, fl_exp_nonpos_v4(_mm256_sub_pd(_mm256_loadu_pd(x + j), mv)));
    if (j < len) {
        const __m256d v = _mm256_sub_pd(_mm256_maskload_pd(x + j, fl_head_mask_avx2_f64(len - j)), mv);
        fl_store_partial_avx2_f64(e + j, fl_exp_nonpos_v4(v), len - j);
    }
}

/* e[i] = exp(x[i] - m[i]), i < len: lanes side by side (the columns and tiles layouts,
 * one maximum per lane) */
FL_AVX2_INLINE void fl_exp_sub_lanes_avx2_f32(const float *x, const float *m, float *e, ptrdiff_t len)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= len; i += 8)
        _mm256_storeu_ps(e + i, fl_expf_nonpos_v8(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(m + i))));
    if (i < len) {
        const __m256i k = fl_head_mask_avx2_f32(len - i);
        const __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x + i, k), _mm256_maskload_ps(m + i, k));
        fl_store_partial_avx2_f32(e + i, fl_expf_nonpos_v8(v), len - i);
    }
}

FL_AVX2_INLINE void fl_exp_sub_lanes_avx2_f64(const double *x, const double *m, double *e, ptrdiff_t len)
{
    ptrdiff_t i = 0;
    for (; i + 4 <= len; i += 4)
        _mm256_storeu_pd(e + i, fl_exp_nonpos_v4(_mm256_sub_pd(_mm256_loadu_pd(x + i), _mm256_loadu_pd(m + i))));
    if (i < len) {
        const __m256i k = fl_head_mask_avx2_f64(len - i);
        const __m256d v = _mm256_sub_pd(_mm256_maskload_pd(x + i, k), _mm256_maskload_pd(m + i, k));
        fl_store_partial_avx2_f64(e + i, fl_exp_nonpos_v4(v), len - i);
    }
}

FL_AVX2_INLINE double fl_reduce4_avx2_f64(const __m256d acc[4])
{
    const __m256d a = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* The same as fl_exp_shifted_avx2_f64, and returns sum_j e[j]: for double the adds run
 * on other ports than the exp's FMAs and hide behind them in one loop (as in
 * fl_exp_shifted_sum_avx512_f64). */
FL_AVX2_INLINE double fl_exp_shifted_sum_avx2_f64(const double *x, double m, double *e, ptrdiff_t len)
{
    const __m256d mv = _mm256_set1_pd(m);
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    ptrdiff_t j = 0;
    for (; j + 8 <= len; j += 8) {
        const __m256d p0 = fl_exp_nonpos_v4(_mm256_sub_pd(_mm256_loadu_pd(x + j), mv));
        const __m256d p1 = fl_exp_nonpos_v4(_mm256_sub_pd(_mm256_loadu_pd(x + j + 4), mv));
        _mm256_storeu_pd(e + j, p0);
        _mm256_storeu_pd(e + j + 4, p1);
        acc[0] = _mm256_add_pd(acc[0], p0);
        acc[1] = _mm256_add_pd(acc[1], p1);
    }
    for (; j < len; j += 4) {
        const ptrdiff_t k = len - j;
        const __m256i mask = fl_head_mask_avx2_f64(k);   /* all lanes when k >= 4 */
        const __m256d v = _mm256_sub_pd(_mm256_maskload_pd(x + j, mask), mv);
        const __m256d p = _mm256_and_pd(_mm256_castsi256_pd(mask), fl_exp_nonpos_v4(v));
        if (k >= 4) _mm256_storeu_pd(e + j, p);
        else fl_store_partial_avx2_f64(e + j, p, k);
        acc[2] = _mm256_add_pd(acc[2], p);
    }
    return fl_reduce4_avx2_f64(acc);
}

/* The lanes' maxima of a contiguous row, ignoring NaN like `v > m ? v : m` (vmaxps
 * returns its second operand when either is NaN, and the accumulator is the second),
 * all -inf for an empty row.  Four accumulators; the last partial vector is the row's
 * last 8 elements again (a max may see an element twice), or, in a row shorter than a
 * vector, a masked load whose other lanes are set to -inf. */
FL_AVX2_INLINE __m256 fl_lane_max_avx2_f32(const float *x, ptrdiff_t n)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    ptrdiff_t j = 0;
    for (; j + 32 <= n; j += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + j + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(x + j + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(x + j + 24), m3);
    }
    for (; j + 8 <= n; j += 8)
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
    if (j < n) {
        if (n >= 8) {
            m1 = _mm256_max_ps(_mm256_loadu_ps(x + n - 8), m1);
        } else {
            const __m256i k = fl_head_mask_avx2_f32(n);
            m1 = _mm256_max_ps(_mm256_blendv_ps(ninf, _mm256_maskload_ps(x, k), _mm256_castsi256_ps(k)), m1);
        }
    }
    return _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
}

FL_AVX2_INLINE __m256d fl_lane_max_avx2_f64(const double *x, ptrdiff_t n)
{
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    __m256d m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_pd(_mm256_loadu_pd(x + j), m0);
        m1 = _mm256_max_pd(_mm256_loadu_pd(x + j + 4), m1);
        m2 = _mm256_max_pd(_mm256_loadu_pd(x + j + 8), m2);
        m3 = _mm256_max_pd(_mm256_loadu_pd(x + j + 12), m3);
    }
    for (; j + 4 <= n; j += 4)
        m0 = _mm256_max_pd(_mm256_loadu_pd(x + j), m0);
    if (j < n) {
        if (n >= 4) {
            m1 = _mm256_max_pd(_mm256_loadu_pd(x + n - 4), m1);
        } else {
            const __m256i k = fl_head_mask_avx2_f64(n);
            m1 = _mm256_max_pd(_mm256_blendv_pd(ninf, _mm256_maskload_pd(x, k), _mm256_castsi256_pd(k)), m1);
        }
    }
    return _mm256_max_pd(_mm256_max_pd(m0, m1), _mm256_max_pd(m2, m3));
}

FL_AVX2_INLINE float fl_hmax_avx2_f32(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

FL_AVX2_INLINE double fl_hmax_avx2_f64(__m256d v)
{
    __m128d h = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h)));
}

/* max_j x[j] over a contiguous row (NaN ignored; -inf for an empty row).  The lanes
 * hold no NaN (see fl_lane_max_avx2_f32), so the order of the final maxima is free. */
FL_AVX2_INLINE float fl_max_avx2_f32(const float *x, ptrdiff_t n)
{
    return fl_hmax_avx2_f32(fl_lane_max_avx2_f32(x, n));
}

FL_AVX2_INLINE double fl_max_avx2_f64(const double *x, ptrdiff_t n)
{
    return fl_hmax_avx2_f64(fl_lane_max_avx2_f64(x, n));
}

/* Whether any x[j] > m, j < n (NaN never counts): the lanes' maxima compared with m at
 * once, without reducing them to a scalar first (see fl_max_exceeds_avx512_f32). */
FL_AVX2_INLINE int fl_max_exceeds_avx2_f32(const float *x, ptrdiff_t n, float m)
{
    return _mm256_movemask_ps(_mm256_cmp_ps(fl_lane_max_avx2_f32(x, n), _mm256_set1_ps(m), _CMP_GT_OQ)) != 0;
}

FL_AVX2_INLINE int fl_max_exceeds_avx2_f64(const double *x, ptrdiff_t n, double m)
{
    return _mm256_movemask_pd(_mm256_cmp_pd(fl_lane_max_avx2_f64(x, n), _mm256_set1_pd(m), _CMP_GT_OQ)) != 0;
}

/* acc[0..3] += e[0 .. 16 * groups), each half-vector widened to double straight from
 * memory, four independent chains. */
FL_AVX2_INLINE void fl_add_as_double_avx2_f32(__m256d acc[4], const float *e, ptrdiff_t groups)
{
    for (ptrdiff_t j = 0; j < 16 * groups; j += 16)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_add_pd(acc[k], _mm256_cvtps_pd(_mm_loadu_ps(e + j + 4 * k)));
}

/* sum_j (double)e[j] over contiguous floats, four accumulators */
FL_AVX2_INLINE double fl_sum_as_double_avx2_f32(const float *e, ptrdiff_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    fl_add_as_double_avx2_f32(acc, e, n / 16);
    ptrdiff_t j = n / 16 * 16;
    for (; j + 4 <= n; j += 4)
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm_loadu_ps(e + j)));
    double s = fl_reduce4_avx2_f64(acc);
    for (; j < n; j++) s += (double)e[j];
    return s;
}

/* The common case of a row read once (softmax_impl.h, online_blocks), as
 * fl_online_run_avx512_f32 (see there for the contract and the raise test): whole
 * blocks of 128 floats while none raises the running max m.  Sixteen vectors make a
 * block, as many as AVX2 has registers, so the block is read three times from L1
 * instead of held: the raise test (x - m, a signed-integer max of its bits), the exp
 * (x - m again, stored to g or the chunk), the widening sum of what was stored. */
FL_AVX2_INLINE ptrdiff_t
fl_online_run_avx2_f32(const float *x, float *g, float *pg, float pf, ptrdiff_t nb,
                       float m, double *s, ptrdiff_t prefetch_bytes)
{
    const __m256 mv = _mm256_set1_ps(m), pfv = _mm256_set1_ps(pf);
    float chunk[128];   /* without g: the exponentials on their way to the sum */
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    ptrdiff_t b = 0;
    for (; b < nb; b++) {
        const float *xb = x + 128 * b;
        for (int k = 0; k < 512; k += 64)
            __builtin_prefetch((const char *)xb + prefetch_bytes + k, 0, 3);
        __m256i t0 = _mm256_castps_si256(_mm256_sub_ps(_mm256_loadu_ps(xb), mv));
        __m256i t1 = _mm256_castps_si256(_mm256_sub_ps(_mm256_loadu_ps(xb + 8), mv));
        for (int k = 16; k < 128; k += 16) {
            t0 = _mm256_max_epi32(t0, _mm256_castps_si256(_mm256_sub_ps(_mm256_loadu_ps(xb + k), mv)));
            t1 = _mm256_max_epi32(t1, _mm256_castps_si256(_mm256_sub_ps(_mm256_loadu_ps(xb + k + 8), mv)));
        }
        const __m256i raise = _mm256_cmpgt_epi32(_mm256_max_epi32(t0, t1), _mm256_setzero_si256());
        if (__builtin_expect(!_mm256_testz_si256(raise, raise), 0))
            break;
        if (pg) {
            float *p = pg + 128 * b;
            for (int k = 0; k < 128; k += 8)
                _mm256_storeu_ps(p + k, _mm256_mul_ps(_mm256_loadu_ps(p + k), pfv));
        }
        float *e = g ? g + 128 * b : chunk;
        for (int k = 0; k < 128; k += 8)
            _mm256_storeu_ps(e + k, fl_expf_nonpos_v8(_mm256_sub_ps(_mm256_loadu_ps(xb + k), mv)));
        fl_add_as_double_avx2_f32(acc, e, 8);
    }
    if (b) *s += fl_reduce4_avx2_f64(acc);
    return b;
}

/* One finished piece of a streamed softmax (log_mode 0: y = src * k) or log_softmax
 * (log_mode 1: y = (src - m) - k) output, y 64-byte aligned: whole vectors leave by
 * streaming stores straight from the registers, the rest by plain stores. */
FL_AVX2_INLINE void
fl_stream_scale_avx2_f32(float *y, const float *src, ptrdiff_t len, float m, float k, int log_mode)
{
    const __m256 mv = _mm256_set1_ps(m), kv = _mm256_set1_ps(k);
    ptrdiff_t j = 0;
    if (log_mode)
        for (; j + 8 <= len; j += 8)
            _mm256_stream_ps(y + j, _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(src + j), mv), kv));
    else
        for (; j + 8 <= len; j += 8)
            _mm256_stream_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(src + j), kv));
    for (; j < len; j++)
        y[j] = log_mode ? (src[j] - m) - k : src[j] * k;
}

FL_AVX2_INLINE void
fl_stream_scale_avx2_f64(double *y, const double *src, ptrdiff_t len, double m, double k,
                         int log_mode)
{
    const __m256d mv = _mm256_set1_pd(m), kv = _mm256_set1_pd(k);
    ptrdiff_t j = 0;
    if (log_mode)
        for (; j + 4 <= len; j += 4)
            _mm256_stream_pd(y + j, _mm256_sub_pd(_mm256_sub_pd(_mm256_loadu_pd(src + j), mv), kv));
    else
        for (; j + 4 <= len; j += 4)
            _mm256_stream_pd(y + j, _mm256_mul_pd(_mm256_loadu_pd(src + j), kv));
    for (; j < len; j++)
        y[j] = log_mode ? (src[j] - m) - k : src[j] * k;
}

#endif /* FL_MATH_AVX2_H */
