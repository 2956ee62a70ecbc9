/* Accuracy sweep of src/csrc/fl_math.h, built and run by tests/test_simd_math.py.
 * Prints one line per function: "name max_ulp specials_ok". float32 functions are
 * swept over every STRIDE-th float of their range, float64 ones over random samples;
 * the reference is libm in long double (float64) or double (float32). */
#include "fl_math.h"
#include <float.h>
#include <stdio.h>
#include <stdlib.h>

static double ulp_err_f32(float got, double ref)
{
    float r = (float)ref;
    if (isinf(r) || r == 0.0f) return got == r ? 0.0 : 1e9;
    double u = fabs((double)nextafterf(r, INFINITY) - (double)r);
    if (fabs(ref) < FLT_MIN) u = 1.401298464324817e-45;   /* subnormal spacing */
    return fabs((double)got - ref) / u;
}

static double ulp_err_f64(double got, long double ref)
{
    double r = (double)ref;
    if (isinf(r) || r == 0.0) return got == r ? 0.0 : 1e9;
    double u = fabs(nextafter(r, INFINITY) - r);
    if (fabsl(ref) < DBL_MIN) u = 4.9406564584124654e-324;
    return (double)(fabsl((long double)got - ref) / u);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* The AVX-512 forms used by the rows' exp loops in kernels_avx512.c */
#include "fl_math_avx512.h"
static float expf_avx512(float x)
{
    float o[16];
    _mm512_storeu_ps(o, fl_expf_nonpos_v16(_mm512_set1_ps(x)));
    return o[0];
}
static double exp_avx512(double x)
{
    double o[8];
    _mm512_storeu_pd(o, fl_exp_nonpos_v8(_mm512_set1_pd(x)));
    return o[0];
}
#define FL_SWEEP_AVX512 1
#else
#define FL_SWEEP_AVX512 0
#endif

#if defined(__AVX2__) && defined(__FMA__)
/* The AVX2 forms used by the rows' exp loops in kernels_avx2.c */
#include "fl_math_avx2.h"
static float expf_avx2(float x)
{
    float o[8];
    _mm256_storeu_ps(o, fl_expf_nonpos_v8(_mm256_set1_ps(x)));
    return o[0];
}
static double exp_avx2(double x)
{
    double o[4];
    _mm256_storeu_pd(o, fl_exp_nonpos_v4(_mm256_set1_pd(x)));
    return o[0];
}
#define FL_SWEEP_AVX2 1
#else
#define FL_SWEEP_AVX2 0
#endif

static uint64_t rng = 88172645463325252ull;
static double uniform(double lo, double hi)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (double)(rng >> 11) / 9007199254740992.0 * (hi - lo);
}

