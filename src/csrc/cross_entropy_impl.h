/*
 * cross_entropy_impl.h -- fused cross-entropy (loss and gradient in one pass over the
 * logits) and the negative log-likelihood.  A template like softmax_impl.h: included
 * once per element type with FL_T, FL_SUF, FL_EXP, FL_LOG defined (see kernels_all.h),
 * after softmax_impl.h, whose row helpers (row_max) it uses.
 *
 * Per lane (one row of n classes), with d_j = x_j - max_j x_j (<= 0), s = sum_j exp(d_j)
 * accumulated in double, p_j = exp(d_j) / s, eps the label smoothing, e = eps / n, w the
 * class weight (1 if none, W = sum_j w_j), sw the sample weight and gc the gradient
 * coefficient (upstream gradient, divided by the "mean" denominator, times sw):
 *
 *   index target y:  l = (1 - eps) w_y (log s - d_y) + e (W log s - sum_j w_j d_j)
 *                    g_j = gc [p_j ((1 - eps) w_y + e W) - (1 - eps) w_y [j = y] - e w_j]
 *   probabilities q: with wq_j = w_j ((1 - eps) q_j + e),
 *                    l = (sum_j wq_j) log s - sum_j wq_j d_j
 *                    g_j = gc [p_j sum_k wq_k - wq_j]
 *
 * and the lane reports sw * l.  Every term of a loss is a sum of non-negative parts
 * (log s >= 0, -d_j >= 0), so nothing cancels; the d_j of the loss sums are formed in
 * double.  A class of weight 0 (or target mass 0) adds nothing to the sums even where
 * its logit is -inf (0 log 0 = 0), so masked classes never produce NaN.  The target
 * entry of the gradient, p_y - 1 for a well-classified row, is formed in double from
 * the stored exp(d_y) (as (e_y / s - 1)), so it keeps its relative accuracy.
 * An ignored target (index == ignore_index) gives loss 0 and a zero gradient row,
 * whatever the row holds (NaN included).  NaN elsewhere stays in its row; a row whose
 * max is infinite has no finite shift and gives NaN, as the softmax does.
 *
 * Passes over one row (the row stays in L1/L2 between them, so memory sees it once):
 *   1. m = max_j x_j                                        (reads x)
 *   2. e_j = exp(x_j - m), s += e_j, and the sums the loss   (reads x; with a gradient
 *      needs; with a gradient e_j is stored in grad           writes e_j into grad,
 *                                                             which may be x itself)
 *   3. grad_j = e_j * alpha - beta_j, then the target entry  (only with a gradient)
 * The forward-only path writes no N x C array.
 *
 * Long contiguous rows (index targets without label smoothing, the common case) take
 * passes 1 and 2 in one read instead in the AVX-512 and AVX2 builds (ce_row_online, with the
 * online normalizer of softmax_impl.h's "rows read once"): the loads of one block
 * overlap the exp of the previous one, where two passes leave DRAM idle during the exp.
 * (Each block is read again from L1 for its exp: taking the exponentials straight from
 * the registers of the first read was slower.)
 *
 * Layouts as in softmax_impl.h: rows (class axis contiguous or inner == 1), columns
 * (class axis not the most contiguous, e.g. (N, C, H, W) with axis 1: blocks of
 * FL_COL_BLOCK lanes side by side, every inner loop runs along the contiguous inner
 * axis), flat (short packed rows: a block of rows is transposed into an L1 buffer and
 * goes through the columns code).
 *
 * Each variant (target kind, label smoothing, class weight, gradient or not) is a
 * separate instantiation of one always_inline body with constant flags, so the
 * hot loops carry no per-element branches on them.
 */

#ifndef FL_CE_COMMON_DONE
#define FL_CE_COMMON_DONE
/* mode: which sums pass 2 forms */
enum { FL_CE_PLAIN = 0,    /* index targets, no label smoothing: only s */
       FL_CE_SMOOTH = 1,   /* index targets with label smoothing: s, sum_j w_j d_j */
       FL_CE_SOFT = 2 };   /* class probabilities: s, sum_j wq_j, sum_j wq_j d_j */

/* The scalars of one lane, read before its row is touched. */
typedef struct {
    int active;         /* 0: the target is ignore_index */
    ptrdiff_t y;        /* target class (index targets; 0 when ignored) */
    double wy;          /* weight[y] */
    double sw;          /* sample weight */
    double gc;          /* upstream gradient (/ mean denominator) * sample weight */
} fl_ce_lane;

/* The fl_ce_lane fields of `len` lanes as arrays: lane k is (o, i0 + k), or (o + k, i0)
 * with by_outer.  One loop per field: the loops vectorize (the columns layout runs it
 * per block of lanes); one loop setting every field stayed scalar under some flags
 * (9 scalar stores per lane, a large share of the short-row forward).
 * Every class index is read here, once per use, and checked against the n classes
 * again: the wrapper checked them all before the call, but another thread may write to
 * the labels while the kernel runs without the GIL, and such a race in the caller's
 * code must not become an access out of bounds.  A lane whose index is outside [0, n)
 * counts as ignored, and a->label_fault tells the wrapper, which raises. */
