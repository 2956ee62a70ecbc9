/*
 * fl_math_avx512.h -- exp of a shifted argument (x - max <= 0), the row max and the
 * widening float sum around it, and the streamed softmax output pieces, for AVX-512
 * (with fl_tile_avx512.h, the kernels' AVX-512 intrinsics; the per-type twins differ
 * only in their intrinsics).  Included by kernels_all.h only when the translation unit
 * targets AVX-512 (kernels_avx512.c); every other build uses the portable
 * fl_expf_nonpos / fl_exp_nonpos of fl_math.h and the `omp simd` loops of
 * softmax_impl.h.
 *
 * Why: the softmax/cross-entropy rows are bound by the exp's vector-operation count.
 * The same algorithm as fl_math.h (n = round(x / ln2), Cody-Waite r, the same
 * polynomials), but
 *   n           one fma with the shifter 1.5 * 2^23 (2^52 for double) and one
 *               subtraction, which run on either FMA port.  (vrndscale, which rounds in
 *               one instruction, is two port-0 uops on Intel's AVX-512 cores.)
 *               |x / ln2| <= 1077, so the integer lands exactly.
 *   vscalef     p * 2^n with IEEE underflow: results below FLT_MIN come out as
 *               correctly rounded subnormals (no flush, no compare/blend), and
 *               n = -inf or huge negative gives 0;
 * and the polynomial in plain Horner form (FMA is always there): 13 vector operations
 * per 16 floats instead of 17.  Max error (tests/test_simd_math.py, "avx512"): see
 * MAX_ULP there.
 *
 * x is clamped below first (max(lo, x) keeps NaN: vmaxps returns its second operand
 * when either is NaN), so -inf gives exp(lo) * ... = 0 and never inf - inf.
 */
#ifndef FL_MATH_AVX512_H
#define FL_MATH_AVX512_H

#include <immintrin.h>
#include <stddef.h>

/* exp(v) for v <= 0 or NaN, 16 floats */
static inline __attribute__((always_inline)) __m512 fl_expf_nonpos_v16(__m512 v)
{
    v = _mm512_max_ps(_mm512_set1_ps(-104.0f), v);   /* below: 0 even as a subnormal */
    const __m512 sh = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(v, _mm512_set1_ps(1.44269504088896341f), sh), sh);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.381829614e-03f);                /* fl_expf_reduced's */
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.368532173e-03f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166829214e-02f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666652262e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.999999404e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* exp(v) for v <= 0 or NaN, 8 doubles */
static inline __attribute__((always_inline)) __m512d fl_exp_nonpos_v8(__m512d v)
{
    v = _mm512_max_pd(_mm512_set1_pd(-746.0), v);
    const __m512d sh = _mm512_set1_pd(6755399441055744.0);
    const __m512d n = _mm512_sub_pd(_mm512_fmadd_pd(v, _mm512_set1_pd(1.4426950408889634074), sh), sh);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93145751953125e-1), v);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.42860682030941723212e-6), r);
    __m512d p = _mm512_set1_pd(2.5110037605963777e-08);          /* fl_exp_reduced's */
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.763263963904103e-07));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.755724091857897e-06));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.4801485482328494e-05));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.9841269890047113e-04));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.3888888952314775e-03));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(8.333333333319601e-03));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(4.16666666664881e-02));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.666666666666668e-01));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(5.000000000000019e-01));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    return _mm512_scalef_pd(p, n);
}

/* e[j] = exp(x[j] - m), j < len: full vectors, then one masked vector for the tail */
static inline __attribute__((always_inline)) void
fl_exp_shifted_avx512_f32(const float *x, float m, float *e, ptrdiff_t len)
{
    const __m512 mv = _mm512_set1_ps(m);
    ptrdiff_t j = 0;
    for (; j + 16 <= len; j += 16)
        _mm512_storeu_ps(e + j, fl_expf_nonpos_v16(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv)));
    if (j < len) {
        const __mmask16 k = (__mmask16)((1u << (len - j)) - 1u);
        const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv);
        _mm512_mask_storeu_ps(e + j, k, fl_expf_nonpos_v16(v));
    }
}

