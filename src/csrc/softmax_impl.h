/*
 * softmax_impl.h -- softmax, log_softmax, logsumexp and their backward passes.
 * A template: included once per element type with FL_T (float/double), FL_SUF,
 * FL_EXP and FL_LOG defined (see kernels_all.h).  Sums are always accumulated in
 * double, also for float data.
 *
 * Numerics: every row is shifted by its maximum before exp, so exp never overflows
 * and the largest term is exactly 1 (the sum is >= 1 and its log is well
 * conditioned).  The max ignores NaN (a > m is false), but a NaN element still
 * makes its exp, hence the row's sum and every output of the row, NaN: NaN stays in
 * its row.  -inf elements give exp(-inf) = 0, i.e. masked classes.  A row whose max
 * is infinite (all -inf, or a +inf entry) has no finite shift; softmax and
 * log_softmax then give NaN for the row (as PyTorch and SciPy do) and logsumexp
 * gives the max itself (or NaN if the row has a NaN).
 *
 * Three memory layouts, chosen per call:
 *   rows     inner == 1, or the class axis is the most contiguous one: each lane is
 *            a row of n elements with class stride sa[1].
 *            Two or three passes over the row; the row stays in L1/L2 between
 *            passes, so memory sees it once.  Long contiguous rows in the AVX-512
 *            and AVX2 builds: one read of the row, block by block ("rows read once" below),
 *            then the pass that writes the output.
 *   tiles    inner == 1, n <= FL_FLAT_MAX_N and packed rows: a loop along a row of
 *            10 never reaches its vector body, so blocks of rows are transposed
 *            into a small tile and processed by the columns kernels.
 *   columns  otherwise (class axis not last, or a transposed input): the contiguous
 *            direction runs across lanes, so blocks of FL_COL_BLOCK lanes are
 *            processed side by side, one class at a time.
 */

/* ------------------------------------------------------------------ rows */

/* row_max_f32, row_max_f64 */
static inline __attribute__((always_inline)) FL_T
FL_FN(row_max)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs)
{
#ifdef FL_ROW_MAX_VEC
    if (cs == 1) return FL_ROW_MAX_VEC(x, n);   /* fl_math_avx512.h, fl_math_avx2.h */
#endif
    FL_T m = -INFINITY;
#pragma omp simd reduction(max:m)
    for (ptrdiff_t j = 0; j < n; j++) {
        FL_T v = x[j * cs];
        m = v > m ? v : m;
    }
    return m;
}

/* row_has_nan_f32, row_has_nan_f64 */
static inline __attribute__((always_inline)) int
FL_FN(row_has_nan)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs)
{
    for (ptrdiff_t j = 0; j < n; j++)
        if (x[j * cs] != x[j * cs]) return 1;
    return 0;
}

/* Sums in double over float data, without halving the exp's vector width: a loop
 * that mixes float and double gets the double vector length (8 lanes of AVX-512
 * instead of 16), so the exponentials are computed by a float-only loop into an
 * L1-resident chunk and summed by a second loop over that chunk. */
#define FL_SUM_CHUNK 1024

/* sum_as_double_f32, sum_as_double_f64 */
static inline __attribute__((always_inline)) double
FL_FN(sum_as_double)(const FL_T *e, ptrdiff_t n)
{
#ifdef FL_SUM_AS_DOUBLE_VEC
    return FL_SUM_AS_DOUBLE_VEC(e, n);          /* float: fl_math_avx512.h, fl_math_avx2.h */
#endif
    double s = 0.0;
#pragma omp simd reduction(+:s)
    for (ptrdiff_t j = 0; j < n; j++)
        s += (double)e[j];
    return s;
}

/* e_j = exp(x_j - m) for a contiguous stretch of len elements (float-only, full
 * vector width).  pf: the same stretch of the next row, prefetched meanwhile in
 * bursts of FL_PF_BLOCK elements (see fl_prefetch_next), or NULL. */
/* exp_shifted_plain_f32, exp_shifted_plain_f64 */
static inline __attribute__((always_inline)) void
FL_FN(exp_shifted_plain)(const FL_T *x, FL_T m, FL_T *e, ptrdiff_t len)
{
#ifdef FL_EXP_SHIFTED_VEC
    FL_EXP_SHIFTED_VEC(x, m, e, len);   /* fl_math_avx512.h, fl_math_avx2.h */
#else
#pragma omp simd
    for (ptrdiff_t j = 0; j < len; j++) e[j] = FL_EXPS(x[j] - m);
#endif
}

/* exp_shifted_f32, exp_shifted_f64 */
static inline __attribute__((always_inline)) void
FL_FN(exp_shifted)(const FL_T *x, FL_T m, FL_T *e, ptrdiff_t len, const FL_T *pf)
{
    if (!pf) {
        FL_FN(exp_shifted_plain)(x, m, e, len);
        return;
    }
    for (ptrdiff_t b0 = 0; b0 < len; b0 += FL_PF_BLOCK) {
        const ptrdiff_t bl = len - b0 < FL_PF_BLOCK ? len - b0 : FL_PF_BLOCK;
        fl_prefetch_range(pf + b0, bl * (ptrdiff_t)sizeof(FL_T));
        FL_FN(exp_shifted_plain)(x + b0, m, e + b0, bl);
    }
}

/* Whether max_j x_j > m over a contiguous stretch (NaN ignored, as in row_max) */
/* max_exceeds_f32, max_exceeds_f64 */
static inline __attribute__((always_inline)) int
FL_FN(max_exceeds)(const FL_T *x, ptrdiff_t n, FL_T m)
{
#ifdef FL_MAX_EXCEEDS_VEC   /* fl_math_avx512.h, fl_math_avx2.h */
    return FL_MAX_EXCEEDS_VEC(x, n, m);
#else
    return FL_FN(row_max)(x, n, 1) > m;
#endif
}

/* e_j = exp(x_j - m) as exp_shifted; returns sum_j e_j (in double) */
/* exp_shifted_sum_f32, exp_shifted_sum_f64 */
static inline __attribute__((always_inline)) double
FL_FN(exp_shifted_sum)(const FL_T *x, FL_T m, FL_T *e, ptrdiff_t len, const FL_T *pf)
{
#ifdef FL_EXP_SHIFTED_SUM_VEC   /* double: one loop (fl_math_avx512.h, fl_math_avx2.h) */
    if (!pf)
        return FL_EXP_SHIFTED_SUM_VEC(x, m, e, len);
    double s = 0.0;
    for (ptrdiff_t b0 = 0; b0 < len; b0 += FL_PF_BLOCK) {
        const ptrdiff_t bl = len - b0 < FL_PF_BLOCK ? len - b0 : FL_PF_BLOCK;
        fl_prefetch_range(pf + b0, bl * (ptrdiff_t)sizeof(FL_T));
        s += FL_EXP_SHIFTED_SUM_VEC(x + b0, m, e + b0, bl);
    }
    return s;
#else
    FL_FN(exp_shifted)(x, m, e, len, pf);
    return FL_FN(sum_as_double)(e, len);
#endif
}

/* sum_j exp(x_j - m); pf: the next row to prefetch (see fl_prefetch_next) or NULL */
/* row_sumexp_f32, row_sumexp_f64 */
static inline __attribute__((always_inline)) double
FL_FN(row_sumexp)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs, FL_T m, const FL_T *pf)
{
    FL_T e[FL_SUM_CHUNK];
    double s = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_SUM_CHUNK) {
        ptrdiff_t len = n - j0 < FL_SUM_CHUNK ? n - j0 : FL_SUM_CHUNK;
        const FL_T *xc = x + j0 * cs;
        if (cs == 1) {
            s += FL_FN(exp_shifted_sum)(xc, m, e, len, pf ? pf + j0 : NULL);
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) e[j] = FL_EXPS(xc[j * cs] - m);
            s += FL_FN(sum_as_double)(e, len);
        }
    }
    return s;
}