static inline __attribute__((always_inline)) void
fl_ce_lanes_setup(const fl_ce_args *a, ptrdiff_t n, ptrdiff_t o, ptrdiff_t i0, ptrdiff_t len,
                  const int by_outer, unsigned char *act, ptrdiff_t *y, double *wy,
                  double *sw, double *gc)
{
    if (a->target) {
        const int64_t *t = a->target + o * a->ts[0] + i0 * a->ts[1];
        const ptrdiff_t ts = a->ts[by_outer ? 0 : 1];
        const int64_t ignore = a->ignore_index;
        unsigned char fault = 0;
#pragma omp simd reduction(|:fault)
        for (ptrdiff_t k = 0; k < len; k++) {
            const int64_t tk = t[k * ts];
            const unsigned char inside = (uint64_t)tk < (uint64_t)n;   /* negative: huge */
            act[k] = tk != ignore && inside;
            y[k] = tk != ignore && inside ? (ptrdiff_t)tk : 0;
            fault |= tk != ignore && !inside;
        }
        if (__builtin_expect(fault, 0) && a->label_fault)
            __atomic_store_n(a->label_fault, 1, __ATOMIC_RELAXED);
        if (a->weight) {
            for (ptrdiff_t k = 0; k < len; k++) wy[k] = act[k] ? a->weight[y[k]] : 1.0;
        } else {
#pragma omp simd
            for (ptrdiff_t k = 0; k < len; k++) wy[k] = 1.0;
        }
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < len; k++) { act[k] = 1; y[k] = 0; wy[k] = 1.0; }
    }
    if (a->sample_weight) {
        const double *p = a->sample_weight + o * a->sws[0] + i0 * a->sws[1];
        const ptrdiff_t ps = a->sws[by_outer ? 0 : 1];
        for (ptrdiff_t k = 0; k < len; k++) sw[k] = p[k * ps];
    } else {
#pragma omp simd
        for (ptrdiff_t k = 0; k < len; k++) sw[k] = 1.0;
    }
    if (a->grad_scale) {
        const double *p = a->grad_scale + o * a->gss[0] + i0 * a->gss[1];
        const ptrdiff_t ps = a->gss[by_outer ? 0 : 1];
        for (ptrdiff_t k = 0; k < len; k++) gc[k] = p[k * ps] * sw[k];
    } else {
        const double g0 = a->grad_scale0;
#pragma omp simd
        for (ptrdiff_t k = 0; k < len; k++) gc[k] = g0 * sw[k];
    }
}

/* One lane's fields (the rows layout and nll) */
static inline __attribute__((always_inline)) fl_ce_lane
fl_ce_lane_setup(const fl_ce_args *a, ptrdiff_t n, ptrdiff_t o, ptrdiff_t i)
{
    unsigned char act;
    fl_ce_lane L;
    fl_ce_lanes_setup(a, n, o, i, 1, 0, &act, &L.y, &L.wy, &L.sw, &L.gc);
    L.active = act;
    return L;
}

/* a * b + c in one rounding wherever the target has FMA.  The forward and the
 * with-grad kernels are two copies of the same loops (one stores the exponentials),
 * and gcc may vectorize one copy and not the other, contracting a * b + c into an fma
 * in one of them only: their losses then differed in the last bit (float64 probability
 * targets, seen once -fno-wrapv changed which copies gcc vectorized).  Written as an
 * fma, the sums are the same in every copy.  Without FMA nothing can be contracted. */
#ifdef __FMA__
#define FL_MULADD(a, b, c) __builtin_fma((a), (b), (c))
#else
#define FL_MULADD(a, b, c) ((a) * (b) + (c))
#endif

/* sw * l of an active lane from its row statistics (see the file comment); wy and
 * sw are the lane's (fl_ce_lane) */
static inline __attribute__((always_inline)) double
fl_ce_row_loss(const fl_ce_args *a, double wy, double sw, ptrdiff_t n, int mode,
               double log_s, double dy, double swd, double swq)
{
    const double eps = a->label_smoothing;
    double l;
    if (mode == FL_CE_SOFT) {
        l = FL_MULADD(swq, log_s, -swd);
    } else {
        l = (1.0 - eps) * wy * (log_s - dy);
        if (mode == FL_CE_SMOOTH)
            l = FL_MULADD(eps / (double)n, FL_MULADD(a->weight_sum, log_s, -swd), l);
    }
    return l * sw;
}

/* The gradient at the target class of an active lane, from ey = exp(d_y) and s; gc
 * and wy are the lane's (fl_ce_lane). */
