/*
 * kernel_bench.c -- the kernel harness: the SIMD kernel tables timed directly, in ns
 * per element, beside a plain reference loop.  Built and run by kernel_bench.py.
 *
 * What it measures.  For each shape (rows x classes, C-contiguous) and dtype, the
 * entries of fl_kernels_<level> (reached through fl_isa_set / fl_active) at every
 * requested SIMD level the CPU has, called as the extension calls them on one thread:
 * all lanes [0, rows) in one call, fl_long_row_bytes set as at import.
 *   logsumexp        out: one value per row
 *   softmax_out      softmax into a separate output buffer, reused (out=)
 *   log_softmax_out  the same, log_softmax
 *   ce_fwd           cross_entropy forward, index targets, as reduction="mean" calls it
 *                    (no gradient, no per-row loss, want_loss = 1)
 *   ce_grad_inplace  cross_entropy_with_grad in place: grad == x, grad_scale0 = 1/rows
 * Yardsticks, timed in the same rounds:
 *   reference        a plain hand-written AVX2+FMA loop (ref_f32 below): per row a max
 *                    pass, then exp(x - max) stored to the output and summed in
 *                    float64, 16 floats per iteration; float64 rows get the same loop
 *                    on doubles (8 per iteration, the kernels' degree-11 exp).
 *   read, copy       rows of at least DRAM_BYTES: a sum over the same bytes (as 64-bit
 *                    integers) and a memcpy of them into the output buffer.
 * Why: the kernels' throughput as a ratio to code one would write by hand, from the
 * same process, buffers and rounds; the acceptance criteria quote these ratios, and
 * they hold up better than absolute figures on a host whose speed drifts.
 *
 * How.  Each contender gets one warm-up call and one timed call, which sets how many
 * calls a sample repeats to last --min-ms.  Then --repeats rounds: in each, every
 * contender of the (shape, dtype) takes one sample in turn (round robin), so they all
 * share the host's noise.  Reported: the median sample per call, in ns per element
 * (rows x classes) and Gelem/s, its ratio to the reference's throughput, and the
 * samples' spread.  In-place calls work on their own copy of x, refilled from x before
 * every sample, outside the timing: each sample starts from the same logits (the
 * calls after the first in a sample see gradients: finite, which costs the same).
 * Before any timing every level's outputs are checked against a float64 libm loop on
 * sampled rows; a wrong kernel stops the run instead of being timed.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fl_kernels.h"

#define MAX_ROUNDS 64
#define MAX_CONTENDERS 32
#define DRAM_BYTES ((size_t)32 << 20)   /* x at least this large: read and copy too */
#define CHECK_ROWS 32                   /* rows checked against libm per shape */

enum { K_LSE, K_SOFTMAX, K_LOG_SOFTMAX, K_CE, K_CE_GRAD, K_NKERNELS, K_REF = K_NKERNELS,
       K_READ, K_COPY };
static const char *const kernel_names[] = {"logsumexp", "softmax_out", "log_softmax_out",
                                           "ce_fwd", "ce_grad_inplace", "reference",
                                           "read", "copy"};

typedef struct {
    ptrdiff_t rows, cols;
    int f64;
    size_t es, bytes;
    void *x, *xg, *out;       /* logits (never written), in-place copy, output */
    void *lse;                /* logsumexp output, rows elements */
    double *ref_lse;          /* the reference loop's max + log(sum) per row */
    int64_t *target;
    fl_view3 v, vl;           /* softmax / cross-entropy view; logsumexp view */
    fl_ce_args fwd, grad;
    volatile double sink;
} bench;

typedef struct {
    int kind, level;          /* level: FL_ISA_* for kernels, -1 for yardsticks */
    const fl_kernel_table *t;
    long calls;
    double s[MAX_ROUNDS];     /* seconds per call */
} contender;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "kernel_bench: %s\n", msg);
    exit(2);
}

/* ------------------------------------------------------------ the reference loop */
#define V8(c) _mm256_set1_ps(c)
#define V4(c) _mm256_set1_pd(c)

/* exp(d) for d <= 0: Cody-Waite reduction by ln2 in two parts, a degree-5 polynomial
 * (near minimax on [-ln2/2, ln2/2], relative error 7.5e-8), 2^n added to the exponent */