/* y_j = exp(x_j - m); returns sum_j y_j.  pf as in row_sumexp. */
/* row_exp_store_f32, row_exp_store_f64 */
static inline __attribute__((always_inline)) double
FL_FN(row_exp_store)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs, FL_T m, FL_T *y, ptrdiff_t ys,
                     const FL_T *pf)
{
    double s = 0.0;
    if (ys != 1) {   /* strided output (rare): one plain loop */
        for (ptrdiff_t j = 0; j < n; j++) {
            FL_T e = FL_EXPS(x[j * cs] - m);
            y[j * ys] = e;
            s += (double)e;
        }
        return s;
    }
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_SUM_CHUNK) {
        ptrdiff_t len = n - j0 < FL_SUM_CHUNK ? n - j0 : FL_SUM_CHUNK;
        const FL_T *xc = x + j0 * cs;
        FL_T *yc = y + j0;
        if (cs == 1) {
            s += FL_FN(exp_shifted_sum)(xc, m, yc, len, pf ? pf + j0 : NULL);
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) yc[j] = FL_EXPS(xc[j * cs] - m);
            s += FL_FN(sum_as_double)(yc, len);
        }
    }
    return s;
}

/* ------------------------------------------------------------------ the log1p form */

/* A log of a sum of exponentials keeps its small terms.  With m = max_j x_j, the max's
 * own term exp(0) is exactly 1 and s = 1 + t: log(s) rounds away the part of t below
 * half an ulp of 1 (logsumexp([0, -40]) would be 0, not 4.2e-18) and leaves t's last
 * bits inexact while t is small.  So where s < 1 + FL_LOG1P_BELOW, t is summed again
 * without the 1 and log s = log1p(t) (the log1p form).  Everywhere else log(s) is as
 * accurate, and the check is one compare per row; a row that takes the second sum
 * pays one more pass over the row, in cache (an exp pass, or a plain sum where the
 * exponentials are stored).
 *   float64: below 2^-2.  log(s) has an absolute error of a few ulps of 1 from s's
 *            rounding, i.e. about 2^-52 / log(s) relative: at t >= 2^-2 that is within
 *            1e-15 (the mpmath tests of tests/test_log1p_form.py put rows on both
 *            sides).  Rows of 10 standard-normal logits take the second sum 1 time in
 *            1000; rows whose max has a probability above 0.8, always.
 *   float32: below 2^-16.  s is summed in double, so log(s) keeps t to about
 *            2^-53 / t relative: at t >= 2^-16 far below float32's half ulp, even with
 *            the rounding errors of a long row's sum.  Only rows whose max has a
 *            probability above 1 - 2^-16 take the second sum. */
#ifndef FL_LOG1P_BELOW
#define FL_LOG1P_BELOW (sizeof(FL_T) == sizeof(float) ? 0x1p-16 : 0x1p-2)
#endif
/* The second sum runs in blocks of FL_OTHERS_BLOCK elements (an L1 chunk of
 * exponentials), the blocks' sums compensated (Neumaier): t keeps a few ulps where a
 * plain running sum of C similar terms drifts by about sqrt(C) ulps (1e-14 relative
 * at C = 40000). */
#ifndef FL_OTHERS_BLOCK
#define FL_OTHERS_BLOCK 256
#endif

/* *t += b, the rounding error of the addition into *lost (Neumaier) */
static inline __attribute__((always_inline)) void
FL_FN(add_compensated)(double *t, double *lost, double b)
{
    const double u = *t + b;
    *lost += fabs(*t) >= fabs(b) ? (*t - u) + b : (b - u) + *t;
    *t = u;
}

/* t = s - 1 with no 1 added in: sum_j v_j with v_j = exp(x_j - m) (stored == 0, x the
 * row, m its max) or v_j = x_j (stored == 1: x holds the row's exponentials relative to
 * its max), leaving out the terms equal to 1 and adding back all of them but one (the
 * max's ties).  A term that rounded to 1 without being the max counts as one of them:
 * the same value the row's sum s added.  Each block: the exponentials into an L1
 * chunk (the SIMD builds' exp where the row is contiguous), the terms equal to 1
 * taken out and counted, and the rest summed in double (sum_as_double): every loop
 * at one element width, so each runs at its full vector width. */
/* row_others_f32, row_others_f64 */
static __attribute__((noinline)) double
FL_FN(row_others)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs, FL_T m, int stored)
{
    FL_T chunk[FL_OTHERS_BLOCK], rest[FL_OTHERS_BLOCK];
    double t = 0.0, lost = 0.0, ones = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_OTHERS_BLOCK) {
        const ptrdiff_t len = n - j0 < FL_OTHERS_BLOCK ? n - j0 : FL_OTHERS_BLOCK;
        const FL_T *v = chunk;
        if (stored && cs == 1) {
            v = x + j0;
        } else if (stored) {
            for (ptrdiff_t j = 0; j < len; j++) chunk[j] = x[(j0 + j) * cs];
        } else if (cs == 1) {
            FL_FN(exp_shifted_plain)(x + j0, m, chunk, len);
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) chunk[j] = FL_EXPS(x[(j0 + j) * cs] - m);
        }
        FL_T block_ones = 0;   /* exact: at most FL_OTHERS_BLOCK */
#pragma omp simd reduction(+:block_ones)
        for (ptrdiff_t j = 0; j < len; j++) {
            const int one = v[j] == (FL_T)1;
            rest[j] = one ? (FL_T)0 : v[j];
            block_ones += one ? (FL_T)1 : (FL_T)0;
        }
        ones += (double)block_ones;
        FL_FN(add_compensated)(&t, &lost, FL_FN(sum_as_double)(rest, len));
    }
    return t + (lost + (ones - 1.0));
}

/* log s of a row with its sum s = sum_j exp(x_j - m), in the log1p form where s is near
 * 1: x, cs, m, stored as in row_others.  A NaN s (a NaN in the row, no finite max)
 * stays NaN. */
/* log_row_sum_f32, log_row_sum_f64 */
static inline __attribute__((always_inline)) double
FL_FN(log_row_sum)(double s, const FL_T *x, ptrdiff_t n, ptrdiff_t cs, FL_T m, int stored)
{
    if (__builtin_expect(s - 1.0 < FL_LOG1P_BELOW, 0))
        return log1p(FL_FN(row_others)(x, n, cs, m, stored));
    return log(s);
}

/* Rows dominated by their max come in runs (a trained model's confident predictions),
 * and each pays for the second sum: an exp pass more than a plain row.  So the rows
 * loops of log_softmax, logsumexp and the cross-entropy forward carry `dominated`,
 * whether the previous row took the second sum.  While it is set, a row is summed
 * without its max's 1 from the start (row_others after the max pass: one exp pass, the
 * log1p form for every such row, as accurate as log(s) elsewhere) instead of by the
 * one-read or plain sum and then again.  Rows that are not dominated never see the
 * difference beyond one compare; a mispredicted row is still exact. */
/* log_others_row_f32, log_others_row_f64: log s of a row with max m, t = s - 1 summed
 * without the 1; *dominated = whether it took the log1p form's range */
static inline __attribute__((always_inline)) double
FL_FN(log_others_row)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs, FL_T m, int *dominated)
{
    const double t = FL_FN(row_others)(x, n, cs, m, 0);
    *dominated = t < FL_LOG1P_BELOW;
    return log1p(t);
}

/* ------------------------------------------------------------------ rows read once */

/* Long contiguous rows in the SIMD builds are read from memory once (an online
 * normalizer, Milakov & Gimelshein 2018): the row is cut into blocks of
 * FL_ONLINE_BLOCK elements; each block's max is taken as it comes from memory and its
 * exponentials right after, from L1, relative to the running max m.  When a block
 * raises m, the sum so far is rescaled by exp(m_old - m_new) and the exponentials
 * already stored (softmax, the cross-entropy gradient) keep the max of their stretch,
 * to be brought to the final m by one factor per stretch in the pass that writes the
 * output.  With two passes, the first streams the row from DRAM with nothing to
 * overlap it and the second computes with DRAM idle; block by block, the exp of one
 * block overlaps the loads of the next.  Used by softmax, log_softmax, logsumexp and
 * the cross-entropy (cross_entropy_impl.h).  It gains most where the row's read is the
 * whole cost (logsumexp, the cross-entropy forward); a softmax whose output must also be
 * written is bound by those writes and gains little. */