static inline __attribute__((always_inline)) double
fl_ce_target_grad(const fl_ce_args *a, double gc, double wy, ptrdiff_t n, double ey, double s)
{
    const double eps = a->label_smoothing, ec = eps / (double)n;
    const double p = ey / s;
    return gc * ((1.0 - eps) * wy * (p - 1.0) + ec * (a->weight_sum * p - wy));
}

#endif /* FL_CE_COMMON_DONE */

/* ------------------------------------------------------------------ one row */

/* Pass 2 over one row: s = sum_j e_j with e_j = exp(x_j - m), e_j stored to g when
 * store, and the loss sums of `mode` into *swd, *swq.  c1 = 1 - eps and c0 = eps / n
 * (probability targets).  With split >= 0 (index targets without label smoothing, a
 * contiguous row whose target `split` is its max), the sum runs on both sides of the
 * target and *t_out = s - 1 is formed without the target's own 1: the log1p form at no
 * cost (see "the log1p form" in softmax_impl.h). */
/* ce_row_sums_f32, ce_row_sums_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_row_sums)(const FL_T *x, ptrdiff_t xs, const FL_T *q, ptrdiff_t qs,
                   FL_T *g, ptrdiff_t gs, ptrdiff_t n, FL_T m,
                   const double *w, double c1, double c0, double *swd_out, double *swq_out,
                   ptrdiff_t split, double *t_out,
                   const FL_T *pf, const int mode, const int has_w, const int store)
{
    double s = 0.0, swd = 0.0, swq = 0.0;
    const double md = (double)m;
    if (mode == FL_CE_PLAIN && xs == 1 && (!store || gs == 1)) {
        /* float-only exp loop at full vector width, then the double sum over the
         * L1-resident chunk (see FL_SUM_CHUNK in softmax_impl.h) */
        FL_T chunk[FL_SUM_CHUNK];
        for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_SUM_CHUNK) {
            const ptrdiff_t len = n - j0 < FL_SUM_CHUNK ? n - j0 : FL_SUM_CHUNK;
            const FL_T *xc = x + j0;
            FL_T *ec = store ? g + j0 : chunk;
            const ptrdiff_t k = split - j0;
            if (k >= 0 && k < len) {   /* the target's chunk: both sides, then its 1 */
                s += FL_FN(exp_shifted_sum)(xc, m, ec, k, pf ? pf + j0 : NULL);
                s += FL_FN(exp_shifted_sum)(xc + k + 1, m, ec + k + 1, len - k - 1,
                                            pf ? pf + j0 + k + 1 : NULL);
                ec[k] = (FL_T)1;
            } else {
                s += FL_FN(exp_shifted_sum)(xc, m, ec, len, pf ? pf + j0 : NULL);
            }
        }
        if (split >= 0) {
            *t_out = s;
            s += 1.0;
        }
    } else if (mode == FL_CE_PLAIN) {
#pragma omp simd reduction(+:s)
        for (ptrdiff_t j = 0; j < n; j++) {
            FL_T e = FL_EXPS(x[j * xs] - m);
            if (store) g[j * gs] = e;
            s += (double)e;
        }
    } else if (mode == FL_CE_SMOOTH) {
#pragma omp simd reduction(+:s, swd)
        for (ptrdiff_t j = 0; j < n; j++) {
            FL_T xj = x[j * xs];
            FL_T e = FL_EXPS(xj - m);
            if (store) g[j * gs] = e;
            s += (double)e;
            double d = (double)xj - md;
            if (has_w) {
                double wj = w[j];
                swd = wj == 0.0 ? swd : FL_MULADD(wj, d, swd);   /* weight 0: nothing, even at -inf */
            } else {
                swd += d;
            }
        }
    } else {
#pragma omp simd reduction(+:s, swd, swq)
        for (ptrdiff_t j = 0; j < n; j++) {
            FL_T xj = x[j * xs];
            FL_T e = FL_EXPS(xj - m);
            if (store) g[j * gs] = e;
            s += (double)e;
            double wq = FL_MULADD(c1, (double)q[j * qs], c0);
            if (has_w) wq *= w[j];
            swq += wq;
            swd = wq == 0.0 ? swd : FL_MULADD(wq, (double)xj - md, swd);   /* 0 log 0 = 0 */
        }
    }
    *swd_out = swd;
    *swq_out = swq;
    return s;
}

/* Pass 3: g_j = e_j * alpha - beta_j from e (which may be g itself), then the target
 * entry in double.  s, swq: the row's sums. */