__attribute__((target("avx2,fma"))) static inline __m256 ref_exp8(__m256 d)
{
    d = _mm256_max_ps(d, V8(-87.0f));
    const __m256 shifter = V8(12582912.0f);
    __m256 t = _mm256_fmadd_ps(d, V8(1.44269504088896341f), shifter);
    __m256 n = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(n, V8(0.693359375f), d);
    r = _mm256_fnmadd_ps(n, V8(-2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(V8(8.297638968e-03f), r, V8(4.191534594e-02f));
    p = _mm256_fmadd_ps(p, r, V8(1.666757464e-01f));
    p = _mm256_fmadd_ps(p, r, V8(4.999889433e-01f));
    p = _mm256_fmadd_ps(p, r, V8(9.999997020e-01f));
    p = _mm256_fmadd_ps(p, r, V8(1.000000119e+00f));
    __m256i e = _mm256_slli_epi32(
        _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(shifter)), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

__attribute__((target("avx2,fma"))) static void
ref_f32(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, double *lse)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m256 m0 = V8(-INFINITY), m1 = m0;
        for (ptrdiff_t j = 0; j < n; j += 16) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xr + j));
            m1 = _mm256_max_ps(m1, _mm256_loadu_ps(xr + j + 8));
        }
        float mv[8], m = -INFINITY;
        _mm256_storeu_ps(mv, _mm256_max_ps(m0, m1));
        for (int k = 0; k < 8; k++) m = mv[k] > m ? mv[k] : m;
        const __m256 vm = V8(m);
        __m256d s0 = _mm256_setzero_pd(), s1 = s0;
        for (ptrdiff_t j = 0; j < n; j += 16) {
            __m256 e0 = ref_exp8(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm));
            __m256 e1 = ref_exp8(_mm256_sub_ps(_mm256_loadu_ps(xr + j + 8), vm));
            _mm256_storeu_ps(yr + j, e0);
            _mm256_storeu_ps(yr + j + 8, e1);
            s0 = _mm256_add_pd(s0, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e0)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1))));
            s1 = _mm256_add_pd(s1, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e1)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1))));
        }
        double sv[4];
        _mm256_storeu_pd(sv, _mm256_add_pd(s0, s1));
        lse[r] = (double)m + log((sv[0] + sv[1]) + (sv[2] + sv[3]));
    }
}

/* The float64 counterpart: the same structure, with fl_math.h's double exp (a float-
 * accurate polynomial would make a yardstick no float64 kernel may match). */
__attribute__((target("avx2,fma"))) static inline __m256d ref_exp4(__m256d d)
{
    d = _mm256_max_pd(d, V4(-708.0));
    const __m256d shifter = V4(6755399441055744.0);
    __m256d t = _mm256_fmadd_pd(d, V4(1.4426950408889634074), shifter);
    __m256d n = _mm256_sub_pd(t, shifter);
    __m256d r = _mm256_fnmadd_pd(n, V4(6.93145751953125e-1), d);
    r = _mm256_fnmadd_pd(n, V4(1.42860682030941723212e-6), r);
    static const double c[] = {2.763263963904103e-07, 2.755724091857897e-06,
                               2.4801485482328494e-05, 1.9841269890047113e-04,
                               1.3888888952314775e-03, 8.333333333319601e-03,
                               4.16666666664881e-02, 1.666666666666668e-01,
                               5.000000000000019e-01, 1.0, 1.0};
    __m256d p = V4(2.5110037605963777e-08);
    for (int k = 0; k < 11; k++) p = _mm256_fmadd_pd(p, r, V4(c[k]));
    __m256i e = _mm256_slli_epi64(
        _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(shifter)), 52);
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), e));
}

__attribute__((target("avx2,fma"))) static void
ref_f64(const double *x, double *y, ptrdiff_t rows, ptrdiff_t n, double *lse)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const double *xr = x + r * n;
        double *yr = y + r * n;
        __m256d m0 = V4(-INFINITY), m1 = m0;
        for (ptrdiff_t j = 0; j < n; j += 8) {
            m0 = _mm256_max_pd(m0, _mm256_loadu_pd(xr + j));
            m1 = _mm256_max_pd(m1, _mm256_loadu_pd(xr + j + 4));
        }
        double mv[4], m = -INFINITY;
        _mm256_storeu_pd(mv, _mm256_max_pd(m0, m1));
        for (int k = 0; k < 4; k++) m = mv[k] > m ? mv[k] : m;
        const __m256d vm = V4(m);
        __m256d s0 = _mm256_setzero_pd(), s1 = s0;
        for (ptrdiff_t j = 0; j < n; j += 8) {
            __m256d e0 = ref_exp4(_mm256_sub_pd(_mm256_loadu_pd(xr + j), vm));
            __m256d e1 = ref_exp4(_mm256_sub_pd(_mm256_loadu_pd(xr + j + 4), vm));
            _mm256_storeu_pd(yr + j, e0);
            _mm256_storeu_pd(yr + j + 4, e1);
            s0 = _mm256_add_pd(s0, e0);
            s1 = _mm256_add_pd(s1, e1);
        }
        double sv[4];
        _mm256_storeu_pd(sv, _mm256_add_pd(s0, s1));
        lse[r] = m + log((sv[0] + sv[1]) + (sv[2] + sv[3]));
    }
}