#ifndef FL_ONLINE_COMMON_DONE
#define FL_ONLINE_COMMON_DONE
/* Blocks of 128 elements (512 bytes of float): a block must be in L1 for its exp; a
 * smaller one pays the per-block reductions more often, a larger one falls out of L1
 * (128 was the fastest of 64 to 2048 on long float32 rows).  The hand-written runs
 * (fl_online_run_avx512_f32, fl_online_run_avx2_f32) assume 128. */
#define FL_ONLINE_BLOCK 128
#ifndef FL_ONLINE_MIN_ROW_BYTES   /* rows this long or longer; -D to compare the two */
#define FL_ONLINE_MIN_ROW_BYTES 16384 /* measured only on rows of 128 KiB and more */
#endif
/* The AVX-512 and AVX2 builds read rows once (kernels_all.h sets FL_ONLINE_ROWS), with
 * their hand-written blocks (fl_math_avx512.h, fl_math_avx2.h).  The baseline build keeps
 * the two passes: with gcc's `omp simd` loops for the block's max and exp, one read is
 * slower than two passes (one dependent reduction chain per block). */
#ifndef FL_ONLINE_ROWS
#define FL_ONLINE_ROWS 0
#endif
#define FL_ONLINE_MAX_SEGS 16
/* Each block prefetches (into L1) the block this many bytes ahead: the hardware
 * prefetchers alone left the core waiting on DRAM between blocks.  1.5-3 KiB ahead
 * gains on long rows, 4 KiB ahead loses, and prefetcht2 (into L2 only) loses even to
 * no prefetch.  -DFL_ONLINE_PREFETCH_BYTES=N to compare. */
#ifndef FL_ONLINE_PREFETCH_BYTES
#define FL_ONLINE_PREFETCH_BYTES 2048
#endif

/* Where the stored exponentials of a row change their reference: e_j = exp(x_j - m_k)
 * for start[k] <= j < start[k + 1] (the last segment runs to the row's end). */
typedef struct {
    ptrdiff_t start[FL_ONLINE_MAX_SEGS];
    double m[FL_ONLINE_MAX_SEGS];
    int count;
} fl_online_segs;
#endif /* FL_ONLINE_COMMON_DONE */

/* The state of a row being read once: the running max, the sum relative to it, and
 * whether a NaN went by while the max was still -inf. */
typedef struct {
    FL_T m;
    double s;
    int nan_skipped;
} FL_FN(online_row);   /* online_row_f32, online_row_f64 */

/* online_begin_f32, online_begin_f64 */
static inline __attribute__((always_inline)) void
FL_FN(online_begin)(FL_FN(online_row) *st, const FL_T *g, fl_online_segs *seg)
{
    st->m = -INFINITY;
    st->s = 0.0;
    st->nan_skipped = 0;
    if (g) {
        seg->start[0] = 0;
        seg->m[0] = -INFINITY;
        seg->count = 1;
    }
}

/* Blocks j0 .. j1 of a contiguous row x of n elements (j0 a multiple of
 * FL_ONLINE_BLOCK, j1 one too or n), read once: block by block, the block's max; when
 * it raises the running max m, the sum so far is rescaled by exp(m_old - m_new); then
 * the block's exponentials relative to m while the block is in L1.  With g (which may
 * be x), e_j = exp(x_j - m) with the running m of its block is stored to g and seg
 * records the m of each stretch.
 * Past FL_ONLINE_MAX_SEGS raises (a row sorted upwards), the rest of the row's max is
 * taken at once, the stored stretch is brought to it, and no more raises can come.
 * NaN and -inf as the two passes give them: while m is still -inf (blocks of only -inf
 * and NaN) a block adds nothing and stores zeros, but a NaN in it is remembered
 * (online_end turns it into s = NaN; a NaN elsewhere propagates through the exp).
 * With pg, the previous row's stored exponentials (a row of n too) are multiplied by
 * pf at the same positions, block by block (see pending_scale). */
/* online_blocks_f32, online_blocks_f64 */
static inline __attribute__((always_inline)) void
FL_FN(online_blocks)(const FL_T *x, FL_T *g, ptrdiff_t n, ptrdiff_t j0, ptrdiff_t j1,
                     FL_FN(online_row) *st, fl_online_segs *seg, FL_T *pg, FL_T pf)
{
    FL_T chunk[FL_ONLINE_BLOCK];
    FL_T m = st->m;
    double s = st->s;
    int nan_skipped = st->nan_skipped;
    /* blocks from the row's start, not from a 64-byte boundary: the result depends on
     * where the raises fall, and must not depend on the array's address */
    for (; j0 < j1; j0 += FL_ONLINE_BLOCK) {
#ifdef FL_ONLINE_RUN_VEC   /* float: the common case (fl_math_avx512.h, fl_math_avx2.h) */
        if (m != -INFINITY) {
            const ptrdiff_t done = FL_ONLINE_BLOCK * FL_ONLINE_RUN_VEC(
                x + j0, g ? g + j0 : NULL, pg ? pg + j0 : NULL, pf,
                ((j1 < n ? j1 : n) - j0) / FL_ONLINE_BLOCK, m, &s, FL_ONLINE_PREFETCH_BYTES);
            j0 += done;
            if (j0 >= j1) break;
        }
#endif
        const ptrdiff_t len = n - j0 < FL_ONLINE_BLOCK ? n - j0 : FL_ONLINE_BLOCK;
        /* the block FL_ONLINE_PREFETCH_BYTES ahead (past the row's end: the next row's
         * start; a prefetch never faults) */
        for (ptrdiff_t k = 0; k < FL_ONLINE_BLOCK * (ptrdiff_t)sizeof(FL_T); k += 64)
            __builtin_prefetch((const char *)(x + j0) + FL_ONLINE_PREFETCH_BYTES + k, 0, 3);
        if (pg) {
            FL_T *p = pg + j0;
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) p[j] *= pf;
        }
        const int raises = FL_FN(max_exceeds)(x + j0, len, m);
        if (__builtin_expect(raises, 0)) {
            FL_T mn = FL_FN(row_max)(x + j0, len, 1);   /* again, from L1 */
            if (g && seg->count == FL_ONLINE_MAX_SEGS) {   /* the last raise: see above */
                const FL_T mr = FL_FN(row_max)(x + j0, n - j0, 1);
                mn = mr > mn ? mr : mn;
                for (int k = 0; k < seg->count; k++) {
                    const ptrdiff_t e = k + 1 < seg->count ? seg->start[k + 1] : j0;
                    const FL_T f = (FL_T)exp(seg->m[k] - (double)mn);
#pragma omp simd
                    for (ptrdiff_t j = seg->start[k]; j < e; j++) g[j] *= f;
                }
                seg->count = 1;
                seg->m[0] = (double)mn;
            } else if (g) {
                if (seg->start[seg->count - 1] < j0) seg->start[seg->count++] = j0;
                seg->m[seg->count - 1] = (double)mn;
            }
            s *= exp((double)m - (double)mn);   /* 0 while m is -inf */
            m = mn;
        }
        if (__builtin_expect(m == -INFINITY, 0)) {
            nan_skipped |= FL_FN(row_has_nan)(x + j0, len, 1);
            if (g)
                for (ptrdiff_t j = j0; j < j0 + len; j++) g[j] = (FL_T)0;
            continue;
        }
        s += FL_FN(exp_shifted_sum)(x + j0, m, g ? g + j0 : chunk, len, NULL);
    }
    st->m = m;
    st->s = s;
    st->nan_skipped = nan_skipped;
}