/* ce_row_grad_f32, ce_row_grad_f64 */
static inline __attribute__((always_inline)) void
FL_FN(ce_row_grad)(const FL_T *e, ptrdiff_t es, const FL_T *q, ptrdiff_t qs, FL_T *g,
                   ptrdiff_t gs, ptrdiff_t n, const fl_ce_args *a, const fl_ce_lane *L,
                   double s, double swq, const int mode, const int has_w)
{
    const double eps = a->label_smoothing, ec = eps / (double)n;
    const double *w = a->weight;
    if (mode == FL_CE_SOFT) {
        const FL_T alpha = (FL_T)(L->gc * swq / s);
        const FL_T c1 = (FL_T)(L->gc * (1.0 - eps)), c0 = (FL_T)(L->gc * ec);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            FL_T b = c1 * q[j * qs] + c0;
            if (has_w) b *= (FL_T)w[j];
            g[j * gs] = e[j * es] * alpha - b;
        }
        return;
    }
    const double ey = (double)e[L->y * es];   /* read before the loop overwrites it */
    const FL_T alpha = (FL_T)(L->gc * ((1.0 - eps) * L->wy + ec * a->weight_sum) / s);
    if (mode == FL_CE_PLAIN) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) g[j * gs] = e[j * es] * alpha;
    } else {
        const FL_T beta = (FL_T)(L->gc * ec);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            g[j * gs] = e[j * es] * alpha - (has_w ? beta * (FL_T)w[j] : beta);
    }
    g[L->y * gs] = (FL_T)fl_ce_target_grad(a, L->gc, L->wy, n, ey, s);
}

/* ce_row for long contiguous rows, index targets, no label smoothing: passes 1 and 2 in
 * one read (row_online_sum / row_online_store), then with a gradient
 * g_j = e_j * alpha * exp(m_k - m), with the m_k of e_j's stretch (seg), and the target
 * entry: left pending (pending_scale in softmax_impl.h), done during the next row's
 * read or by the rows loop's pending_finish. */
/* ce_row_online_f32, ce_row_online_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_row_online)(const FL_T *x, FL_T *g, FL_T *loss_slot, ptrdiff_t n,
                     const fl_ce_args *a, const fl_ce_lane *L, const int grad,
                     FL_FN(pending_scale) *pend, int *dominated)
{
    fl_online_segs seg;
    FL_T m;
    double xy = 0.0;   /* set by the read: 0 <= y < n for an active lane */
    const double s = grad ? FL_FN(row_online_store)(x, g, n, L->y, &xy, &m, &seg, pend)
                          : FL_FN(row_online_sum)(x, n, L->y, &xy, &m);
    *dominated = xy == (double)m && s - 1.0 < FL_LOG1P_BELOW;
    double l = 0.0;
    if (a->want_loss) {
        /* the log1p form only where the target is the max (see ce_row) */
        const double ls = xy != (double)m ? log(s)
                        : grad ? FL_FN(online_log_sum)(s, g, n, &seg, m)
                               : FL_FN(log_row_sum)(s, x, n, 1, m, 0);
        l = fl_ce_row_loss(a, L->wy, L->sw, n, FL_CE_PLAIN, ls, xy - (double)m, 0.0, 0.0);
        if (loss_slot) *loss_slot = (FL_T)l;
    }
    if (grad) {
        const double ey = FL_FN(pending_begin)(pend, g, n, &seg, m, L->gc * L->wy / s, 1.0,
                                               L->y);
        pend->fix_j = L->y;
        pend->fix_v = (FL_T)fl_ce_target_grad(a, L->gc, L->wy, n, ey, s);
    }
    return l;
}

/* One lane in the rows layout: returns sw * l (0 for an ignored lane), writes it to
 * *loss_slot when given and the gradient row to g when grad. */
/* ce_row_f32, ce_row_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_row)(const FL_T *x, ptrdiff_t xs, const FL_T *q, ptrdiff_t qs, FL_T *g, ptrdiff_t gs,
              FL_T *loss_slot, ptrdiff_t n, const fl_ce_args *a, const fl_ce_lane *L,
              const FL_T *pf, FL_FN(pending_scale) *pend, const int mode, const int has_w,
              const int grad, int *dominated)
{
    if (!L->active) {
        if (grad) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) g[j * gs] = (FL_T)0;
        }
        if (loss_slot) *loss_slot = (FL_T)0;
        return 0.0;
    }
    /* A forward row after a dominated one takes the two passes, where a target that is
     * the max costs nothing more (split); with a gradient the second sum of a row read
     * once reads the stored exponentials, and stays (see log_others_row). */
    if (mode == FL_CE_PLAIN && xs == 1 && (!grad || gs == 1) && (grad || !*dominated)
        && FL_FN(online_row_fits)(n))
        return FL_FN(ce_row_online)(x, g, loss_slot, n, a, L, grad, pend, dominated);
    const double eps = a->label_smoothing;
    const FL_T m = FL_FN(row_max)(x, n, xs);
    /* d_y is read before pass 2, which may overwrite x (in place) */
    const double dy = mode == FL_CE_SOFT ? 0.0 : (double)x[L->y * xs] - (double)m;
    /* The log1p form matters only where the loss can be small: a target that is its
     * row's max (otherwise the loss is at least log 2), or probability targets. */
    const int top = mode == FL_CE_SOFT || dy == 0.0;
    const ptrdiff_t split = top && mode == FL_CE_PLAIN && xs == 1 && (!grad || gs == 1)
                            ? L->y : -1;
    double swd, swq, t = 0.0;
    const double s = FL_FN(ce_row_sums)(x, xs, q, qs, g, gs, n, m, a->weight,
                                        1.0 - eps, eps / (double)n, &swd, &swq, split, &t,
                                        pf, mode, has_w, grad);
    *dominated = top && (split >= 0 ? t : s - 1.0) < FL_LOG1P_BELOW;
    double l = 0.0;
    if (a->want_loss) {
        /* with a gradient, x may be g: the exponentials pass 2 stored there */
        const double ls = split >= 0 ? log1p(t)
                        : !top ? log(s)
                        : grad ? FL_FN(log_row_sum)(s, g, n, gs, m, 1)
                               : FL_FN(log_row_sum)(s, x, n, xs, m, 0);
        l = fl_ce_row_loss(a, L->wy, L->sw, n, mode, ls, dy, swd, swq);
        if (loss_slot) *loss_slot = (FL_T)l;
    }
    if (grad)   /* pass 3 reads the exponentials pass 2 stored in g */
        FL_FN(ce_row_grad)(g, gs, q, qs, g, gs, n, a, L, s, swq, mode, has_w);
    return l;
}