/* The read yardstick: every byte loaded once (integer adds: vectorized at any level). */
static uint64_t read_words(const uint64_t *p, size_t n)
{
    uint64_t a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    for (; i < n; i++) a[0] += p[i];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

/* ------------------------------------------------------------ calls */
static void call(bench *b, const contender *c)
{
    const fl_kernel_table *t = c->t;
    const ptrdiff_t n = b->rows;
    switch (c->kind) {
    case K_LSE:
        if (b->f64) t->logsumexp_f64(b->x, b->lse, &b->vl, 0, n);
        else t->logsumexp_f32(b->x, b->lse, &b->vl, 0, n);
        break;
    case K_SOFTMAX:
    case K_LOG_SOFTMAX:
        if (b->f64) t->softmax_f64(b->x, b->out, &b->v, 0, n, c->kind == K_LOG_SOFTMAX);
        else t->softmax_f32(b->x, b->out, &b->v, 0, n, c->kind == K_LOG_SOFTMAX);
        break;
    case K_CE:
        b->sink += b->f64 ? t->cross_entropy_f64(b->x, NULL, NULL, NULL, &b->v, &b->fwd, 0, n)
                          : t->cross_entropy_f32(b->x, NULL, NULL, NULL, &b->v, &b->fwd, 0, n);
        break;
    case K_CE_GRAD:
        b->sink += b->f64 ? t->cross_entropy_f64(b->xg, NULL, b->xg, NULL, &b->v, &b->grad, 0, n)
                          : t->cross_entropy_f32(b->xg, NULL, b->xg, NULL, &b->v, &b->grad, 0, n);
        break;
    case K_REF:
        if (b->f64) ref_f64(b->x, b->out, n, b->cols, b->ref_lse);
        else ref_f32(b->x, b->out, n, b->cols, b->ref_lse);
        break;
    case K_READ:
        b->sink += (double)read_words(b->x, b->bytes / 8);
        break;
    case K_COPY:
        memcpy(b->out, b->x, b->bytes);
        break;
    }
}

/* Seconds per call over `calls` calls; in-place calls start from x. */
static double sample(bench *b, const contender *c, long calls)
{
    if (c->kind == K_CE_GRAD) memcpy(b->xg, b->x, b->bytes);
    double t0 = now();
    for (long i = 0; i < calls; i++) call(b, c);
    return (now() - t0) / (double)calls;
}

/* ------------------------------------------------------------ checks */
static double X(const bench *b, ptrdiff_t i) { return b->f64 ? ((double *)b->x)[i] : ((float *)b->x)[i]; }
static double OUT(const bench *b, const void *p, ptrdiff_t i) { return b->f64 ? ((const double *)p)[i] : ((const float *)p)[i]; }

static void expect(const bench *b, int ok, const char *what, int level, ptrdiff_t row,
                   double got, double want)
{
    if (ok) return;
    fprintf(stderr, "kernel_bench: WRONG OUTPUT, not timing it: %s (%s), %tdx%td %s, row %td:"
            " got %.9g, expected %.9g\n", what, level < 0 ? "avx2" : fl_isa_name(level),
            b->rows, b->cols, b->f64 ? "float64" : "float32", row, got, want);
    exit(3);
}

/* Every level's outputs (and the reference loop's) against a float64 libm loop: the
 * per-row values on all rows, the per-element ones on CHECK_ROWS rows spread out. */
static void check(bench *b, const contender *cs, int nc)
{
    const double tol = b->f64 ? 1e-10 : 1e-5;
    const ptrdiff_t C = b->cols, step = b->rows > CHECK_ROWS ? b->rows / CHECK_ROWS : 1;
    double *truth = malloc(sizeof(double) * (size_t)b->rows), ce_truth = 0;
    for (ptrdiff_t r = 0; r < b->rows; r++) {
        double m = -INFINITY, s = 0;
        for (ptrdiff_t j = 0; j < C; j++) m = fmax(m, X(b, r * C + j));
        for (ptrdiff_t j = 0; j < C; j++) s += exp(X(b, r * C + j) - m);
        truth[r] = m + log(s);
        ce_truth += truth[r] - X(b, r * C + b->target[r]);
    }
    for (int k = 0; k < nc; k++) {
        const contender *c = &cs[k];
        const char *name = kernel_names[c->kind];
        if (c->kind == K_READ || c->kind == K_COPY) continue;
        if (c->kind == K_CE_GRAD) memcpy(b->xg, b->x, b->bytes);
        b->sink = 0;
        call(b, c);
        if (c->kind == K_CE)
            expect(b, fabs(b->sink - ce_truth) <= tol * fabs(ce_truth), "ce_fwd loss sum",
                   c->level, -1, b->sink, ce_truth);
        for (ptrdiff_t r = 0; r < b->rows; r++) {
            const double L = truth[r];
            if (c->kind == K_LSE || c->kind == K_REF) {
                double lse = c->kind == K_REF ? b->ref_lse[r] : OUT(b, b->lse, r);
                expect(b, fabs(lse - L) <= tol * fabs(L), name, c->level, r, lse, L);
            }
            if (r % step) continue;
            double sum = 0;
            for (ptrdiff_t j = 0; j < C; j++) {
                const double x = X(b, r * C + j), p = exp(x - L), hot = j == b->target[r];
                double y;
                switch (c->kind) {
                case K_SOFTMAX:
                    y = OUT(b, b->out, r * C + j);
                    expect(b, fabs(y - p) <= tol * p, name, c->level, r, y, p);
                    sum += y;
                    break;
                case K_LOG_SOFTMAX:
                    y = OUT(b, b->out, r * C + j);
                    expect(b, fabs(y - (x - L)) <= tol * fmax(1, fabs(x - L)), name, c->level,
                           r, y, x - L);
                    break;
                case K_CE_GRAD:   /* (p - onehot) / rows */
                    y = OUT(b, b->xg, r * C + j) * (double)b->rows;
                    expect(b, fabs(y - (p - hot)) <= tol * (p + hot), name, c->level, r, y,
                           p - hot);
                    break;
                }
            }
            if (c->kind == K_SOFTMAX)
                expect(b, fabs(sum - 1) <= tol, "softmax_out row sum", c->level, r, sum, 1);
        }
    }
    b->sink = 0;
    free(truth);
}

/* ------------------------------------------------------------ one (shape, dtype) */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(void)   /* xorshift64*: [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-53;
}

static void *alloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (p == NULL) die("out of memory");
    memset(p, 0, bytes);   /* the pages are there before any timing */
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int kernels[K_NKERNELS], nkernels;
    int levels[FL_ISA_COUNT], nlevels;
    int rounds, have_ref;
    double min_s;
    char skipped[128];        /* requested levels this CPU lacks */
} options;