/* The finished row: s = sum_j exp(x_j - m), and m = max_j x_j in *m_out; s = NaN for a
 * row with no finite max, or with a NaN read while the max was -inf. */
/* online_end_f32, online_end_f64 */
static inline __attribute__((always_inline)) double
FL_FN(online_end)(const FL_FN(online_row) *st, FL_T *m_out)
{
    *m_out = st->m;
    return st->m == -INFINITY || st->nan_skipped ? (double)NAN : st->s;
}

/* log s of a row read once with its exponentials stored to g (row_online_store, before
 * any pending scaling): log_row_sum over its stretches.  Only the last stretch is
 * relative to the final max m; the earlier ones hold elements below it, every one a
 * term of t, brought to m by their stretch's factor. */
/* online_log_sum_f32, online_log_sum_f64 */
static inline __attribute__((always_inline)) double
FL_FN(online_log_sum)(double s, const FL_T *g, ptrdiff_t n, const fl_online_segs *seg, FL_T m)
{
    if (__builtin_expect(!(s - 1.0 < FL_LOG1P_BELOW), 1))
        return log(s);
    const int last = seg->count - 1;
    double t = FL_FN(row_others)(g + seg->start[last], n - seg->start[last], 1, m, 1);
    for (int k = 0; k < last; k++)
        t += exp(seg->m[k] - (double)m)
             * FL_FN(sum_as_double)(g + seg->start[k], seg->start[k + 1] - seg->start[k]);
    return log1p(t);
}

/* A row read once whose stored exponentials still wait for their factors: g_j *= f[k]
 * for the j of stretch k (seg), then g[fix_j] = fix_v (the cross-entropy gradient's
 * target entry; fix_j < 0: none).  In a pass of its own after the row's read, that
 * pass waits on L2 with nothing to overlap it; so a rows loop hands it to the next
 * row's read (row_online_store), which scales it block by block while its exp runs,
 * and finishes the last row with pending_finish.  (Scaling a chunk of 1024 at a time
 * between the read's chunks hides less of it; prefetching the pending row's lines
 * made it slower.)  n == 0: none. */
typedef struct {
    FL_T *g;
    ptrdiff_t n, pos;    /* scaled up to pos */
    int k;               /* the stretch of pos */
    fl_online_segs seg;
    FL_T f[FL_ONLINE_MAX_SEGS];
    ptrdiff_t fix_j;
    FL_T fix_v;
} FL_FN(pending_scale);   /* pending_scale_f32, pending_scale_f64 */

/* The pending row from pos up to where its stretch ends (at most upto). */
/* pending_run_end_f32, pending_run_end_f64 */
static inline ptrdiff_t
FL_FN(pending_run_end)(FL_FN(pending_scale) *p, ptrdiff_t upto)
{
    while (p->k + 1 < p->seg.count && p->seg.start[p->k + 1] <= p->pos) p->k++;
    const ptrdiff_t e = p->k + 1 < p->seg.count ? p->seg.start[p->k + 1] : p->n;
    return e < upto ? e : upto;
}

/* The pending row scaled up to e; once all of it is, its fixed entry. */
/* pending_advance_f32, pending_advance_f64 */
static inline void
FL_FN(pending_advance)(FL_FN(pending_scale) *p, ptrdiff_t e)
{
    p->pos = e;
    if (e == p->n && p->fix_j >= 0) p->g[p->fix_j] = p->fix_v;
}

/* The rest of the pending row, on its own. */
/* pending_finish_f32, pending_finish_f64 */
static inline void
FL_FN(pending_finish)(FL_FN(pending_scale) *p)
{
    while (p->pos < p->n) {
        const ptrdiff_t e = FL_FN(pending_run_end)(p, p->n);
        FL_T *g = p->g;
        const FL_T f = p->f[p->k];
#pragma omp simd
        for (ptrdiff_t j = p->pos; j < e; j++) g[j] *= f;
        FL_FN(pending_advance)(p, e);
    }
}

/* A row just read once becomes the pending one: its stored exponentials in g, their
 * stretches in seg, factor f[k] = c exp(m_k - m) / d for stretch k (softmax: c = 1,
 * d = s, online_factor's bits).  Returns its e_j at j = y brought to the final m,
 * exp(x_y - m) (y < 0: 0), read before any scaling. */
/* pending_begin_f32, pending_begin_f64 */
static inline double
FL_FN(pending_begin)(FL_FN(pending_scale) *p, FL_T *g, ptrdiff_t n, const fl_online_segs *seg,
                     FL_T m, double c, double d, ptrdiff_t y)
{
    double ey = 0.0;
    p->g = g;
    p->n = n;
    p->pos = 0;
    p->k = 0;
    p->seg = *seg;
    p->fix_j = -1;
    for (int k = 0; k < seg->count; k++) {
        const ptrdiff_t b = seg->start[k], e = k + 1 < seg->count ? seg->start[k + 1] : n;
        const double rescale = exp(seg->m[k] - (double)m);
        if (y >= b && y < e) ey = (double)g[y] * rescale;
        p->f[k] = (FL_T)(c * rescale / d);
    }
    return ey;
}

/* A whole row read once (see online_blocks), as a function of its own, without
 * (row_online_sum) and with (row_online_store) the stored exponentials: returns s, with
 * m in *m_out, and *xy = x[y] (y < 0: none).  Inlined into the cross-entropy's lanes
 * (one large function holding every mode), the block loop kept the running max and
 * sum on the stack; a function of its own keeps them in registers (one call per row
 * costs nothing measurable). */
/* row_online_sum_f32, row_online_sum_f64 */
static __attribute__((noinline)) double
FL_FN(row_online_sum)(const FL_T *x, ptrdiff_t n, ptrdiff_t y, double *xy, FL_T *m_out)
{
    FL_FN(online_row) st;
    FL_FN(online_begin)(&st, NULL, NULL);
    FL_FN(online_blocks)(x, NULL, n, 0, n, &st, NULL, NULL, (FL_T)0);
    if (y >= 0) *xy = (double)x[y];   /* in L2 by now */
    return FL_FN(online_end)(&st, m_out);
}

/* With pend (may be NULL), the pending row is scaled alongside when it has n elements
 * too, else finished first. */
/* row_online_store_f32, row_online_store_f64 */
static __attribute__((noinline)) double
FL_FN(row_online_store)(const FL_T *x, FL_T *g, ptrdiff_t n, ptrdiff_t y, double *xy,
                        FL_T *m_out, fl_online_segs *seg, FL_FN(pending_scale) *pend)
{
    FL_FN(online_row) st;
    FL_FN(online_begin)(&st, g, seg);
    if (y >= 0) *xy = (double)x[y];   /* before g (which may be x) overwrites it */
    if (pend && (pend->n != n || pend->pos != 0))
        FL_FN(pending_finish)(pend);
    for (ptrdiff_t j0 = 0, j1; j0 < n; j0 = j1) {   /* one call per stretch of pend */
        const int along = pend && pend->pos < pend->n;
        j1 = along ? FL_FN(pending_run_end)(pend, n) : n;
        FL_FN(online_blocks)(x, g, n, j0, j1, &st, seg, along ? pend->g : NULL,
                             along ? pend->f[pend->k] : (FL_T)0);
        if (along)
            FL_FN(pending_advance)(pend, j1);
    }
    return FL_FN(online_end)(&st, m_out);
}

/* Whether a contiguous row of n elements is read once (see above). */
/* online_row_fits_f32, online_row_fits_f64 */
static inline int FL_FN(online_row_fits)(ptrdiff_t n)
{
    return FL_ONLINE_ROWS && n * (ptrdiff_t)sizeof(FL_T) >= FL_ONLINE_MIN_ROW_BYTES;
}