/* ------------------------------------------------------------------ columns (inner > 1) */

/* `len` lanes side by side: element (c, i) of x at x[c * xc + i * xi].  With xi == 1
 * (and gi, qi == 1) every inner loop is a contiguous vector loop.  The lanes are
 * i0 .. i0 + len - 1 of outer index o, or, with flat_lanes, the rows o .. o + len - 1
 * of an input with inner == 1 (the flat layout).  Lane i's loss goes to loss[i * lstride]. */
/* ce_cols_f32, ce_cols_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_cols)(const FL_T *x, ptrdiff_t xc, ptrdiff_t xi, const FL_T *q, ptrdiff_t qc,
               ptrdiff_t qi, FL_T *g, ptrdiff_t gc, ptrdiff_t gi, FL_T *loss, ptrdiff_t lstride,
               ptrdiff_t n, ptrdiff_t len, const fl_ce_args *a, ptrdiff_t o, ptrdiff_t i0,
               const int mode, const int has_w, const int grad, const int flat_lanes)
{
    /* the lanes' fl_ce_lane fields as arrays, so that the per-lane loops vectorize */
    unsigned char act[FL_COL_BLOCK];
    ptrdiff_t y[FL_COL_BLOCK];
    double wy[FL_COL_BLOCK], sw[FL_COL_BLOCK], gcl[FL_COL_BLOCK];
    FL_T m[FL_COL_BLOCK], t[FL_COL_BLOCK];
    double s[FL_COL_BLOCK], swd[FL_COL_BLOCK], swq[FL_COL_BLOCK], dy[FL_COL_BLOCK];
    const double eps = a->label_smoothing, ec = eps / (double)n;
    const double *w = a->weight;
    fl_ce_lanes_setup(a, n, o, i0, len, flat_lanes, act, y, wy, sw, gcl);
