/*
 * fl_math.h -- exp and log written so that gcc turns loops over them into SIMD code.
 *
 * libm's expf/exp are calls the vectorizer cannot see through, so a loop such as
 * `y[j] = expf(x[j] - m)` stays scalar.  These inline versions use
 * only +, *, fma, compares-with-select and integer bit tricks, so a loop over them
 * vectorizes for whatever instruction set the including translation unit targets
 * (see kernels_*.c).  They need -fno-trapping-math (lets gcc turn the selects into
 * blends) but never -ffast-math: every inf/NaN case below is handled explicitly and
 * the rounding trick in fl_round_* must not be reassociated away.
 *
 * exp(x) = 2^n * exp(r),  n = round(x / ln 2),  r = x - n ln 2  (|r| <= ln2/2)
 *   r is computed with ln 2 split into a short high part and a low correction
 *   (Cody-Waite), so n*ln2_hi is exact; exp(r) is a degree-6 (float) or degree-11
 *   (double) polynomial, no division.  2^n is built in the exponent bits in TWO factors,
 *   2^(n/2) * 2^(n - n/2), so results in the subnormal range are produced correctly
 *   (no flush to zero) and overflow gives inf.  x is clamped first so the integer
 *   arithmetic never overflows; NaN fails both clamp compares and propagates.
 *   Max error (tests/test_simd_math.py sweeps the float32 range and samples float64,
 *   without / with FMA contraction): expf 0.97 / 1.00 ulp, exp 1.21 / 0.93 ulp;
 *   the _nonpos variants 0.97 / 0.99 and 1.19 / 0.95.
 *
 * log(x) = e ln 2 + log(m),  m in [sqrt(1/2), sqrt 2)
 *   log(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...),  s = (m - 1) / (m + 1),
 *   |s| <= 0.1716, so a short odd series converges fast.  x < 0 and NaN -> NaN,
 *   0 -> -inf, +inf -> +inf, subnormals are rescaled first.  Max error: logf 1.22 /
 *   1.15 ulp, log 1.38 / 1.39 ulp (as above).
 */
#ifndef FL_MATH_H
#define FL_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#define FL_INLINE static inline __attribute__((always_inline))

FL_INLINE float fl_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
FL_INLINE uint32_t fl_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
FL_INLINE double fl_bits_to_f64(uint64_t u) { double f; memcpy(&f, &u, sizeof f); return f; }
FL_INLINE uint64_t fl_f64_to_bits(double f) { uint64_t u; memcpy(&u, &f, sizeof u); return u; }

/* ---------------------------------------------------------------- float32 exp */
/* The part every float exp shares: n = round(x / ln2) into *ni and exp(r) for the
 * reduced r = x - n ln2, so that exp(x) = 2^n * (the return value). */
FL_INLINE float fl_expf_reduced(float x, int32_t *ni)
{
    /* round(x * log2 e) to an integer: adding 1.5 * 2^23 pushes the fraction bits out,
     * so the low mantissa bits of t hold n (round-to-nearest-even). */
    const float shifter = 12582912.0f;
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    *ni = (int32_t)(fl_f32_to_bits(t) - fl_f32_to_bits(shifter));
    /* Cody-Waite: ln2 = 0.693359375 - 2.12194440e-4 (the first part has 9 bits) */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    /* exp(r) on [-ln2/2, ln2/2]: degree-6 polynomial 1 + r + r^2 (c2 + c3 r + ... +
     * c6 r^4).  c2..c6 were fitted for the least maximum relative error, one at a
     * time after rounding the previous ones to float: 3.1e-9 (0.05 ulp) before the
     * rounding of the evaluation.  Adding r and 1 last, rather than Horner to the
     * end, keeps the error at 1 ulp also where the compiler cannot contract to fma
     * (measured: pure Horner 0.87 ulp with fma, 1.14 without). */
    float p = 1.381829614e-03f;
    p = p * r + 8.368532173e-03f;
    p = p * r + 4.166829214e-02f;
    p = p * r + 1.666652262e-01f;
    p = p * r + 4.999999404e-01f;
    return p * (r * r) + r + 1.0f;
}

FL_INLINE float fl_expf(float x)
{
    /* Beyond these the result is 0 (below exp(-103.97) even the smallest subnormal
     * rounds to 0) or inf; clamping keeps n in [-150, 129]. */
    const float lo = -104.0f, hi = 89.0f;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    int32_t ni;
    float p = fl_expf_reduced(x, &ni);
    /* 2^n in two factors so that n down to -150 stays exact (subnormal results). */
    int32_t n1 = ni >> 1;
    int32_t n2 = ni - n1;
    float s1 = fl_bits_to_f32((uint32_t)(n1 + 127) << 23);
    float s2 = fl_bits_to_f32((uint32_t)(n2 + 127) << 23);
    return p * s1 * s2;
}