/* The softmax factor of stretch k of a row read once with its exponentials stored:
 * y_j = e_j * exp(m_k - m) / s.  One formula for the streamed and the plain output,
 * so that the two give the same bits. */
/* online_factor_f32, online_factor_f64 */
static inline __attribute__((always_inline)) FL_T
FL_FN(online_factor)(const fl_online_segs *seg, int k, FL_T m, double s)
{
    return (FL_T)(exp(seg->m[k] - (double)m) / s);
}

/* softmax / log_softmax of a contiguous row read once, y contiguous (may be x).  With
 * pend, softmax leaves its row pending (pending_scale) for the next row's read. */
/* row_softmax_online_f32, row_softmax_online_f64 */
static inline __attribute__((always_inline)) void
FL_FN(row_softmax_online)(const FL_T *x, FL_T *y, ptrdiff_t n, int log_mode,
                          FL_FN(pending_scale) *pend, int *dominated)
{
    fl_online_segs seg;
    FL_T m;
    if (log_mode) {   /* y = (x - m) - log s, x read again from L2 */
        /* the exponentials go to y when it is another row, only to fetch its lines for
         * writing while the arithmetic runs (see row_softmax) */
        const double s = y != x ? FL_FN(row_online_store)(x, y, n, -1, NULL, &m, &seg, NULL)
                                : FL_FN(row_online_sum)(x, n, -1, NULL, &m);
        *dominated = s - 1.0 < FL_LOG1P_BELOW;
        const FL_T ls = (FL_T)FL_FN(log_row_sum)(s, x, n, 1, m, 0);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            y[j] = (x[j] - m) - ls;
        return;
    }
    FL_FN(pending_scale) own;
    own.n = 0;
    const double s = FL_FN(row_online_store)(x, y, n, -1, NULL, &m, &seg, pend);
    if (!pend)
        pend = &own;
    FL_FN(pending_begin)(pend, y, n, &seg, m, 1.0, s, -1);
    if (pend == &own)
        FL_FN(pending_finish)(&own);
}

/* row_softmax_f32, row_softmax_f64 */
static inline __attribute__((always_inline)) void
FL_FN(row_softmax)(const FL_T *x, ptrdiff_t cs, FL_T *y, ptrdiff_t ys, ptrdiff_t n, int log_mode,
                   const FL_T *pf, FL_FN(pending_scale) *pend, int *dominated)
{
    if (cs == 1 && ys == 1 && !(log_mode && *dominated) && FL_FN(online_row_fits)(n)) {
        FL_FN(row_softmax_online)(x, y, n, log_mode, pend, dominated);
        return;
    }
    FL_T m = FL_FN(row_max)(x, n, cs);
    if (log_mode && *dominated) {   /* see log_others_row */
        const FL_T ls = (FL_T)FL_FN(log_others_row)(x, n, cs, m, dominated);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            y[j * ys] = (x[j * cs] - m) - ls;
    } else if (log_mode) {
        /* y = (x - m) - log(sum): subtracting m first keeps the result exact for the
         * largest entries (x - m == 0), where x - (m + log s) would lose them.
         * The exponentials go to y itself when y is a separate contiguous row: its
         * cache lines are then fetched for writing during the exp pass, where the
         * misses hide behind the arithmetic, instead of stalling the light final pass. */
        const double s = (ys == 1 && y != x) ? FL_FN(row_exp_store)(x, n, cs, m, y, 1, pf)
                                             : FL_FN(row_sumexp)(x, n, cs, m, pf);
        *dominated = s - 1.0 < FL_LOG1P_BELOW;
        const FL_T ls = (FL_T)FL_FN(log_row_sum)(s, x, n, cs, m, 0);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            y[j * ys] = (x[j * cs] - m) - ls;
    } else {
        FL_T inv = (FL_T)(1.0 / FL_FN(row_exp_store)(x, n, cs, m, y, ys, pf));
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            y[j * ys] *= inv;
    }
}


/* One piece [b, e) of a finished row's output, from src: y = src * k (softmax: src is
 * the row's exponentials, k = 1 / s) or y = (src - m) - k (log_softmax: src is x,
 * k = log s).  Streamed when y + b is on a line boundary, plain stores otherwise. */
/* stream_piece_f32, stream_piece_f64 */
static inline __attribute__((always_inline)) void
FL_FN(stream_piece)(FL_T *y, const FL_T *src, ptrdiff_t b, ptrdiff_t e, FL_T m, FL_T k,
                    int log_mode, FL_T *buf)
{
    const ptrdiff_t len = e - b;
    const FL_T *sc = src + b;
#ifdef FL_STREAM_SCALE_VEC
    if (!((uintptr_t)(y + b) & 63)) {          /* fl_math_avx512.h, fl_math_avx2.h */
        FL_STREAM_SCALE_VEC(y + b, sc, len, m, k, log_mode);
        return;
    }
#endif
    if (log_mode) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < len; j++) buf[j] = (sc[j] - m) - k;
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < len; j++) buf[j] = sc[j] * k;
    }
    if ((uintptr_t)(y + b) & 63)
        memcpy(y + b, buf, (size_t)len * sizeof(FL_T));
    else
        fl_stream_store(y + b, buf, len * (ptrdiff_t)sizeof(FL_T));
}

/* The row whose output rows_softmax_stream is writing, chunk by chunk, while the next
 * row computes: its source (softmax: its exponentials in scratch; log_softmax: x), its
 * max, and k per stretch (softmax: online_factor, or 1 / s for a row read in two
 * passes, one stretch; log_softmax: log s, one stretch). */
typedef struct {
    const FL_T *src;
    FL_T *y;
    FL_T m;
    fl_online_segs seg;
    FL_T k[FL_ONLINE_MAX_SEGS];
    ptrdiff_t pos, head;   /* written up to pos; the first piece ends at head */
} FL_FN(pending_row);   /* pending_row_f32, pending_row_f64 */

/* The pending row's output up to position `upto` (n: the rest), a piece of at most
 * FL_SUM_CHUNK at a time.  A piece is cut where a stretch ends; a cut off a line
 * boundary leaves by plain stores up to the next boundary. */
/* pending_write_f32, pending_write_f64 */
static inline __attribute__((always_inline)) void
FL_FN(pending_write)(FL_FN(pending_row) *p, ptrdiff_t upto, ptrdiff_t n, int log_mode,
                     FL_T *buf)
{
    while (p->pos < n && p->pos < upto) {
        const ptrdiff_t e = p->pos == 0 && p->head ? p->head
                          : (n - p->pos < FL_SUM_CHUNK ? n : p->pos + FL_SUM_CHUNK);
        for (int k = 0; k < p->seg.count; k++) {
            const ptrdiff_t sb = p->seg.start[k] > p->pos ? p->seg.start[k] : p->pos;
            const ptrdiff_t se = k + 1 < p->seg.count && p->seg.start[k + 1] < e
                               ? p->seg.start[k + 1] : e;
            if (sb >= se)
                continue;
            const ptrdiff_t h = sb == p->pos ? sb
                              : sb + fl_head_to_line(p->y + sb, sizeof(FL_T), se - sb);
            if (h > sb)
                FL_FN(stream_piece)(p->y, p->src, sb, h, p->m, p->k[k], log_mode, buf);
            if (se > h)
                FL_FN(stream_piece)(p->y, p->src, h, se, p->m, p->k[k], log_mode, buf);
        }
        p->pos = e;
    }
}

/* softmax / log_softmax of nrows contiguous rows (row r at x + r * xstride) whose
 * output is streamed (fl_stream_output): y is written once, by streaming stores, and
 * never read back.  Software-pipelined: while row r's exp pass runs, row r - 1's
 * output leaves chunk by chunk, so the writes overlap the computation (written after
 * each row, they left the core waiting on the stores).  softmax keeps the
 * exponentials of rows r - 1 and r in the two halves of scratch (2n elements, L2/L3-
 * resident); log_softmax recomputes (x - m) - log s from row r - 1 of x, still in
 * cache.  Rows long enough are read once (online_blocks; the block prefetch runs into
 * the next row); the others in two passes, with row r + 1 prefetched during row r's
 * exp pass (fl_prefetch_next). */