#pragma omp simd
    for (ptrdiff_t i = 0; i < len; i++) {
        m[i] = -INFINITY;
        s[i] = swd[i] = swq[i] = 0.0;
    }
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++) { FL_T t = xr[i * xi]; m[i] = t > m[i] ? t : m[i]; }
    }
    if (mode != FL_CE_SOFT)
        for (ptrdiff_t i = 0; i < len; i++)   /* before pass 2 may overwrite x */
            dy[i] = (double)x[y[i] * xc + i * xi] - (double)m[i];
    for (ptrdiff_t c = 0; c < n; c++) {
        const FL_T *xr = x + c * xc;
        FL_T *gr = g + c * gc;
        const double wc = has_w ? w[c] : 1.0;
        if (mode == FL_CE_PLAIN || (mode == FL_CE_SMOOTH && wc == 0.0)) {
            /* float-only exp loop, then the double sums (see FL_SUM_CHUNK in
             * softmax_impl.h): one loop mixing both runs at half the vector width */
            FL_T *et = grad && gi == 1 ? gr : t;
            FL_FN(exp_sub_lanes)(xr, xi, m, et, len);   /* softmax_impl.h */
            if (grad && gi != 1)
                for (ptrdiff_t i = 0; i < len; i++) gr[i * gi] = et[i];
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) s[i] += (double)et[i];
        } else if (mode == FL_CE_SMOOTH) {
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                FL_T t = xr[i * xi];
                FL_T e = FL_EXPS(t - m[i]);
                if (grad) gr[i * gi] = e;
                s[i] += (double)e;
                swd[i] = FL_MULADD(wc, (double)t - (double)m[i], swd[i]);
            }
        } else {
            const FL_T *qr = q + c * qc;
            const double c1 = (1.0 - eps) * wc, c0 = ec * wc;
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                FL_T t = xr[i * xi];
                FL_T e = FL_EXPS(t - m[i]);
                if (grad) gr[i * gi] = e;
                s[i] += (double)e;
                double wq = FL_MULADD(c1, (double)qr[i * qi], c0);
                swq[i] += wq;
                swd[i] = wq == 0.0 ? swd[i] : FL_MULADD(wq, (double)t - (double)m[i], swd[i]);   /* 0 log 0 = 0 */
            }
        }
    }
    double total = 0.0;
    if (a->want_loss) {
        double l[FL_COL_BLOCK], ls[FL_COL_BLOCK];
        if (grad) {   /* x may be g: the exponentials pass 2 stored there */
            FL_FN(lanes_log_sum)(s, ls, len, g, gc, gi, n, m, 1);
        } else {
            FL_FN(lanes_log_sum)(s, ls, len, x, xc, xi, n, m, 0);
        }
#pragma omp simd reduction(+:total)
        for (ptrdiff_t i = 0; i < len; i++) {
            const double li = fl_ce_row_loss(a, wy[i], sw[i], n, mode, ls[i], dy[i],
                                             swd[i], swq[i]);
            l[i] = act[i] ? li : 0.0;
            total += l[i];
        }
        if (loss)
            for (ptrdiff_t i = 0; i < len; i++) loss[i * lstride] = (FL_T)l[i];
    }
    if (grad) {
        FL_T alpha[FL_COL_BLOCK], b1[FL_COL_BLOCK], b0[FL_COL_BLOCK];
        double ey[FL_COL_BLOCK], tg[FL_COL_BLOCK];
        if (mode == FL_CE_SOFT) {
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                alpha[i] = (FL_T)(gcl[i] * swq[i] / s[i]);
                b1[i] = (FL_T)(gcl[i] * (1.0 - eps));
                b0[i] = (FL_T)(gcl[i] * ec);
            }
        } else {
            for (ptrdiff_t i = 0; i < len; i++)   /* before the loop below overwrites it */
                ey[i] = (double)g[y[i] * gc + i * gi];
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                alpha[i] = (FL_T)(gcl[i] * ((1.0 - eps) * wy[i] + ec * a->weight_sum) / s[i]);
                b0[i] = (FL_T)(gcl[i] * ec);
                tg[i] = fl_ce_target_grad(a, gcl[i], wy[i], n, ey[i], s[i]);
            }
        }
        for (ptrdiff_t c = 0; c < n; c++) {
            FL_T *gr = g + c * gc;
            const FL_T wc = has_w ? (FL_T)w[c] : (FL_T)1;
            if (mode == FL_CE_SOFT) {
                const FL_T *qr = q + c * qc;
#pragma omp simd
                for (ptrdiff_t i = 0; i < len; i++)
                    gr[i * gi] = gr[i * gi] * alpha[i] - wc * (b1[i] * qr[i * qi] + b0[i]);
            } else if (mode == FL_CE_PLAIN) {
#pragma omp simd
                for (ptrdiff_t i = 0; i < len; i++) {
                    FL_T r = gr[i * gi] * alpha[i];
                    gr[i * gi] = act[i] ? r : (FL_T)0;   /* ignored: 0, even for NaN rows */
                }
            } else {
#pragma omp simd
                for (ptrdiff_t i = 0; i < len; i++) {
                    FL_T r = gr[i * gi] * alpha[i] - b0[i] * wc;
                    gr[i * gi] = act[i] ? r : (FL_T)0;
                }
            }
        }
        if (mode != FL_CE_SOFT)
            for (ptrdiff_t i = 0; i < len; i++)
                if (act[i]) g[y[i] * gc + i * gi] = (FL_T)tg[i];
    }
    return total;
}

/* ------------------------------------------------------------------ flat (short rows) */

/* Packed rows [lb, le) of n <= FL_FLAT_MAX_N classes.  A loop along a row of 10 never
 * reaches its vector body, and the row's max, sum and log would be horizontal
 * reductions per row; so blocks of FL_COL_BLOCK rows are transposed into an L1
 * buffer and run through the columns code, where every step is a vector loop across
 * rows, and the gradient is transposed back. */
/* ce_flat_f32, ce_flat_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_flat)(const FL_T *x, const FL_T *q, FL_T *g, FL_T *loss, const fl_view3 *v,
               const fl_ce_args *a, ptrdiff_t lb, ptrdiff_t le,
               const int mode, const int has_w, const int grad)
{
    FL_T xt[FL_FLAT_MAX_N * FL_COL_BLOCK] __attribute__((aligned(64)));
    FL_T qt[FL_FLAT_MAX_N * FL_COL_BLOCK] __attribute__((aligned(64)));
    FL_T gt[FL_FLAT_MAX_N * FL_COL_BLOCK] __attribute__((aligned(64)));
    const ptrdiff_t n = v->n;
    double total = 0.0;
    for (ptrdiff_t r0 = lb, len; r0 < le; r0 += len) {
        len = le - r0 < FL_COL_BLOCK ? le - r0 : FL_COL_BLOCK;
        FL_FN(tile_in)(x + r0 * n, xt, n, len);   /* softmax_impl.h */
        if (mode == FL_CE_SOFT) FL_FN(tile_in)(q + r0 * n, qt, n, len);
        total += FL_FN(ce_cols)(xt, FL_COL_BLOCK, 1, qt, FL_COL_BLOCK, 1, gt, FL_COL_BLOCK, 1,
                                loss ? loss + r0 * a->ls[0] : NULL, a->ls[0], n, len, a,
                                r0, 0, mode, has_w, grad, 1);
        if (grad) FL_FN(tile_out)(g + r0 * n, gt, n, len);
    }
    return total;
}