static void run_shape(const options *o, ptrdiff_t rows, ptrdiff_t cols, int f64)
{
    const char *dtype = f64 ? "float64" : "float32";
    bench *b = calloc(1, sizeof(bench));
    b->rows = rows;
    b->cols = cols;
    b->f64 = f64;
    b->es = f64 ? 8 : 4;
    b->bytes = (size_t)(rows * cols) * b->es;
    b->x = alloc(b->bytes);
    b->xg = alloc(b->bytes);
    b->out = alloc(b->bytes);
    b->lse = alloc((size_t)rows * b->es);
    b->ref_lse = alloc((size_t)rows * sizeof(double));
    b->target = alloc((size_t)rows * sizeof(int64_t));
    for (size_t i = 0; i < (size_t)(rows * cols); i++) {   /* logits: ~ N(0, 2^2) */
        double z = 2.0 * 1.7320508 * (uniform() + uniform() + uniform() + uniform() - 2.0);
        if (f64) ((double *)b->x)[i] = z;
        else ((float *)b->x)[i] = (float)z;
    }
    for (ptrdiff_t r = 0; r < rows; r++) b->target[r] = (int64_t)(uniform() * (double)cols);

    /* The views and arguments the extension builds for a C-contiguous (rows, cols)
     * array with axis=-1 (src/softmax.pxi, src/cross_entropy.pxi): (rows, cols, 1). */
    fl_view3 v = {.outer = rows, .n = cols, .inner = 1, .sa = {cols, 1, 1}, .so = {cols, 1, 1}};
    b->v = v;
    b->vl = v;
    b->vl.so[0] = 1, b->vl.so[1] = 0, b->vl.so[2] = 1;
    fl_ce_args a = {.target = b->target, .ts = {1, 1}, .ignore_index = -100,
                    .weight_sum = (double)cols, .grad_scale0 = 1.0, .want_loss = 1};
    b->fwd = a;
    b->grad = a;
    b->grad.grad_scale0 = 1.0 / (double)rows;

    contender cs[MAX_CONTENDERS];
    int nc = 0;
    for (int k = 0; k < o->nkernels; k++)
        for (int l = 0; l < o->nlevels; l++) {
            fl_isa_set(o->levels[l]);
            cs[nc++] = (contender){.kind = o->kernels[k], .level = o->levels[l], .t = fl_active};
        }
    if (o->have_ref) cs[nc++] = (contender){.kind = K_REF, .level = -1};
    if (b->bytes >= DRAM_BYTES) {
        cs[nc++] = (contender){.kind = K_READ, .level = -1};
        cs[nc++] = (contender){.kind = K_COPY, .level = -1};
    }
    fprintf(stderr, "kernel_bench: %tdx%td %s: checking, then %d contenders x %d rounds\n",
            rows, cols, dtype, nc, o->rounds);
    check(b, cs, nc);

    for (int k = 0; k < nc; k++) {   /* warm-up, then one timed call sets the calls per sample */
        sample(b, &cs[k], 1);
        double t = sample(b, &cs[k], 1);
        cs[k].calls = t >= o->min_s ? 1 : (long)ceil(o->min_s / (t > 1e-9 ? t : 1e-9));
    }
    for (int r = 0; r < o->rounds; r++)
        for (int k = 0; k < nc; k++) cs[k].s[r] = sample(b, &cs[k], cs[k].calls);

    const double elems = (double)rows * (double)cols;
    double med[MAX_CONTENDERS], spread[MAX_CONTENDERS], ref = 0;
    for (int k = 0; k < nc; k++) {
        double s[MAX_ROUNDS];
        memcpy(s, cs[k].s, sizeof(double) * (size_t)o->rounds);
        qsort(s, (size_t)o->rounds, sizeof(double), cmp_double);
        med[k] = o->rounds % 2 ? s[o->rounds / 2] : 0.5 * (s[o->rounds / 2 - 1] + s[o->rounds / 2]);
        spread[k] = 100.0 * (s[o->rounds - 1] - s[0]) / med[k];
        if (cs[k].kind == K_REF) ref = med[k];
    }
    char shape[64];
    snprintf(shape, sizeof shape, "%tdx%td", rows, cols);
    for (int k = 0; k < nc; k++) {
        const char *simd = cs[k].level >= 0 ? fl_isa_name(cs[k].level)
                           : cs[k].kind == K_REF ? "avx2" : "-";
        char ratio[32] = "-";
        if (ref > 0) snprintf(ratio, sizeof ratio, "%.2f", ref / med[k]);
        printf("%-12s %-8s %-16s %-9s %8.4f %8.3f %7s %8.1f %6ld\n", shape, dtype,
               kernel_names[cs[k].kind], simd, 1e9 * med[k] / elems, 1e-9 * elems / med[k],
               ratio, spread[k], cs[k].calls);
    }
    fflush(stdout);
    free(b->x), free(b->xg), free(b->out), free(b->lse), free(b->ref_lse), free(b->target);
    free(b);
}