/* rows_softmax_stream_f32, rows_softmax_stream_f64 */
static void
FL_FN(rows_softmax_stream)(const FL_T *x, ptrdiff_t xstride, FL_T *y, ptrdiff_t ystride,
                           ptrdiff_t n, ptrdiff_t nrows, int log_mode, FL_T *scratch)
{
    FL_T buf[FL_SUM_CHUNK] __attribute__((aligned(64)));
    FL_T chunk[FL_SUM_CHUNK];
    const int once = FL_FN(online_row_fits)(n);
    FL_FN(pending_row) p = {0};
    p.pos = n;   /* none yet */
    int dominated = 0;   /* log_mode: see log_others_row */
    for (ptrdiff_t r = 0; r < nrows; r++) {
        const FL_T *xr = x + r * xstride;
        FL_T *er = log_mode ? NULL : scratch + (r & 1) * n;
        if (dominated) {   /* the previous row's output first, then this row's two passes */
            FL_FN(pending_write)(&p, n, n, log_mode, buf);
            p.m = FL_FN(row_max)(xr, n, 1);
            p.k[0] = (FL_T)FL_FN(log_others_row)(xr, n, 1, p.m, &dominated);
            p.src = xr;
            p.y = y + r * ystride;
            p.seg.start[0] = 0;
            p.seg.count = 1;
            p.pos = 0;
            p.head = fl_head_to_line(p.y, sizeof(FL_T), n);
            continue;
        }
        const FL_T *pf = r + 1 < nrows && !once ? xr + xstride : NULL;
        FL_FN(online_row) st;
        fl_online_segs seg;
        FL_T m = 0;
        double s = 0.0;
        FL_FN(online_begin)(&st, er, &seg);
        if (!once)
            m = FL_FN(row_max)(xr, n, 1);
        for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_SUM_CHUNK) {
            const ptrdiff_t len = n - j0 < FL_SUM_CHUNK ? n - j0 : FL_SUM_CHUNK;
            if (once)
                FL_FN(online_blocks)(xr, er, n, j0, j0 + len, &st, &seg, NULL, (FL_T)0);
            else
                s += FL_FN(exp_shifted_sum)(xr + j0, m, log_mode ? chunk : er + j0, len,
                                            pf ? pf + j0 : NULL);
            FL_FN(pending_write)(&p, j0 + len, n, log_mode, buf);   /* up to here */
        }
        if (once)
            s = FL_FN(online_end)(&st, &m);
        p.src = log_mode ? xr : er;
        p.y = y + r * ystride;
        p.m = m;
        if (once && !log_mode) {
            p.seg = seg;
            for (int k = 0; k < seg.count; k++) p.k[k] = FL_FN(online_factor)(&seg, k, m, s);
        } else {
            p.seg.start[0] = 0;
            p.seg.count = 1;
            p.k[0] = log_mode ? (FL_T)FL_FN(log_row_sum)(s, xr, n, 1, m, 0) : (FL_T)(1.0 / s);
            dominated = log_mode && s - 1.0 < FL_LOG1P_BELOW;
        }
        p.pos = 0;
        p.head = fl_head_to_line(p.y, sizeof(FL_T), n);
    }
    FL_FN(pending_write)(&p, n, n, log_mode, buf);   /* the last row */
    fl_stream_fence();
}

/* ------------------------------------------------------------------ columns (inner > 1) */

/* e_i = exp(x_i - m_i) for `len` lanes side by side, x at lane stride xi (e, m
 * contiguous).  The AVX2 build's own vector exp where xi == 1: gcc's vectorization of
 * FL_EXPS reloaded its constants every iteration there (perf annotate, (65536, 10)). */
/* exp_sub_lanes_f32, exp_sub_lanes_f64 */
static inline __attribute__((always_inline)) void
FL_FN(exp_sub_lanes)(const FL_T *x, ptrdiff_t xi, const FL_T *m, FL_T *e, ptrdiff_t len)
{
#ifdef FL_EXP_SUB_LANES_VEC   /* fl_math_avx2.h */
    if (xi == 1) {
        FL_EXP_SUB_LANES_VEC(x, m, e, len);
        return;
    }
#endif
#pragma omp simd
    for (ptrdiff_t i = 0; i < len; i++) e[i] = FL_EXPS(x[i * xi] - m[i]);
}

/* ls_i = log s_i for `len` lanes side by side (element (c, i) of x at x[c * xc + i * xi],
 * lane i's max m_i; x, m, stored as in row_others), the log1p form where s_i is near 1.
 * The logs are one vector loop.  A few lanes near 1 are summed again one by one; where
 * many are (rows dominated by their max), all lanes are, side by side like the first
 * sum, each compensated (double data). */
/* lanes_log_sum_f32, lanes_log_sum_f64 */
static inline __attribute__((always_inline)) void
FL_FN(lanes_log_sum)(const double *s, double *ls, ptrdiff_t len, const FL_T *x, ptrdiff_t xc,
                     ptrdiff_t xi, ptrdiff_t n, const FL_T *m, int stored)
{
    ptrdiff_t near_one = 0;
#pragma omp simd reduction(+:near_one)
    for (ptrdiff_t i = 0; i < len; i++) {
        ls[i] = fl_log(s[i]);
        near_one += s[i] - 1.0 < FL_LOG1P_BELOW;
    }
    if (__builtin_expect(near_one == 0, 1))
        return;
    if (near_one * 8 <= len) {
        for (ptrdiff_t i = 0; i < len; i++)
            if (s[i] - 1.0 < FL_LOG1P_BELOW)
                ls[i] = log1p(FL_FN(row_others)(x + i * xi, n, xc, m[i], stored));
        return;
    }
    FL_T e[FL_COL_BLOCK];
    double t[FL_COL_BLOCK], lost[FL_COL_BLOCK], ones[FL_COL_BLOCK];
    for (ptrdiff_t i = 0; i < len; i++) t[i] = lost[i] = ones[i] = 0.0;
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
        if (stored) {
            for (ptrdiff_t i = 0; i < len; i++) e[i] = xr[i * xi];
        } else {
            FL_FN(exp_sub_lanes)(xr, xi, m, e, len);
        }
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) {
            const double v = e[i] != (FL_T)1 ? (double)e[i] : 0.0;
            const double u = t[i] + v;
            /* float data: a plain double sum of n float terms is within n 2^-53
             * relative, far inside float32's bounds; double data needs the rest */
            if (sizeof(FL_T) == sizeof(double))
                lost[i] += t[i] >= v ? (t[i] - u) + v : (v - u) + t[i];   /* both >= 0 */
            t[i] = u;
            ones[i] += e[i] == (FL_T)1 ? 1.0 : 0.0;
        }
    }
    /* fl_log1p, not libm's scalar log1p: here every lane may need it, and a call per
     * lane cost more than the second sum itself (2.0 ulp against libm's 1) */
#pragma omp simd
    for (ptrdiff_t i = 0; i < len; i++) {
        const double l1p = fl_log1p(t[i] + (lost[i] + (ones[i] - 1.0)));
        ls[i] = s[i] - 1.0 < FL_LOG1P_BELOW ? l1p : ls[i];
    }
}

/* Softmax over n classes for `len` lanes side by side: element (c, i) at
 * x[c * xc + i * xi].  With xi == 1 every inner loop is a contiguous vector loop. */