/* ------------------------------------------------------------------ entry point */

/* ce_body_f32, ce_body_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ce_body)(const FL_T *x, const FL_T *q, FL_T *g, FL_T *loss, const fl_view3 *v,
               const fl_ce_args *a, ptrdiff_t lb, ptrdiff_t le,
               const int mode, const int has_w, const int grad)
{
    const ptrdiff_t n = v->n;
    const int soft = mode == FL_CE_SOFT;
    double total = 0.0;
    if (v->inner == 1 && n <= FL_FLAT_MAX_N && v->sa[1] == 1 && v->sa[0] == n
        && (!grad || (v->so[1] == 1 && v->so[0] == n))
        && (!soft || (v->sb[1] == 1 && v->sb[0] == n)))
        return FL_FN(ce_flat)(x, q, g, loss, v, a, lb, le, mode, has_w, grad);
    if (fl_rows_layout(v)) {
        const int unit = v->sa[1] == 1 && (!grad || v->so[1] == 1) && (!soft || v->sb[1] == 1);
        FL_FN(pending_scale) pend;
        pend.n = pend.pos = 0;
        int dominated = 0;   /* see log_others_row in softmax_impl.h */
        for (ptrdiff_t r = lb; r < le; r++) {
            const ptrdiff_t o = r / v->inner, i = r - o * v->inner;
            const fl_ce_lane L = fl_ce_lane_setup(a, n, o, i);
            const FL_T *xr = x + o * v->sa[0] + i * v->sa[2];
            const FL_T *qr = soft ? q + o * v->sb[0] + i * v->sb[2] : NULL;
            FL_T *gr = grad ? g + o * v->so[0] + i * v->so[2] : NULL;
            FL_T *slot = loss ? loss + o * a->ls[0] + i * a->ls[1] : NULL;
            if (unit)   /* contiguous rows: unit strides are constants, loops vectorize */
                total += FL_FN(ce_row)(xr, 1, qr, 1, gr, 1, slot, n, a, &L,
                                       fl_prefetch_next(v, r, le, sizeof(FL_T)) ? xr + v->sa[0] : NULL,
                                       &pend, mode, has_w, grad, &dominated);
            else
                total += FL_FN(ce_row)(xr, v->sa[1], qr, v->sb[1], gr, v->so[1], slot, n, a,
                                       &L, NULL, &pend, mode, has_w, grad, &dominated);
        }
        FL_FN(pending_finish)(&pend);   /* the last row read once */
        return total;
    }
    const int unit = v->sa[2] == 1 && (!grad || v->so[2] == 1) && (!soft || v->sb[2] == 1);
    for (ptrdiff_t lane = lb, o, i0, len; lane < le; lane += len) {
        len = fl_lane_block(v, lane, le, &o, &i0);
        const FL_T *xb = x + o * v->sa[0] + i0 * v->sa[2];
        const FL_T *qb = soft ? q + o * v->sb[0] + i0 * v->sb[2] : NULL;
        FL_T *gb = grad ? g + o * v->so[0] + i0 * v->so[2] : NULL;
        FL_T *lossb = loss ? loss + o * a->ls[0] + i0 * a->ls[1] : NULL;
        if (unit)
            total += FL_FN(ce_cols)(xb, v->sa[1], 1, qb, v->sb[1], 1, gb, v->so[1], 1, lossb,
                                    a->ls[1], n, len, a, o, i0, mode, has_w, grad, 0);
        else
            total += FL_FN(ce_cols)(xb, v->sa[1], v->sa[2], qb, v->sb[1], v->sb[2], gb,
                                    v->so[1], v->so[2], lossb, a->ls[1], n, len, a, o, i0,
                                    mode, has_w, grad, 0);
    }
    return total;
}