static inline __attribute__((always_inline)) void
fl_exp_shifted_avx512_f64(const double *x, double m, double *e, ptrdiff_t len)
{
    const __m512d mv = _mm512_set1_pd(m);
    ptrdiff_t j = 0;
    for (; j + 8 <= len; j += 8)
        _mm512_storeu_pd(e + j, fl_exp_nonpos_v8(_mm512_sub_pd(_mm512_loadu_pd(x + j), mv)));
    if (j < len) {
        const __mmask8 k = (__mmask8)((1u << (len - j)) - 1u);
        const __m512d v = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, x + j), mv);
        _mm512_mask_storeu_pd(e + j, k, fl_exp_nonpos_v8(v));
    }
}

/* The same, and returns sum_j e[j].  For double the adds run on other ports than the
 * exp's FMAs and hide behind them in one loop; a separate summing pass over e is one
 * dependent vaddpd chain (a visible share of a row in perf annotate).  float has no
 * such variant: there the widening converts (vcvtps2pd) are what costs, fused or not,
 * and fused was slower for long rows. */
static inline __attribute__((always_inline)) double
fl_exp_shifted_sum_avx512_f64(const double *x, double m, double *e, ptrdiff_t len)
{
    const __m512d mv = _mm512_set1_pd(m);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    ptrdiff_t j = 0;
    for (; j + 16 <= len; j += 16) {
        const __m512d p0 = fl_exp_nonpos_v8(_mm512_sub_pd(_mm512_loadu_pd(x + j), mv));
        const __m512d p1 = fl_exp_nonpos_v8(_mm512_sub_pd(_mm512_loadu_pd(x + j + 8), mv));
        _mm512_storeu_pd(e + j, p0);
        _mm512_storeu_pd(e + j + 8, p1);
        a0 = _mm512_add_pd(a0, p0);
        a1 = _mm512_add_pd(a1, p1);
    }
    for (; j < len; j += 8) {
        const __mmask8 k = len - j >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (len - j)) - 1u);
        const __m512d v = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, x + j), mv);
        const __m512d p = _mm512_maskz_mov_pd(k, fl_exp_nonpos_v8(v));
        _mm512_mask_storeu_pd(e + j, k, p);
        a0 = _mm512_add_pd(a0, p);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/* The lanes' maxima of a contiguous row, ignoring NaN like `v > m ? v : m` (vmaxps
 * returns its second operand when either is NaN, and the accumulator is the second),
 * all -inf for an empty row.  Four independent accumulators: with one, the loop runs
 * at the latency of a dependent vmaxps chain instead of the load rate. */
static inline __attribute__((always_inline)) __m512 fl_lane_max_avx512_f32(const float *x, ptrdiff_t n)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    ptrdiff_t j = 0;
    for (; j + 64 <= n; j += 64) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(x + j + 16), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(x + j + 32), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(x + j + 48), m3);
    }
    for (; j + 16 <= n; j += 16)
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + j), m0);
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1u);
        m1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, k, x + j), m1);
    }
    return _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
}

static inline __attribute__((always_inline)) __m512d fl_lane_max_avx512_f64(const double *x, ptrdiff_t n)
{
    const __m512d ninf = _mm512_set1_pd(-INFINITY);
    __m512d m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    ptrdiff_t j = 0;
    for (; j + 32 <= n; j += 32) {
        m0 = _mm512_max_pd(_mm512_loadu_pd(x + j), m0);
        m1 = _mm512_max_pd(_mm512_loadu_pd(x + j + 8), m1);
        m2 = _mm512_max_pd(_mm512_loadu_pd(x + j + 16), m2);
        m3 = _mm512_max_pd(_mm512_loadu_pd(x + j + 24), m3);
    }
    for (; j + 8 <= n; j += 8)
        m0 = _mm512_max_pd(_mm512_loadu_pd(x + j), m0);
    if (j < n) {
        const __mmask8 k = (__mmask8)((1u << (n - j)) - 1u);
        m1 = _mm512_max_pd(_mm512_mask_loadu_pd(ninf, k, x + j), m1);
    }
    return _mm512_max_pd(_mm512_max_pd(m0, m1), _mm512_max_pd(m2, m3));
}