/* ---------------------------------------------------------------- float64 exp */
FL_INLINE double fl_exp_reduced(double x, int64_t *ni)
{
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + shifter;
    double n = t - shifter;
    *ni = (int64_t)(fl_f64_to_bits(t) - fl_f64_to_bits(shifter));
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    /* exp(r) on [-ln2/2, ln2/2]: the degree-11 polynomial interpolating exp at the
     * Chebyshev nodes (near minimax), in Horner form: relative error 1.7e-17 before
     * the rounding of the evaluation.  No division (the Pade form needed one, which
     * is slow in vectors). */
    double p = 2.5110037605963777e-08;
    p = p * r + 2.763263963904103e-07;
    p = p * r + 2.755724091857897e-06;
    p = p * r + 2.4801485482328494e-05;
    p = p * r + 1.9841269890047113e-04;
    p = p * r + 1.3888888952314775e-03;
    p = p * r + 8.333333333319601e-03;
    p = p * r + 4.16666666664881e-02;
    p = p * r + 1.666666666666668e-01;
    p = p * r + 5.000000000000019e-01;
    p = p * r + 1.0;
    return p * r + 1.0;
}

FL_INLINE double fl_exp(double x)
{
    const double lo = -746.0, hi = 710.0;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    int64_t ni;
    double e = fl_exp_reduced(x, &ni);
    int64_t n1 = ni >> 1;
    int64_t n2 = ni - n1;
    double s1 = fl_bits_to_f64((uint64_t)(n1 + 1023) << 52);
    double s2 = fl_bits_to_f64((uint64_t)(n2 + 1023) << 52);
    return e * s1 * s2;
}

/* ------------------------------------------- exp of a shifted argument (x <= 0) */
/* exp(x) for x <= 0 or NaN -- the x - max of every softmax-like kernel.  Cheaper
 * than fl_expf: no overflow side, and 2^n in ONE factor, because results below the
 * smallest normal (x < log(FLT_MIN) = -87.34) are flushed to 0: an absolute error
 * under 1.2e-38 in a probability, far inside the contract, and the sums these
 * feed are >= 1.  2^n is added to the exponent field (an integer add, exact for
 * normal results) instead of two multiplies: the exp is FP-throughput bound, so
 * every vector operation saved counts.  -inf gives 0, NaN propagates (it fails the
 * compare).  AVX-512 builds run
 * the rows' exp loops with fl_math_avx512.h instead (vscalef: no flush). */
FL_INLINE float fl_expf_nonpos(float x)
{
    const float lo = -87.3365447505531f;     /* log(FLT_MIN): n >= -126 above it */
    int32_t ni;
    float p = fl_expf_reduced(x, &ni);
    /* p * 2^n by adding n to p's exponent field: exact while the result is normal,
     * which the flush below guarantees (an integer add instead of a multiply). */
    float res = fl_bits_to_f32(fl_f32_to_bits(p) + ((uint32_t)ni << 23));
    return x < lo ? 0.0f : res;
}

FL_INLINE double fl_exp_nonpos(double x)
{
    const double lo = -708.3964185322641;    /* log(DBL_MIN): n >= -1022 above it */
    int64_t ni;
    double e = fl_exp_reduced(x, &ni);
    double res = fl_bits_to_f64(fl_f64_to_bits(e) + ((uint64_t)ni << 52));   /* as in fl_expf_nonpos */
    return x < lo ? 0.0 : res;
}

/* ---------------------------------------------------------------- float32 log */
FL_INLINE float fl_logf(float x)
{
    /* Rescale subnormals by 2^23 so their exponent field is meaningful. */
    int tiny = x < 1.17549435e-38f;
    float xs = tiny ? x * 8388608.0f : x;
    uint32_t bits = fl_f32_to_bits(xs);
    /* Split xs = 2^e * m with m in [sqrt(1/2), sqrt(2)): offset the bits by
     * (1 - sqrt(1/2)) in mantissa units before taking the exponent. */
    uint32_t shifted = bits - 0x3f3504f3u;            /* bits of sqrt(1/2) */
    int32_t e = (int32_t)shifted >> 23;
    uint32_t mbits = (shifted & 0x007fffffu) + 0x3f3504f3u;
    float m = fl_bits_to_f32(mbits);
    float ef = (float)e - (tiny ? 23.0f : 0.0f);
    float f = m - 1.0f;
    float s = f / (m + 1.0f);
    float s2 = s * s;
    /* 2 atanh(s) = 2s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9) ; |s| <= 0.1716 */
    float q = 0.11111111f;
    q = q * s2 + 0.14285715f;
    q = q * s2 + 0.2f;
    q = q * s2 + 0.33333334f;
    /* 2s = f - s f exactly enough that the leading term stays accurate (as in fl_log) */
    float lm = f - s * f + 2.0f * s * (s2 * q);
    float res = ef * 0.693359375f + (lm + ef * -2.12194440e-4f);
    res = x == 0.0f ? -INFINITY : res;
    res = x < 0.0f ? NAN : res;
    res = x == INFINITY ? x : res;
    res = x != x ? x : res;
    return res;
}