/* cols_softmax_f32, cols_softmax_f64 */
static inline __attribute__((always_inline)) void
FL_FN(cols_softmax)(const FL_T *x, ptrdiff_t xc, ptrdiff_t xi, FL_T *y, ptrdiff_t yc,
                    ptrdiff_t yi, ptrdiff_t n, ptrdiff_t len, int log_mode)
{
    FL_T m[FL_COL_BLOCK];
    double s[FL_COL_BLOCK];
    FL_T t[FL_COL_BLOCK];
    for (ptrdiff_t i = 0; i < len; i++) { m[i] = -INFINITY; s[i] = 0.0; }
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) { FL_T v = xr[i * xi]; m[i] = v > m[i] ? v : m[i]; }
    }
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
        FL_T *yr = y + c * yc;
        /* float-only exp loop, then the double sums (see FL_SUM_CHUNK) */
        if (log_mode || yi != 1) {
            FL_FN(exp_sub_lanes)(xr, xi, m, t, len);
            if (!log_mode)
                for (ptrdiff_t i = 0; i < len; i++) yr[i * yi] = t[i];
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) s[i] += (double)t[i];
        } else {
            FL_FN(exp_sub_lanes)(xr, xi, m, yr, len);
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) s[i] += (double)yr[i];
        }
    }
    /* one log (or reciprocal) per lane: vectorized, since with short rows (the tiles
     * path) there are as many lanes as elements / n, and libm's log is a scalar call */
    if (log_mode) {
        double ls[FL_COL_BLOCK];
        FL_FN(lanes_log_sum)(s, ls, len, x, xc, xi, n, m, 0);
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) t[i] = (FL_T)ls[i];
    } else {
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) t[i] = (FL_T)(1.0 / s[i]);
    }
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
        FL_T *yr = y + c * yc;
        if (log_mode) {
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) yr[i * yi] = (xr[i * xi] - m[i]) - t[i];
        } else {
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) yr[i * yi] *= t[i];
        }
    }
}

/* logsumexp over n classes for `len` lanes side by side (see cols_softmax) */
/* cols_logsumexp_f32, cols_logsumexp_f64 */
static inline __attribute__((always_inline)) void
FL_FN(cols_logsumexp)(const FL_T *x, ptrdiff_t xc, ptrdiff_t xi, ptrdiff_t n, ptrdiff_t len,
                      FL_T *out, ptrdiff_t os)
{
    FL_T m[FL_COL_BLOCK];
    double s[FL_COL_BLOCK];
    for (ptrdiff_t i = 0; i < len; i++) { m[i] = -INFINITY; s[i] = 0.0; }
    for (ptrdiff_t c = 0; c < n; c++) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) { FL_T a = x[c * xc + i * xi]; m[i] = a > m[i] ? a : m[i]; }
    }
    FL_T t[FL_COL_BLOCK];
    for (ptrdiff_t c = 0; c < n; c++) {
        FL_FN(exp_sub_lanes)(x + c * xc, xi, m, t, len);
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) s[i] += (double)t[i];
    }
    double ls[FL_COL_BLOCK];
    FL_FN(lanes_log_sum)(s, ls, len, x, xc, xi, n, m, 0);
    for (ptrdiff_t i = 0; i < len; i++) {
        FL_T r;
        if (m[i] == INFINITY || m[i] == -INFINITY)
            r = FL_FN(row_has_nan)(x + i * xi, n, xc) ? (FL_T)NAN : m[i];
        else
            r = (FL_T)((double)m[i] + ls[i]);
        out[i * os] = r;
    }
}

/* ------------------------------------------------------------------ tiles (small n) */

/* tile[j * FL_COL_BLOCK + r] = x[r * n + j] for r < len <= FL_COL_BLOCK, j < n <=
 * FL_FLAT_MAX_N: `len` packed rows into an L1 tile, one class per tile row.  The SIMD
 * builds transpose groups of rows in registers (fl_tile_avx512.h, fl_tile_avx2.h); the rest of the rows
 * (and other builds) go element by element, reading in memory order. */
/* tile_in_f32, tile_in_f64 */
static inline __attribute__((always_inline)) void
FL_FN(tile_in)(const FL_T *x, FL_T *tile, ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
#ifdef FL_TILE_IN_VEC
    if (n >= FL_TILE_VEC_MIN_N) r = FL_TILE_IN_VEC(x, tile, FL_COL_BLOCK, n, len);
#endif
    for (; r < len; r++)
        for (ptrdiff_t j = 0; j < n; j++) tile[j * FL_COL_BLOCK + r] = x[r * n + j];
}

/* x[r * n + j] = tile[j * FL_COL_BLOCK + r]: the inverse of tile_in */
/* tile_out_f32, tile_out_f64 */
static inline __attribute__((always_inline)) void
FL_FN(tile_out)(FL_T *x, const FL_T *tile, ptrdiff_t n, ptrdiff_t len)
{
    ptrdiff_t r = 0;
#ifdef FL_TILE_OUT_VEC
    if (n >= FL_TILE_VEC_MIN_N) r = FL_TILE_OUT_VEC(x, tile, FL_COL_BLOCK, n, len);
#endif
    for (; r < len; r++)
        for (ptrdiff_t j = 0; j < n; j++) x[r * n + j] = tile[j * FL_COL_BLOCK + r];
}

/* Softmax (mode FL_FLAT_SOFTMAX), log_softmax (FL_FLAT_LOG_SOFTMAX) or logsumexp
 * (FL_FLAT_LOGSUMEXP: one value per row into lse[r * lse_stride]) of `rows` packed
 * rows of n <= FL_FLAT_MAX_N elements.  A loop along a row of 10 never reaches its
 * vector body, so blocks of FL_COL_BLOCK rows are transposed into an L1-resident
 * n x FL_COL_BLOCK tile, where the columns kernels run with every vector lane on a
 * different row, and the result is transposed back.  (The mode enum is in
 * kernels_all.h: this file is included once per element type.) */
/* tile_rows_f32, tile_rows_f64 */
static void
FL_FN(tile_rows)(const FL_T *x, FL_T *y, FL_T *lse, ptrdiff_t lse_stride,
                 ptrdiff_t rows, ptrdiff_t n, int mode)
{
    FL_T tile[FL_FLAT_MAX_N * FL_COL_BLOCK] __attribute__((aligned(64)));
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += FL_COL_BLOCK) {
        ptrdiff_t nr = rows - r0 < FL_COL_BLOCK ? rows - r0 : FL_COL_BLOCK;
        FL_FN(tile_in)(x + r0 * n, tile, n, nr);
        if (mode == FL_FLAT_LOGSUMEXP) {
            FL_FN(cols_logsumexp)(tile, FL_COL_BLOCK, 1, n, nr, lse + r0 * lse_stride, lse_stride);
            continue;
        }
        FL_FN(cols_softmax)(tile, FL_COL_BLOCK, 1, tile, FL_COL_BLOCK, 1, n, nr,
                            mode == FL_FLAT_LOG_SOFTMAX);
        FL_FN(tile_out)(y + r0 * n, tile, n, nr);
    }
}

/* ------------------------------------------------------------------ entry points */