/* max_j x[j] over a contiguous row (NaN ignored; -inf for an empty row) */
static inline __attribute__((always_inline)) float fl_max_avx512_f32(const float *x, ptrdiff_t n)
{
    return _mm512_reduce_max_ps(fl_lane_max_avx512_f32(x, n));
}

static inline __attribute__((always_inline)) double fl_max_avx512_f64(const double *x, ptrdiff_t n)
{
    return _mm512_reduce_max_pd(fl_lane_max_avx512_f64(x, n));
}

/* Whether any x[j] > m, j < n (NaN never counts): the online rows' test of a block
 * against the running max.  The lanes' maxima are compared with m at once (one vcmpps
 * and a mask test) instead of being reduced to a scalar first, which cost about 7 more
 * vector operations per block; the block's max itself is only needed when it raises
 * m, which is rare. */
static inline __attribute__((always_inline)) int
fl_max_exceeds_avx512_f32(const float *x, ptrdiff_t n, float m)
{
    return _mm512_cmp_ps_mask(fl_lane_max_avx512_f32(x, n), _mm512_set1_ps(m), _CMP_GT_OQ) != 0;
}

static inline __attribute__((always_inline)) int
fl_max_exceeds_avx512_f64(const double *x, ptrdiff_t n, double m)
{
    return _mm512_cmp_pd_mask(fl_lane_max_avx512_f64(x, n), _mm512_set1_pd(m), _CMP_GT_OQ) != 0;
}

/* acc[0..3] += e[0 .. 32 * groups), each half-vector widened to double straight from
 * memory (vcvtps2pd with a memory operand, no extract), four independent chains. */
static inline __attribute__((always_inline)) void
fl_add_as_double_avx512_f32(__m512d acc[4], const float *e, ptrdiff_t groups)
{
    for (ptrdiff_t j = 0; j < 32 * groups; j += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm512_add_pd(acc[k], _mm512_cvtps_pd(_mm256_loadu_ps(e + j + 8 * k)));
}

static inline __attribute__((always_inline)) double fl_reduce4_avx512_f64(const __m512d acc[4])
{
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]),
                                              _mm512_add_pd(acc[2], acc[3])));
}

/* sum_j (double)e[j] over contiguous floats, four accumulators. */
static inline __attribute__((always_inline)) double fl_sum_as_double_avx512_f32(const float *e, ptrdiff_t n)
{
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                      _mm512_setzero_pd()};
    fl_add_as_double_avx512_f32(acc, e, n / 32);
    ptrdiff_t j = n / 32 * 32;
    for (; j + 8 <= n; j += 8)
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm256_loadu_ps(e + j)));
    if (j < n) {
        const __mmask8 k = (__mmask8)((1u << (n - j)) - 1u);
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, e + j)));
    }
    return fl_reduce4_avx512_f64(acc);
}

/* The common case of a row read once (softmax_impl.h, online_blocks): whole blocks of
 * 128 floats from x on, while no block raises the running max m (finite).  Per block:
 * e_j = exp(x_j - m), stored to g when g is given; their sum added to *s; with pg,
 * the previous row's block at the same place multiplied by pf (see pending_scale).
 * Returns how many of the nb blocks it did: it stops before a block that raises m,
 * which online_blocks then takes.  The exponentials are summed into four float64
 * vector accumulators kept across the run's blocks and reduced once, at its end:
 * reducing each block to a scalar (as the generic block does) was ~10% of the loop's
 * samples in `perf record` (with grad, 512 x 128256).  The forward and the gradient
 * kernels run this same loop, so their losses keep the same bits.
 *
 * What it saves over the generic block is per-block overhead in a loop whose vector
 * work alone is about as long as the block's DRAM time:
 *   - the raise test is made on d = x - m, which the exp needs anyway.  A block raises
 *     m exactly when some d > 0, and a signed-integer max of the bits finds that (a
 *     NaN d with its sign bit clear counts too and is left to the generic block, which
 *     ignores it as the max does; -0 and a NaN with the sign set never count);
 *   - the block's vectors, the shift and the exp's constants stay in registers (without
 *     g, gcc widens the exponentials from the registers, not from the chunk).
 * gcc schedules this loop well only without -fwrapv: setup.py compiles the C kernels
 * with -fno-wrapv (see there). */