/* ------------------------------------------------------------ main */
static void loadavg(const char *when)
{
    double l[3] = {-1, -1, -1};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3) l[0] = -1;
    if (f) fclose(f);
    if (l[0] >= 0) printf("# loadavg (%s): %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

static void header(const options *o, char **argv, int argc)
{
    char line[512], cpu[512] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            snprintf(cpu, sizeof cpu, "%s", p ? p + 2 : line);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    printf("# fastloss kernel harness (benchmarks/kernel_bench.c):");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n# cpu: %s\n# compiler: %s\n# date: %s\n", cpu, fl_build_compiler(), date);
    loadavg("start");
    printf("# 1 thread; fl_long_row_bytes %td; %d rounds; samples >= %.0f ms\n",
           fl_long_row_bytes, o->rounds, 1e3 * o->min_s);
    printf("# levels:");
    for (int l = 0; l < o->nlevels; l++) printf(" %s", fl_isa_name(o->levels[l]));
    if (o->skipped[0]) printf(" (skipped, not supported by this CPU:%s)", o->skipped);
    printf("\n# reference: %s\n", o->have_ref ? "avx2" : "skipped (no AVX2+FMA on this CPU)");
    printf("%-12s %-8s %-16s %-9s %8s %8s %7s %8s %6s\n", "shape", "dtype", "kernel",
           "simd", "ns/elem", "Gelem/s", "vs_ref", "spread%", "calls");
    fflush(stdout);
}

static int lookup(const char *name, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kernel_bench [--shapes RxC,...] [--dtypes float32,float64]\n"
            "                    [--simd baseline,avx2,avx512] [--kernels NAME,...]\n"
            "                    [--repeats ROUNDS] [--min-ms MS]\n"
            "kernels: logsumexp softmax_out log_softmax_out ce_fwd ce_grad_inplace\n");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *shapes = "64x16384,8x16384,2048x32000,512x128256";
    const char *dtypes = "float32,float64", *simd = "baseline,avx2,avx512";
    const char *kernels = "logsumexp,softmax_out,log_softmax_out,ce_fwd,ce_grad_inplace";
    options o = {.rounds = 9, .min_s = 0.020};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *val = argv[++i];
        if (!strcmp(a, "--shapes")) shapes = val;
        else if (!strcmp(a, "--dtypes")) dtypes = val;
        else if (!strcmp(a, "--simd")) simd = val;
        else if (!strcmp(a, "--kernels")) kernels = val;
        else if (!strcmp(a, "--repeats")) o.rounds = atoi(val);
        else if (!strcmp(a, "--min-ms")) o.min_s = 1e-3 * atof(val);
        else usage();
    }
    if (o.rounds < 1 || o.rounds > MAX_ROUNDS) die("--repeats must be in [1, 64]");

    /* What the extension does at import (src/kernels.pyx, _select_initial_long_row). */
    const char *lr = getenv("FASTLOSS_LONG_ROW_BYTES");
    fl_long_row_bytes = (lr && *lr) ? (ptrdiff_t)atoll(lr) : fl_long_row_default();

    char buf[1024], *tok, *save;
    snprintf(buf, sizeof buf, "%s", kernels);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = lookup(tok, kernel_names, K_NKERNELS);
        if (k < 0) usage();
        int dup = 0;
        for (int i = 0; i < o.nkernels; i++) dup |= o.kernels[i] == k;
        if (!dup) o.kernels[o.nkernels++] = k;
    }
    snprintf(buf, sizeof buf, "%s", simd);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int l = -1;
        for (int i = 0; i < FL_ISA_COUNT; i++)
            if (!strcmp(tok, fl_isa_name(i))) l = i;
        if (l < 0) usage();
        int dup = 0;
        for (int i = 0; i < o.nlevels; i++) dup |= o.levels[i] == l;
        if (dup) continue;
        if (fl_isa_set(l) != 0) {
            fprintf(stderr, "kernel_bench: SIMD level %s skipped: not supported by this CPU\n",
                    tok);
            snprintf(o.skipped + strlen(o.skipped), sizeof o.skipped - strlen(o.skipped),
                     " %s", tok);
            continue;
        }
        o.levels[o.nlevels++] = l;
    }
    __builtin_cpu_init();
    o.have_ref = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!o.have_ref) fprintf(stderr, "kernel_bench: no AVX2+FMA: reference loop skipped\n");
    header(&o, argv, argc);

    int f64s[2], nd = 0;
    snprintf(buf, sizeof buf, "%s", dtypes);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "float32")) f64s[nd++] = 0;
        else if (!strcmp(tok, "float64")) f64s[nd++] = 1;
        else usage();
        if (nd == 2) break;
    }
    snprintf(buf, sizeof buf, "%s", shapes);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long r, c;
        if (sscanf(tok, "%lldx%lld", &r, &c) != 2 || r < 1 || c < 16) usage();
        if (c % 16) die("the class count must be a multiple of 16 (the reference loop)");
        for (int d = 0; d < nd; d++) run_shape(&o, (ptrdiff_t)r, (ptrdiff_t)c, f64s[d]);
    }
    loadavg("end");
    return 0;
}
