/*
 * fl_math_avx512.h -- exp of a shifted argument (x - max <= 0) for AVX-512, the one
 * place where the kernels use intrinsics.  Included by kernels_all.h only when the
 * translation unit targets AVX-512 (kernels_avx512.c); every other build uses the
 * portable fl_expf_nonpos / fl_exp_nonpos of fl_math.h, which gcc vectorizes.
 *
 * Why: the softmax/cross-entropy rows are bound by the exp's vector-operation count.
 * The same algorithm as fl_math.h (n = round(x / ln2), Cody-Waite r, the same
 * polynomials) with two AVX-512 instructions gcc does not emit from portable C:
 *   vrndscale   round x / ln2 to an integer in one operation (not the shifter trick);
 *   vscalef     p * 2^n with IEEE underflow: results below FLT_MIN come out as
 *               correctly rounded subnormals (no flush, no compare/blend), and
 *               n = -inf or huge negative gives 0.
 * and the polynomial in plain Horner form (FMA is always there).  Measured on Zen 4,
 * L1-resident loop: float 5.35 -> 5.90 Gelem/s (13 vector operations per 16 values
 * instead of 17).  Max error (tests/test_simd_math.py, "avx512"): see MAX_ULP there.
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
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
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
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(v, _mm512_set1_pd(1.4426950408889634074)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
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
 * exp's FMAs and hide behind them in one loop; a separate summing pass over e was one
 * dependent vaddpd chain and cost 8% of a row (perf annotate): (8192, 1000) out=
 * softmax 8.0 -> 7.2 ms, log_softmax 9.0 -> 8.0 ms at 1 thread.  float has no such
 * variant: there the widening converts (vcvtps2pd) are what costs, fused or not, and
 * fused measured slower for long rows (cross_entropy (2048, 32000) 20.1 -> 23.3 ms). */
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

#endif /* FL_MATH_AVX512_H */