/* cross_entropy_lanes_f32, cross_entropy_lanes_f64 (fl_kernel_table .cross_entropy_f32/_f64) */
static double
FL_FN(cross_entropy_lanes)(const FL_T *x, const FL_T *q, FL_T *g, FL_T *loss,
                           const fl_view3 *v, const fl_ce_args *a, ptrdiff_t lb, ptrdiff_t le)
{
    const int mode = a->target == NULL ? FL_CE_SOFT
                     : a->label_smoothing > 0.0 ? FL_CE_SMOOTH : FL_CE_PLAIN;
    const int has_w = a->weight != NULL;
    /* One instantiation per variant; without label smoothing the class weight only
     * enters through the per-lane w_y, so PLAIN needs no weighted variant. */
#define FL_CE_CALL(MODE, HW, GRAD) FL_FN(ce_body)(x, q, g, loss, v, a, lb, le, MODE, HW, GRAD)
    if (g) {
        if (mode == FL_CE_PLAIN) return FL_CE_CALL(FL_CE_PLAIN, 0, 1);
        if (mode == FL_CE_SMOOTH) return has_w ? FL_CE_CALL(FL_CE_SMOOTH, 1, 1) : FL_CE_CALL(FL_CE_SMOOTH, 0, 1);
        return has_w ? FL_CE_CALL(FL_CE_SOFT, 1, 1) : FL_CE_CALL(FL_CE_SOFT, 0, 1);
    }
    if (mode == FL_CE_PLAIN) return FL_CE_CALL(FL_CE_PLAIN, 0, 0);
    if (mode == FL_CE_SMOOTH) return has_w ? FL_CE_CALL(FL_CE_SMOOTH, 1, 0) : FL_CE_CALL(FL_CE_SMOOTH, 0, 0);
    return has_w ? FL_CE_CALL(FL_CE_SOFT, 1, 0) : FL_CE_CALL(FL_CE_SOFT, 0, 0);
#undef FL_CE_CALL
}

/* ------------------------------------------------------------------ nll */

/* l = -w_y x_y per lane (0 when ignored); the gradient row is 0 except -gc w_y at y.
 * One element read per lane; the gradient is a fill plus a scatter. */
/* nll_lanes_f32, nll_lanes_f64 (fl_kernel_table .nll_f32/_f64) */
static double
FL_FN(nll_lanes)(const FL_T *x, FL_T *g, FL_T *loss, const fl_view3 *v, const fl_ce_args *a,
                 ptrdiff_t lb, ptrdiff_t le)
{
    const ptrdiff_t n = v->n;
    double total = 0.0;
    for (ptrdiff_t r = lb; r < le; r++) {
        const ptrdiff_t o = r / v->inner, i = r - o * v->inner;
        const fl_ce_lane L = fl_ce_lane_setup(a, n, o, i);
        double l = L.active ? -L.wy * (double)x[o * v->sa[0] + L.y * v->sa[1] + i * v->sa[2]] * L.sw
                            : 0.0;
        if (loss) loss[o * a->ls[0] + i * a->ls[1]] = (FL_T)l;
        total += l;
    }
    if (!g) return total;
    if (a->grad_zeroed) {   /* the buffer holds zeros already: only the target entries */
        for (ptrdiff_t r = lb; r < le; r++) {
            const ptrdiff_t o = r / v->inner, i = r - o * v->inner;
            const fl_ce_lane L = fl_ce_lane_setup(a, n, o, i);
            if (L.active) g[o * v->so[0] + L.y * v->so[1] + i * v->so[2]] = (FL_T)(-L.gc * L.wy);
        }
        return total;
    }
    if (v->inner == 1 || v->so[1] == 1) {   /* rows */
        for (ptrdiff_t r = lb; r < le; r++) {
            const ptrdiff_t o = r / v->inner, i = r - o * v->inner;
            FL_T *gr = g + o * v->so[0] + i * v->so[2];
            const ptrdiff_t gs = v->so[1];
            if (gs == 1) {
#pragma omp simd
                for (ptrdiff_t j = 0; j < n; j++) gr[j] = (FL_T)0;
            } else {
                for (ptrdiff_t j = 0; j < n; j++) gr[j * gs] = (FL_T)0;
            }
            const fl_ce_lane L = fl_ce_lane_setup(a, n, o, i);
            if (L.active) gr[L.y * gs] = (FL_T)(-L.gc * L.wy);
        }
        return total;
    }
    for (ptrdiff_t lane = lb, o, i0, len; lane < le; lane += len) {   /* columns */
        len = fl_lane_block(v, lane, le, &o, &i0);
        FL_T *gb = g + o * v->so[0] + i0 * v->so[2];
        const ptrdiff_t gc = v->so[1], gi = v->so[2];
        for (ptrdiff_t c = 0; c < n; c++) {
            if (gi == 1) {
#pragma omp simd
                for (ptrdiff_t i = 0; i < len; i++) gb[c * gc + i] = (FL_T)0;
            } else {
                for (ptrdiff_t i = 0; i < len; i++) gb[c * gc + i * gi] = (FL_T)0;
            }
        }
        for (ptrdiff_t i = 0; i < len; i++) {
            const fl_ce_lane L = fl_ce_lane_setup(a, n, o, i0 + i);
            if (L.active) gb[L.y * gc + i * gi] = (FL_T)(-L.gc * L.wy);
        }
    }
    return total;
}