int main(int argc, char **argv)
{
    const uint32_t stride = argc > 1 ? (uint32_t)atoi(argv[1]) : 61;
    double e_exp = 0, e_nonpos = 0, e_log = 0;
    for (uint64_t b = 0; b <= 0xffffffffull; b += stride) {
        float x = fl_bits_to_f32((uint32_t)b);
        if (isnan(x)) continue;
        if (x >= -110.0f && x <= 90.0f) {
            double e = ulp_err_f32(fl_expf(x), exp((double)x));
            if (e > e_exp) e_exp = e;
        }
        if (x <= 0.0f && x >= -87.33f) {    /* above the flush threshold */
            double e = ulp_err_f32(fl_expf_nonpos(x), exp((double)x));
            if (e > e_nonpos) e_nonpos = e;
        }
        if (x > 0.0f && !isinf(x)) {
            double e = ulp_err_f32(fl_logf(x), log((double)x));
            if (e > e_log) e_log = e;
        }
    }
    int ok_f = fl_expf(-INFINITY) == 0.0f && isinf(fl_expf(INFINITY)) && isnan(fl_expf(NAN))
               && fl_expf(0.0f) == 1.0f && fl_expf_nonpos(-INFINITY) == 0.0f
               && isnan(fl_expf_nonpos(NAN)) && fl_expf_nonpos(-100.0f) == 0.0f
               && fl_logf(0.0f) == -INFINITY && isnan(fl_logf(-1.0f)) && isnan(fl_logf(NAN))
               && isinf(fl_logf(INFINITY)) && fl_logf(1.0f) == 0.0f;
    printf("expf %.3f %d\nexpf_nonpos %.3f %d\nlogf %.3f %d\n", e_exp, ok_f, e_nonpos, ok_f,
           e_log, ok_f);

    double d_exp = 0, d_nonpos = 0, d_log = 0;
    for (long i = 0; i < 2000000; i++) {
        double x = uniform(-745.0, 709.7);
        double e = ulp_err_f64(fl_exp(x), expl((long double)x));
        if (e > d_exp) d_exp = e;
        double xn = uniform(-708.3, 0.0);
        e = ulp_err_f64(fl_exp_nonpos(xn), expl((long double)xn));
        if (e > d_nonpos) d_nonpos = e;
        double y = fl_bits_to_f64(rng & 0x7fefffffffffffffull);  /* any finite positive */
        if (y > 0.0) {
            e = ulp_err_f64(fl_log(y), logl((long double)y));
            if (e > d_log) d_log = e;
        }
    }
    int ok_d = fl_exp(-INFINITY) == 0.0 && isinf(fl_exp(INFINITY)) && isnan(fl_exp(NAN))
               && fl_exp(0.0) == 1.0 && fl_exp_nonpos(-INFINITY) == 0.0 && isnan(fl_exp_nonpos(NAN))
               && fl_log(0.0) == -INFINITY && isnan(fl_log(-1.0)) && isnan(fl_log(NAN))
               && isinf(fl_log(INFINITY)) && fl_log(1.0) == 0.0;
    printf("exp %.3f %d\nexp_nonpos %.3f %d\nlog %.3f %d\n", d_exp, ok_d, d_nonpos, ok_d, d_log,
           ok_d);
#if FL_SWEEP_AVX512
    /* no flush here: vscalef rounds subnormal results, so the sweep goes down to 0 */
    double a_f = 0, a_d = 0;
    for (uint64_t b = 0x80000000ull; b <= 0xffffffffull; b += stride) {
        float x = fl_bits_to_f32((uint32_t)b);
        if (isnan(x) || x < -110.0f) continue;
        double e = ulp_err_f32(expf_avx512(x), exp((double)x));
        if (e > a_f) a_f = e;
    }
    for (long i = 0; i < 2000000; i++) {
        double x = uniform(-750.0, 0.0);
        double e = ulp_err_f64(exp_avx512(x), expl((long double)x));
        if (e > a_d) a_d = e;
    }
    int ok_a = expf_avx512(-INFINITY) == 0.0f && isnan(expf_avx512(NAN)) && expf_avx512(0.0f) == 1.0f
               && expf_avx512(-200.0f) == 0.0f && exp_avx512(-INFINITY) == 0.0
               && isnan(exp_avx512(NAN)) && exp_avx512(0.0) == 1.0 && exp_avx512(-800.0) == 0.0;
    printf("expf_nonpos_avx512 %.3f %d\nexp_nonpos_avx512 %.3f %d\n", a_f, ok_a, a_d, ok_a);
#endif
#if FL_SWEEP_AVX2
    /* flushed to 0 below log(FLT_MIN) / log(DBL_MIN), as fl_expf_nonpos: swept above it,
     * and the flush checked below it; a NaN with a payload in its low bits stays NaN */
    double v_f = 0, v_d = 0;
    int ok_v = 1;
    for (uint64_t b = 0x80000000ull; b <= 0xffffffffull; b += stride) {
        float x = fl_bits_to_f32((uint32_t)b);
        if (isnan(x)) continue;
        if (x >= -87.33f) {
            double e = ulp_err_f32(expf_avx2(x), exp((double)x));
            if (e > v_f) v_f = e;
        } else if (x < -87.3366f) {
            ok_v &= expf_avx2(x) == 0.0f;
        }
    }
    for (long i = 0; i < 2000000; i++) {
        double x = uniform(-708.3, 0.0);
        double e = ulp_err_f64(exp_avx2(x), expl((long double)x));
        if (e > v_d) v_d = e;
        ok_v &= exp_avx2(uniform(-1000.0, -708.4)) == 0.0;
    }
    ok_v &= expf_avx2(-INFINITY) == 0.0f && isnan(expf_avx2(NAN)) && expf_avx2(0.0f) == 1.0f
            && isnan(expf_avx2(fl_bits_to_f32(0xffc001ffu))) && exp_avx2(-INFINITY) == 0.0
            && isnan(exp_avx2(NAN)) && exp_avx2(0.0) == 1.0
            && isnan(exp_avx2(fl_bits_to_f64(0xfff8000000000fffull)));
    printf("expf_nonpos_avx2 %.3f %d\nexp_nonpos_avx2 %.3f %d\n", v_f, ok_v, v_d, ok_v);
#endif
    return 0;
}