/* softmax_lanes_f32, softmax_lanes_f64 (fl_kernel_table .softmax_f32/_f64) */
static void
FL_FN(softmax_lanes)(const FL_T *x, FL_T *y, const fl_view3 *v,
                     ptrdiff_t lb, ptrdiff_t le, int log_mode)
{
    const ptrdiff_t n = v->n;
    if (v->inner == 1 && n <= FL_FLAT_MAX_N && v->sa[1] == 1 && v->so[1] == 1
        && v->sa[0] == n && v->so[0] == n) {
        FL_FN(tile_rows)(x + lb * n, y + lb * n, NULL, 0, le - lb, n,
                         log_mode ? FL_FLAT_LOG_SOFTMAX : FL_FLAT_SOFTMAX);
        return;
    }
    if (fl_rows_layout(v)) {
        const int unit = v->sa[1] == 1 && v->so[1] == 1;
        /* Not in place: there each row is in cache when its output is written, and
         * streaming stores to those lines must evict them first; plain stores (the
         * loop below) are faster there, for softmax and log_softmax alike. */
        if (unit && v->inner == 1 && x != y && fl_stream_output(v, sizeof(FL_T))
            && n * (ptrdiff_t)sizeof(FL_T) <= FL_STREAM_MAX_ROW_BYTES) {
            FL_T *scratch = log_mode ? NULL
                                     : (FL_T *)fl_thread_scratch(2 * (size_t)n * sizeof(FL_T));
            if (log_mode || scratch) {
                FL_FN(rows_softmax_stream)(x + lb * v->sa[0], v->sa[0], y + lb * v->so[0],
                                           v->so[0], n, le - lb, log_mode, scratch);
                return;
            }
        }
        FL_FN(pending_scale) pend;   /* rows read once: see pending_scale */
        pend.n = pend.pos = 0;
        int dominated = 0;           /* see log_others_row */
        for (ptrdiff_t r = lb; r < le; r++) {
            ptrdiff_t o = r / v->inner, i = r - o * v->inner;
            const FL_T *xr = x + o * v->sa[0] + i * v->sa[2];
            FL_T *yr = y + o * v->so[0] + i * v->so[2];
            if (unit)   /* contiguous: vector loops */
                FL_FN(row_softmax)(xr, 1, yr, 1, n, log_mode,
                                   fl_prefetch_next(v, r, le, sizeof(FL_T)) ? xr + v->sa[0] : NULL,
                                   &pend, &dominated);
            else
                FL_FN(row_softmax)(xr, v->sa[1], yr, v->so[1], n, log_mode, NULL, NULL,
                                   &dominated);
        }
        FL_FN(pending_finish)(&pend);
        return;
    }
    for (ptrdiff_t lane = lb, o, i0, len; lane < le; lane += len) {
        len = fl_lane_block(v, lane, le, &o, &i0);
        const FL_T *xb = x + o * v->sa[0] + i0 * v->sa[2];
        FL_T *yb = y + o * v->so[0] + i0 * v->so[2];
        if (v->sa[2] == 1 && v->so[2] == 1)
            FL_FN(cols_softmax)(xb, v->sa[1], 1, yb, v->so[1], 1, n, len, log_mode);
        else
            FL_FN(cols_softmax)(xb, v->sa[1], v->sa[2], yb, v->so[1], v->so[2], n, len, log_mode);
    }
}

/* logsumexp of one row; the infinite-max cases are resolved without the shift */
/* row_logsumexp_f32, row_logsumexp_f64 */
static inline __attribute__((always_inline)) FL_T
FL_FN(row_logsumexp)(const FL_T *x, ptrdiff_t n, ptrdiff_t cs, const FL_T *pf, int *dominated)
{
    const int once = cs == 1 && !*dominated && FL_FN(online_row_fits)(n);
    FL_T m;
    double s = 0.0;
    if (once)
        s = FL_FN(row_online_sum)(x, n, -1, NULL, &m);
    else
        m = FL_FN(row_max)(x, n, cs);
    if (m == INFINITY || m == -INFINITY)     /* also n == 0: the empty sum's log is -inf */
        return FL_FN(row_has_nan)(x, n, cs) ? (FL_T)NAN : m;
    if (*dominated)   /* see log_others_row */
        return (FL_T)((double)m + FL_FN(log_others_row)(x, n, cs, m, dominated));
    if (!once)
        s = FL_FN(row_sumexp)(x, n, cs, m, pf);
    *dominated = s - 1.0 < FL_LOG1P_BELOW;
    return (FL_T)((double)m + FL_FN(log_row_sum)(s, x, n, cs, m, 0));
}

/* logsumexp_lanes_f32, logsumexp_lanes_f64 (fl_kernel_table .logsumexp_f32/_f64) */
static void
FL_FN(logsumexp_lanes)(const FL_T *x, FL_T *out, const fl_view3 *v, ptrdiff_t lb, ptrdiff_t le)
{
    const ptrdiff_t n = v->n;
    if (v->inner == 1 && n <= FL_FLAT_MAX_N && v->sa[1] == 1 && v->sa[0] == n) {
        FL_FN(tile_rows)(x + lb * n, NULL, out + lb * v->so[0], v->so[0], le - lb, n,
                         FL_FLAT_LOGSUMEXP);
        return;
    }
    if (fl_rows_layout(v)) {
        int dominated = 0;   /* see log_others_row */
        for (ptrdiff_t r = lb; r < le; r++) {
            ptrdiff_t o = r / v->inner, i = r - o * v->inner;
            const FL_T *xr = x + o * v->sa[0] + i * v->sa[2];
            out[o * v->so[0] + i * v->so[2]] = v->sa[1] == 1
                ? FL_FN(row_logsumexp)(xr, n, 1,
                                       fl_prefetch_next(v, r, le, sizeof(FL_T)) ? xr + v->sa[0] : NULL,
                                       &dominated)
                : FL_FN(row_logsumexp)(xr, n, v->sa[1], NULL, &dominated);
        }
        return;
    }
    for (ptrdiff_t lane = lb, o, i0, len; lane < le; lane += len) {
        len = fl_lane_block(v, lane, le, &o, &i0);
        FL_FN(cols_logsumexp)(x + o * v->sa[0] + i0 * v->sa[2], v->sa[1], v->sa[2], n, len,
                              out + o * v->so[0] + i0 * v->so[2], v->so[2]);
    }
}

/* Backward passes (vector-Jacobian products), with g the incoming gradient:
 *   softmax:     y = softmax(x)      dx = y * (g - sum_j g_j y_j)
 *   log_softmax: y = log_softmax(x)  dx = g - exp(y) * sum_j g_j        */
/* row_backward_f32, row_backward_f64 */
static inline __attribute__((always_inline)) void
FL_FN(row_backward)(const FL_T *g, ptrdiff_t gs, const FL_T *y, ptrdiff_t ys,
                    FL_T *o, ptrdiff_t os, ptrdiff_t n, int log_mode)
{
    double acc = 0.0;
    if (log_mode) {
#pragma omp simd reduction(+:acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += (double)g[j * gs];
        FL_T sg = (FL_T)acc;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) o[j * os] = g[j * gs] - FL_EXP(y[j * ys]) * sg;
    } else {
#pragma omp simd reduction(+:acc)
        for (ptrdiff_t j = 0; j < n; j++) acc += (double)g[j * gs] * (double)y[j * ys];
        FL_T dot = (FL_T)acc;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) o[j * os] = y[j * ys] * (g[j * gs] - dot);
    }
}

/* softmax_backward_lanes_f32, softmax_backward_lanes_f64 (fl_kernel_table .softmax_backward_f32/_f64) */
static void
FL_FN(softmax_backward_lanes)(const FL_T *g, const FL_T *y, FL_T *out, const fl_view3 *v,
                              ptrdiff_t lb, ptrdiff_t le, int log_mode)
{
    const ptrdiff_t n = v->n;
    if (v->inner == 1) {
        const int unit = v->sa[1] == 1 && v->sb[1] == 1 && v->so[1] == 1;
        for (ptrdiff_t r = lb; r < le; r++) {
            const FL_T *gr = g + r * v->sa[0];
            const FL_T *yr = y + r * v->sb[0];
            FL_T *orow = out + r * v->so[0];
            if (unit)
                FL_FN(row_backward)(gr, 1, yr, 1, orow, 1, n, log_mode);
            else
                FL_FN(row_backward)(gr, v->sa[1], yr, v->sb[1], orow, v->so[1], n, log_mode);
        }
        return;
    }
    /* Columns: lane by lane with strided access.  Backward with a non-last class axis
     * is rare enough that this simple form is kept (correct for any strides). */
    for (ptrdiff_t lane = lb; lane < le; lane++) {
        ptrdiff_t o = lane / v->inner, i = lane - o * v->inner;
        FL_FN(row_backward)(g + o * v->sa[0] + i * v->sa[2], v->sa[1],
                            y + o * v->sb[0] + i * v->sb[2], v->sb[1],
                            out + o * v->so[0] + i * v->so[2], v->so[1], n, log_mode);
    }
}