static inline __attribute__((always_inline)) ptrdiff_t
fl_online_run_avx512_f32(const float *x, float *g, float *pg, float pf, ptrdiff_t nb,
                         float m, double *s, ptrdiff_t prefetch_bytes)
{
    const __m512 mv = _mm512_set1_ps(m), pfv = _mm512_set1_ps(pf);
    float chunk[128];   /* without g: the exponentials on their way to the sum */
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                      _mm512_setzero_pd()};
    ptrdiff_t b = 0;
    for (; b < nb; b++) {
        const ptrdiff_t j0 = 128 * b;
        for (int k = 0; k < 512; k += 64)
            __builtin_prefetch((const char *)(x + j0) + prefetch_bytes + k, 0, 3);
        __m512 d[8];
        for (int k = 0; k < 8; k++) d[k] = _mm512_sub_ps(_mm512_loadu_ps(x + j0 + 16 * k), mv);
        __m512i t0 = _mm512_max_epi32(_mm512_castps_si512(d[0]), _mm512_castps_si512(d[1]));
        __m512i t1 = _mm512_max_epi32(_mm512_castps_si512(d[2]), _mm512_castps_si512(d[3]));
        __m512i t2 = _mm512_max_epi32(_mm512_castps_si512(d[4]), _mm512_castps_si512(d[5]));
        __m512i t3 = _mm512_max_epi32(_mm512_castps_si512(d[6]), _mm512_castps_si512(d[7]));
        t0 = _mm512_max_epi32(_mm512_max_epi32(t0, t1), _mm512_max_epi32(t2, t3));
        if (__builtin_expect(_mm512_cmpgt_epi32_mask(t0, _mm512_setzero_si512()) != 0, 0))
            break;
        if (pg)
            for (int k = 0; k < 8; k++)
                _mm512_storeu_ps(pg + j0 + 16 * k, _mm512_mul_ps(_mm512_loadu_ps(pg + j0 + 16 * k), pfv));
        float *e = g ? g + j0 : chunk;
        for (int k = 0; k < 8; k++) _mm512_storeu_ps(e + 16 * k, fl_expf_nonpos_v16(d[k]));
        fl_add_as_double_avx512_f32(acc, e, 4);
    }
    if (b) *s += fl_reduce4_avx512_f64(acc);
    return b;
}

/* One finished piece of a streamed softmax (log_mode 0: y = src * k) or log_softmax
 * (log_mode 1: y = (src - m) - k) output, y 64-byte aligned: whole vectors leave by
 * streaming stores straight from the registers (the portable path stages them in an
 * L1 buffer and copies that out), the last partial line by plain stores. */
static inline __attribute__((always_inline)) void
fl_stream_scale_avx512_f32(float *y, const float *src, ptrdiff_t len, float m, float k, int log_mode)
{
    const __m512 mv = _mm512_set1_ps(m), kv = _mm512_set1_ps(k);
    ptrdiff_t j = 0;
    if (log_mode)
        for (; j + 16 <= len; j += 16)
            _mm512_stream_ps(y + j, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(src + j), mv), kv));
    else
        for (; j + 16 <= len; j += 16)
            _mm512_stream_ps(y + j, _mm512_mul_ps(_mm512_loadu_ps(src + j), kv));
    for (; j < len; j++)
        y[j] = log_mode ? (src[j] - m) - k : src[j] * k;
}

static inline __attribute__((always_inline)) void
fl_stream_scale_avx512_f64(double *y, const double *src, ptrdiff_t len, double m, double k,
                           int log_mode)
{
    const __m512d mv = _mm512_set1_pd(m), kv = _mm512_set1_pd(k);
    ptrdiff_t j = 0;
    if (log_mode)
        for (; j + 8 <= len; j += 8)
            _mm512_stream_pd(y + j, _mm512_sub_pd(_mm512_sub_pd(_mm512_loadu_pd(src + j), mv), kv));
    else
        for (; j + 8 <= len; j += 8)
            _mm512_stream_pd(y + j, _mm512_mul_pd(_mm512_loadu_pd(src + j), kv));
    for (; j < len; j++)
        y[j] = log_mode ? (src[j] - m) - k : src[j] * k;
}

#endif /* FL_MATH_AVX512_H */