/* ---------------------------------------------------------------- float64 log */
FL_INLINE double fl_log(double x)
{
    int tiny = x < 2.2250738585072014e-308;
    double xs = tiny ? x * 18014398509481984.0 : x;    /* 2^54 */
    uint64_t bits = fl_f64_to_bits(xs);
    uint64_t shifted = bits - 0x3fe6a09e667f3bcdull;      /* bits of sqrt(1/2) */
    /* e + 1023 by a logical shift of shifted + (bits of 1.0), and e as a double through
     * the 2^52 trick: AVX2 has neither a 64-bit arithmetic shift nor an int64 -> double
     * conversion, and with either here gcc left every loop over fl_log scalar */
    uint64_t biased = (bits + 0x00095f619980c433ull) >> 52;
    uint64_t mbits = (shifted & 0x000fffffffffffffull) + 0x3fe6a09e667f3bcdull;
    double m = fl_bits_to_f64(mbits);
    double ef = (fl_bits_to_f64(biased | 0x4330000000000000ull) - 4503599627371519.0)
                - (tiny ? 54.0 : 0.0);                   /* 2^52 + 1023 */
    double f = m - 1.0;
    double s = f / (m + 1.0);
    double s2 = s * s;
    /* 2 atanh(s) - 2s = 2s (s^2/3 + s^4/5 + ... + s^20/21); |s|^2 <= 0.0295 */
    double q = 1.0 / 21;
    q = q * s2 + 1.0 / 19;
    q = q * s2 + 1.0 / 17;
    q = q * s2 + 1.0 / 15;
    q = q * s2 + 1.0 / 13;
    q = q * s2 + 1.0 / 11;
    q = q * s2 + 1.0 / 9;
    q = q * s2 + 1.0 / 7;
    q = q * s2 + 1.0 / 5;
    q = q * s2 + 1.0 / 3;
    /* log(m) = f - (f - 2s) + 2s s^2 q, where f - 2s = s f is formed exactly enough:
     * 2s = f - s f, so log(m) = f - s*f + 2 s s2 q keeps the leading term exact. */
    double lm = f - s * f + 2.0 * s * s2 * q;
    double res = ef * 6.93147180369123816490e-1 + (lm + ef * 1.90821492927058770002e-10);
    res = x == 0.0 ? -INFINITY : res;
    res = x < 0.0 ? NAN : res;
    res = x == INFINITY ? x : res;
    res = x != x ? x : res;
    return res;
}

/* ---------------------------------------------------------------- log1p */
/* log1p(u) = log(w) + (u - (w - 1)) / w  with  w = 1 + u rounded.
 * log(w) is exact for the rounded w; the second term is the first-order correction
 * for the rounding error of 1 + u (w - 1 is exact by Sterbenz's lemma whenever it
 * matters, w in [1/2, 2]), so small u keep full relative accuracy: for |u| below
 * half an ulp of 1, w == 1, log(w) == 0 and the result is u itself.  Edge cases:
 * u == -1 -> -inf, u == +inf -> +inf, u < -1 and NaN -> NaN (from the log).
 * Measured max error against long double log1pl: 1.7 ulp (float, every 97th
 * float32), 2.0 ulp (double, 2e7 samples over +-[1e-17, 5e4]); the tests check it
 * through softplus and binary_cross_entropy_with_logits. */
FL_INLINE float fl_log1pf(float u)
{
    float w = 1.0f + u;
    float r = fl_logf(w) + (u - (w - 1.0f)) / w;
    r = w == 0.0f ? -INFINITY : r;
    r = u == INFINITY ? u : r;
    return r;
}

FL_INLINE double fl_log1p(double u)
{
    double w = 1.0 + u;
    double r = fl_log(w) + (u - (w - 1.0)) / w;
    r = w == 0.0 ? -INFINITY : r;
    r = u == INFINITY ? u : r;
    return r;
}

/* ---------------------------------------------------------------- tanh */
/* Cephes tanhf/tanh: |x| < 0.625 uses the odd polynomial (float) or rational
 * function (double) x + x^3 R(x^2), where 1 - e below would cancel; elsewhere
 * tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.29), which cannot
 * overflow (e -> 0 gives exactly 1 for large |x|).  The sign is copied back, so
 * tanh(-0) = -0 and NaN stays NaN.  Measured max error against long double tanhl:
 * 1.5 ulp (float, every 97th float32), 1.6 ulp (double, 2e7 samples). */
FL_INLINE float fl_tanhf(float x)
{
    float a = x < 0.0f ? -x : x;
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    small = z == 0.0f ? x : small;      /* keeps the sign of -0 */
    float e = fl_expf(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : (x != x ? x : big);
}

FL_INLINE double fl_tanh(double x)
{
    double a = x < 0.0 ? -x : x;
    double z = x * x;
    double p = -9.64399179425052238628e-1;
    p = p * z - 9.92877231001918586564e1;
    p = p * z - 1.61468768441708447952e3;
    double q = z + 1.12811678491632931402e2;
    q = q * z + 2.23548839060100448583e3;
    q = q * z + 4.84406305325125486048e3;
    double small = x + x * z * (p / q);
    small = z == 0.0 ? x : small;
    double e = fl_exp(-2.0 * a);
    double big = (1.0 - e) / (1.0 + e);
    big = x < 0.0 ? -big : big;
    return a < 0.625 ? small : (x != x ? x : big);
}

#endif /* FL_MATH_H */
