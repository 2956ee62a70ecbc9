/*
 * elementwise_impl.h -- activations, pointwise losses (fused with their gradient) and
 * the multi-class margin loss.  A template: included once per element type with FL_T,
 * FL_SUF, FL_EXP, FL_LOG, FL_LOG1P and FL_TANH defined (see kernels_all.h).
 *
 * Layout.  The activations and the pointwise losses see every array as one flat,
 * contiguous run of elements: the Python wrapper passes C-contiguous arrays (or the
 * transposes of F-contiguous ones) and copies other layouts.  Element k of each
 * array belongs to the same position, so each kernel is one vector loop and a range
 * [begin, end) per thread.  Outputs may be the inputs themselves: every loop reads
 * element k of all its inputs before it writes element k of any output.
 *
 * Broadcast factors (weight, pos_weight) are not copied to the input's size: a
 * factor is described by fl_bcast (element k uses ptr[(k / rep) % period]) and the
 * loop runs over stretches where it is either one contiguous vector or one scalar.
 * Short patterns (rep * period <= FL_TILE_MAX_PERIOD) are first tiled into an
 * L1-resident buffer so that the stretches stay long (a pos_weight of 10 classes
 * would otherwise give loops of 10).
 *
 * Precision.  Sums are accumulated in double.  The regression losses (MSE, smooth
 * L1, Huber) and the margin loss compute each element in double also for float
 * data: it costs nothing in these memory-bound loops and keeps (x - t)^2 finite
 * for any finite float input.  The losses with logarithms compute in the element
 * type with the SIMD exp/log of fl_math.h (a few ulp), except the KL divergence:
 * its terms q (log q - x) have both signs and cancel in the sum (a reduced loss can
 * be 1e-4 of the sum of the terms' magnitudes), so errors of a few float ulp per
 * term came out 2.5e-5 relative in the sum.  Its terms are formed in
 * double with the double exp/log (log of the widened target); for float data that
 * halves the vector width of the loop (about twice the time where it is compute-bound;
 * figures in the commit that made it), and reduction="none" gets each element rounded
 * once from the double value.
 *
 * Gradients.  d loss / d input of the *summed* loss, times a_grad_scale: 1/N for
 * "mean", 1/batch for "batchmean", 1 otherwise.  NaN propagates elementwise: every
 * select below is written so that a NaN input takes the branch that keeps it.
 */

/* ================================================================== activations */

/* sigmoid_elem_f32, sigmoid_elem_f64 */
static inline __attribute__((always_inline)) FL_T
FL_FN(sigmoid_elem)(FL_T x)
{
    /* exp only ever sees -|x|: e in (0, 1], no overflow for any x */
    FL_T a = x < 0 ? -x : x;
    FL_T e = FL_EXP(-a);
    FL_T r = (FL_T)1 / ((FL_T)1 + e);
    return x >= 0 ? r : e * r;       /* NaN: e is NaN, so is e * r */
}

/* softplus(u) = log(1 + exp(u)) = max(u, 0) + log1p(exp(-|u|)), finite for any u */
/* softplus_elem_f32, softplus_elem_f64 */
static inline __attribute__((always_inline)) FL_T
FL_FN(softplus_elem)(FL_T u)
{
    FL_T a = u < 0 ? -u : u;
    return (u > 0 ? u : (FL_T)0) + FL_LOG1P(FL_EXP(-a));
}

/* act_loop_f32, act_loop_f64 */
static inline __attribute__((always_inline)) void
FL_FN(act_loop)(const int op, const FL_T *x, FL_T *y, ptrdiff_t n, FL_T p0, FL_T p1)
{
#pragma omp simd
    for (ptrdiff_t k = 0; k < n; k++) {
        FL_T v = x[k], r;
        switch (op) {
        case FL_ACT_SIGMOID: r = FL_FN(sigmoid_elem)(v); break;
        case FL_ACT_TANH: r = FL_TANH(v); break;
        case FL_ACT_RELU: r = v > 0 ? v : (v != v ? v : (FL_T)0); break;   /* NaN stays NaN */
        case FL_ACT_LEAKY_RELU: r = v > 0 ? v : v * p0; break;               /* p0 = negative_slope */
        default: {                                                       /* softplus: p0 = beta, p1 = threshold */
            FL_T u = v * p0;
            r = u > p1 ? v : FL_FN(softplus_elem)(u) / p0;
        }
        }
        y[k] = r;
    }
}

/* activation_f32, activation_f64 (fl_kernel_table .activation_f32/_f64) */
static void
FL_FN(activation)(const FL_T *x, FL_T *y, ptrdiff_t n, int op, double p0, double p1)
{
    const FL_T a = (FL_T)p0, b = (FL_T)p1;
    switch (op) {
    case FL_ACT_SIGMOID: FL_FN(act_loop)(FL_ACT_SIGMOID, x, y, n, a, b); break;
    case FL_ACT_TANH: FL_FN(act_loop)(FL_ACT_TANH, x, y, n, a, b); break;
    case FL_ACT_RELU: FL_FN(act_loop)(FL_ACT_RELU, x, y, n, a, b); break;
    case FL_ACT_LEAKY_RELU: FL_FN(act_loop)(FL_ACT_LEAKY_RELU, x, y, n, a, b); break;
    default: FL_FN(act_loop)(FL_ACT_SOFTPLUS, x, y, n, a, b); break;
    }
}

/* Backward: g is the gradient w.r.t. the output; z the forward output (sigmoid,
 * tanh) or input (relu, leaky_relu, softplus), as in PyTorch. */
/* act_bwd_loop_f32, act_bwd_loop_f64 */
static inline __attribute__((always_inline)) void
FL_FN(act_bwd_loop)(const int op, const FL_T *g, const FL_T *z, FL_T *out, ptrdiff_t n,
                    FL_T p0, FL_T p1)
{
#pragma omp simd
    for (ptrdiff_t k = 0; k < n; k++) {
        FL_T gv = g[k], v = z[k], r;
        switch (op) {
        case FL_ACT_SIGMOID: r = gv * (v * ((FL_T)1 - v)); break;
        case FL_ACT_TANH: r = gv * ((FL_T)1 - v * v); break;
        case FL_ACT_RELU: r = v <= 0 ? (FL_T)0 : gv; break;                  /* PyTorch: 0 at x == 0 */
        case FL_ACT_LEAKY_RELU: r = v > 0 ? gv : gv * p0; break;
        default: {
            FL_T u = v * p0;
            r = u > p1 ? gv : gv * FL_FN(sigmoid_elem)(u);               /* d softplus = sigmoid(beta x) */
        }
        }
        out[k] = r;
    }
}

/* activation_backward_f32, activation_backward_f64 (fl_kernel_table .activation_backward_f32/_f64) */
static void
FL_FN(activation_backward)(const FL_T *g, const FL_T *z, FL_T *out, ptrdiff_t n, int op,
                           double p0, double p1)
{
    const FL_T a = (FL_T)p0, b = (FL_T)p1;
    switch (op) {
    case FL_ACT_SIGMOID: FL_FN(act_bwd_loop)(FL_ACT_SIGMOID, g, z, out, n, a, b); break;
    case FL_ACT_TANH: FL_FN(act_bwd_loop)(FL_ACT_TANH, g, z, out, n, a, b); break;
    case FL_ACT_RELU: FL_FN(act_bwd_loop)(FL_ACT_RELU, g, z, out, n, a, b); break;
    case FL_ACT_LEAKY_RELU: FL_FN(act_bwd_loop)(FL_ACT_LEAKY_RELU, g, z, out, n, a, b); break;
    default: FL_FN(act_bwd_loop)(FL_ACT_SOFTPLUS, g, z, out, n, a, b); break;
    }
}

/* ================================================================== pointwise losses */

/* Loss *l and gradient *d of one element, the gradient times the reduction's scale
 * (gs in double, gsf the same in the element type).  x is the input, t the target,
 * w the weight and pw the pos_weight at this element.  The losses computed in the
 * element type scale their gradient there too: no round trip through double. */
/* ploss_elem_f32, ploss_elem_f64 */
static inline __attribute__((always_inline)) void
FL_FN(ploss_elem)(const int op, FL_T x, FL_T t, FL_T w, FL_T pw, double prm,
                  double iprm, double gs, FL_T gsf, double *l, FL_T *d)
{
    switch (op) {
    case FL_LOSS_MSE: {
        double r = (double)x - (double)t;
        *l = r * r;
        *d = (FL_T)(2.0 * r * gs);
        break;
    }
    case FL_LOSS_SMOOTH_L1:        /* prm = beta >= 0, iprm = 1 / beta; beta == 0 is L1 */
    case FL_LOSS_HUBER: {          /* prm = delta > 0 */
        double r = (double)x - (double)t;
        double a = r < 0 ? -r : r;
        double sgn = r > 0 ? 1.0 : (r < 0 ? -1.0 : r);   /* sign(0) = 0, NaN stays NaN */
        int inside = a < prm;                           /* false for NaN and for beta == 0 */
        if (op == FL_LOSS_SMOOTH_L1) {
            /* times 1/beta, not / beta: a vector division per element measured
             * about half the time of this loop (the results differ by an ulp) */
            *l = inside ? 0.5 * r * r * iprm : a - 0.5 * prm;
            *d = (FL_T)((inside ? r * iprm : sgn) * gs);
        } else {
            *l = inside ? 0.5 * r * r : prm * (a - 0.5 * prm);
            *d = (FL_T)((inside ? r : prm * sgn) * gs);
        }
        break;
    }
    case FL_LOSS_BCE: {
        /* PyTorch: -(t log p + (1 - t) log(1 - p)), each log clamped at -100 (so p of
         * exactly 0 or 1 gives a finite loss), gradient (p - t) / max(p (1 - p), EPS)
         * with PyTorch's EPS = 1e-12 as a float constant: float32(1e-12) for double
         * data too.  `v < -100 ? -100 : v` keeps NaN. */
        FL_T lp = FL_LOG(x), l1p = FL_LOG1P(-x);
        lp = lp < (FL_T)-100 ? (FL_T)-100 : lp;
        l1p = l1p < (FL_T)-100 ? (FL_T)-100 : l1p;
        FL_T q = ((FL_T)1 - x) * x;
        q = q < (FL_T)1e-12f ? (FL_T)1e-12f : q;
        *l = (double)(-w * (t * lp + ((FL_T)1 - t) * l1p));
        *d = w * ((x - t) / q) * gsf;
        break;
    }
    case FL_LOSS_BCE_LOGITS: {
        /* With lw = 1 + (pw - 1) t and sp = log1p(exp(-|x|)):
         *   loss = lw softplus(-x) + (1 - t) x
         *        = lw sp + (1 - t) x   for x >= 0
         *        = lw sp - pw t x      for x < 0      (softplus(-x) = -x + softplus(x))
         * so no term cancels another and exp never overflows, for any finite x.
         *   d/dx = lw sigmoid(x) - pw t, with s = sigmoid(-|x|) = e / (1 + e):
         *        = (1 - t) - lw s      for x >= 0
         *        = lw s - pw t         for x < 0                                    */
        FL_T a = x < 0 ? -x : x;
        FL_T e = FL_EXP(-a);
        FL_T sp = FL_LOG1P(e);
        FL_T s = e / ((FL_T)1 + e);
        FL_T pt = pw * t;
        FL_T lw = (FL_T)1 + pt - t;
        FL_T omt = (FL_T)1 - t;
        int neg = x < 0;
        /* The linear term in double: pw t |x| overflows float near FLT_MAX where the
         * reduced loss (summed in double) still fits. */
        *l = (double)w * ((double)lw * (double)sp
                          + (neg ? -(double)pt * (double)x : (double)omt * (double)x));
        *d = w * (neg ? lw * s - pt : omt - lw * s) * gsf;
        break;
    }
    case FL_LOSS_KL_DIV: {
        /* t (log t - x), formed in double for float data too (see Precision: the
         * terms of a KL divergence cancel in the sum).  A target of 0 contributes 0
         * (0 log 0 = 0) even against an input of -inf, but a NaN input still gives
         * NaN.  The gradient -t has no such error: it stays in the element type. */
        double td = (double)t;
        double v = td * (fl_log(td) - (double)x);
        *l = (t == 0 && x == x) ? 0.0 : v;
        *d = -t * gsf;
        break;
    }
    default: {                /* FL_LOSS_KL_DIV_LOG: the target holds log-probabilities */
        /* exp(t) (t - x), in double as above; the gradient -exp(t) reuses that exp
         * (rounded once to the element type rather than a second, float exp). */
        double td = (double)t;
        double q = fl_exp(td);
        double v = q * (td - (double)x);
        *l = (t == -INFINITY && x == x) ? 0.0 : v;
        *d = (FL_T)(-q * gs);
        break;
    }
    }
}

/* One stretch of n elements in which each broadcast factor is either a contiguous
 * vector (wvec/pvec set) or a scalar.  Writes the per-element losses (lo) and the
 * gradient (g) when asked for and returns the sum of the losses. */
/* ploss_stretch_f32, ploss_stretch_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ploss_stretch)(const int op, const int has_lo, const int has_g, const int wvec,
                     const int pvec, const FL_T *x, const FL_T *t, FL_T *lo, FL_T *g,
                     ptrdiff_t n, const FL_T *wv, FL_T ws, const FL_T *pv, FL_T ps,
                     double prm, double gscale)
{
    const FL_T gsf = (FL_T)gscale;
    const double iprm = 1.0 / prm;       /* inf for beta == 0, where it is never selected */
    double s = 0.0;
#pragma omp simd reduction(+:s)
    for (ptrdiff_t k = 0; k < n; k++) {
        double l;
        FL_T d;
        FL_FN(ploss_elem)(op, x[k], t[k], wvec ? wv[k] : ws, pvec ? pv[k] : ps, prm, iprm,
                          gscale, gsf, &l, &d);
        if (has_lo) lo[k] = (FL_T)l;
        if (has_g) g[k] = d;
        s += l;
    }
    return s;
}

/* Length of the stretch starting at element k (at most maxlen) over which factor b
 * is one vector (*vec) or one scalar (*vec = NULL, *scalar); tile, when not NULL, is
 * the factor's pattern repeated over tile_len elements (a multiple of its period). */
/* bcast_stretch_f32, bcast_stretch_f64 */
static inline __attribute__((always_inline)) ptrdiff_t
FL_FN(bcast_stretch)(const fl_bcast *b, const FL_T *tile, ptrdiff_t tile_len, ptrdiff_t k,
                     ptrdiff_t maxlen, const FL_T **vec, FL_T *scalar)
{
    ptrdiff_t len;
    if (b->ptr == NULL) {
        *vec = NULL;
        *scalar = (FL_T)1;
        return maxlen;
    }
    if (tile != NULL) {
        ptrdiff_t off = k % (b->rep * b->period);
        *vec = tile + off;
        len = tile_len - off;
    } else if (b->rep == 1) {
        ptrdiff_t j = k % b->period;
        *vec = (const FL_T *)b->ptr + j;
        len = b->period - j;
    } else {
        *vec = NULL;
        *scalar = ((const FL_T *)b->ptr)[(k / b->rep) % b->period];
        len = b->rep - k % b->rep;
    }
    return len < maxlen ? len : maxlen;
}

/* Fill tile with the factor's pattern when it is short; returns the tile length or 0. */
/* bcast_tile_f32, bcast_tile_f64 */
static inline ptrdiff_t
FL_FN(bcast_tile)(const fl_bcast *b, FL_T *tile)
{
    if (b->ptr == NULL) return 0;
    ptrdiff_t p = b->rep * b->period;
    if (p > FL_TILE_MAX_PERIOD) return 0;
    ptrdiff_t len = (FL_TILE_ELEMS / p) * p;
    for (ptrdiff_t i = 0; i < len; i++)
        tile[i] = ((const FL_T *)b->ptr)[(i / b->rep) % b->period];
    return len;
}

/* ploss_run_f32, ploss_run_f64 */
static inline __attribute__((always_inline)) double
FL_FN(ploss_run)(const int op, const int has_lo, const int has_g, const FL_T *x,
                 const FL_T *t, FL_T *lo, FL_T *g, ptrdiff_t begin, ptrdiff_t end,
                 const fl_ploss_args *a)
{
    const double prm = a->param, gs = a->grad_scale;
    if (op != FL_LOSS_BCE && op != FL_LOSS_BCE_LOGITS)      /* no factors: one stretch */
        return FL_FN(ploss_stretch)(op, has_lo, has_g, 0, 0, x + begin, t + begin,
                                    has_lo ? lo + begin : NULL, has_g ? g + begin : NULL,
                                    end - begin, NULL, (FL_T)1, NULL, (FL_T)1, prm, gs);
    FL_T wtile[FL_TILE_ELEMS], ptile[FL_TILE_ELEMS];
    ptrdiff_t wlen = FL_FN(bcast_tile)(&a->weight, wtile);
    ptrdiff_t plen = FL_FN(bcast_tile)(&a->pos_weight, ptile);
    double s = 0.0;
    for (ptrdiff_t k = begin, len; k < end; k += len) {
        const FL_T *wv, *pv;
        FL_T ws = (FL_T)1, ps = (FL_T)1;   /* set by bcast_stretch; initialized for -Wmaybe-uninitialized */
        len = FL_FN(bcast_stretch)(&a->weight, wlen ? wtile : NULL, wlen, k, end - k, &wv, &ws);
        len = FL_FN(bcast_stretch)(&a->pos_weight, plen ? ptile : NULL, plen, k, len, &pv, &ps);
        const FL_T *xk = x + k, *tk = t + k;
        FL_T *lk = has_lo ? lo + k : NULL, *gk = has_g ? g + k : NULL;
        if (wv && pv)
            s += FL_FN(ploss_stretch)(op, has_lo, has_g, 1, 1, xk, tk, lk, gk, len, wv, ws, pv, ps, prm, gs);
        else if (wv)
            s += FL_FN(ploss_stretch)(op, has_lo, has_g, 1, 0, xk, tk, lk, gk, len, wv, ws, pv, ps, prm, gs);
        else if (pv)
            s += FL_FN(ploss_stretch)(op, has_lo, has_g, 0, 1, xk, tk, lk, gk, len, wv, ws, pv, ps, prm, gs);
        else
            s += FL_FN(ploss_stretch)(op, has_lo, has_g, 0, 0, xk, tk, lk, gk, len, wv, ws, pv, ps, prm, gs);
    }
    return s;
}

/* One instantiation per (op, outputs): the op and the output flags are constants
 * inside, so each loop is specialized and vectorized on its own. */
#define FL_PLOSS_MODES(OP)                                                              \
    switch (mode) {                                                                     \
    case 0: return FL_FN(ploss_run)(OP, 0, 0, x, t, lo, g, begin, end, a);              \
    case 1: return FL_FN(ploss_run)(OP, 1, 0, x, t, lo, g, begin, end, a);              \
    case 2: return FL_FN(ploss_run)(OP, 0, 1, x, t, lo, g, begin, end, a);              \
    default: return FL_FN(ploss_run)(OP, 1, 1, x, t, lo, g, begin, end, a);             \
    }

/* Sum over [begin, end) of the element losses; lo (per-element losses) and g
 * (gradient) are written where not NULL. */
/* pointwise_loss_f32, pointwise_loss_f64 (fl_kernel_table .pointwise_loss_f32/_f64) */
static double
FL_FN(pointwise_loss)(const FL_T *x, const FL_T *t, FL_T *lo, FL_T *g, ptrdiff_t begin,
                      ptrdiff_t end, const fl_ploss_args *a)
{
    const int mode = (lo != NULL) | ((g != NULL) << 1);
    switch (a->op) {
    case FL_LOSS_MSE: FL_PLOSS_MODES(FL_LOSS_MSE)
    case FL_LOSS_SMOOTH_L1: FL_PLOSS_MODES(FL_LOSS_SMOOTH_L1)
    case FL_LOSS_HUBER: FL_PLOSS_MODES(FL_LOSS_HUBER)
    case FL_LOSS_BCE: FL_PLOSS_MODES(FL_LOSS_BCE)
    case FL_LOSS_BCE_LOGITS: FL_PLOSS_MODES(FL_LOSS_BCE_LOGITS)
    case FL_LOSS_KL_DIV: FL_PLOSS_MODES(FL_LOSS_KL_DIV)
    default: FL_PLOSS_MODES(FL_LOSS_KL_DIV_LOG)
    }
}
#undef FL_PLOSS_MODES

/* First k in [begin, end) with x[k] outside [lo, hi], or -1 (NaN is not outside).
 * Blocks of FL_TILE_ELEMS are tested with one vectorized count each. */
/* first_outside_f32, first_outside_f64 (fl_kernel_table .first_outside_f32/_f64) */
static ptrdiff_t
FL_FN(first_outside)(const FL_T *x, ptrdiff_t begin, ptrdiff_t end, double lo, double hi)
{
    const FL_T l = (FL_T)lo, h = (FL_T)hi;
    for (ptrdiff_t k0 = begin; k0 < end; k0 += FL_TILE_ELEMS) {
        ptrdiff_t k1 = end - k0 < FL_TILE_ELEMS ? end : k0 + FL_TILE_ELEMS;
        int bad = 0;
#pragma omp simd reduction(|:bad)
        for (ptrdiff_t k = k0; k < k1; k++)
            bad |= (x[k] < l) | (x[k] > h);
        if (bad)
            for (ptrdiff_t k = k0; k < k1; k++)
                if (x[k] < l || x[k] > h) return k;
    }
    return -1;
}

/* ================================================================== multi-class margin */

/* The hinge terms of classes [0, n) of one row, none of them the target:
 * z_j = base + x_j with base = margin - x_y.  Adds sum_j h_j to *hsum and, when
 * has_g, writes g_j = dh_j/dx_j * gfac and adds it to *gsum. */
/* margin_span_f32, margin_span_f64 */
static inline __attribute__((always_inline)) void
FL_FN(margin_span)(const int p2, const int has_g, const FL_T *x, ptrdiff_t xs, FL_T *g,
                   ptrdiff_t gst, ptrdiff_t n, double base, double gfac, double *hsum,
                   double *gsum)
{
    double hs = 0.0, gsm = 0.0;
#pragma omp simd reduction(+:hs, gsm)
    for (ptrdiff_t j = 0; j < n; j++) {
        double z = base + (double)x[j * xs];
        double pos = z > 0 ? z : (z != z ? z : 0.0);      /* max(z, 0), NaN kept */
        hs += p2 ? pos * pos : pos;
        if (has_g) {
            double d = (p2 ? 2.0 * pos : (z > 0 ? 1.0 : (z != z ? z : 0.0))) * gfac;
            g[j * gst] = (FL_T)d;
            gsm += d;
        }
    }
    *hsum += hs;
    *gsum += gsm;
}

/* margin_run_f32, margin_run_f64 */
static inline __attribute__((always_inline)) double
FL_FN(margin_run)(const int p2, const int has_g, const int unit, const FL_T *x,
                  const ptrdiff_t *target, FL_T *lo, FL_T *g, const fl_view3 *v,
                  ptrdiff_t lb, ptrdiff_t le, const fl_margin_args *a)
{
    const ptrdiff_t n = v->n;
    const ptrdiff_t xs = unit ? 1 : v->sa[1], gst = unit ? 1 : v->so[1];  /* gst unused without g */
    const double *weight = a->weight;
    const double inv_c = 1.0 / (double)n;
    double total = 0.0;
    for (ptrdiff_t r = lb; r < le; r++) {
        ptrdiff_t o = r / v->inner, i = r - o * v->inner;
        const FL_T *xr = x + o * v->sa[0] + i * v->sa[2];
        FL_T *gr = has_g ? g + o * v->so[0] + i * v->so[2] : NULL;
        const ptrdiff_t y = target[r];
        const double wy = weight ? weight[y] : 1.0;
        const double base = a->margin - (double)xr[y * xs];   /* read before any write */
        const double gfac = wy * inv_c * a->grad_scale;
        double hsum = 0.0, gsum = 0.0;
        FL_FN(margin_span)(p2, has_g, xr, xs, gr, gst, y, base, gfac, &hsum, &gsum);
        FL_FN(margin_span)(p2, has_g, xr + (y + 1) * xs, xs, gr ? gr + (y + 1) * gst : NULL,
                           gst, n - y - 1, base, gfac, &hsum, &gsum);
        if (has_g) gr[y * gst] = (FL_T)-gsum;      /* x_y enters every z_j with sign -1 */
        double row = wy * hsum * inv_c;
        if (lo) lo[r] = (FL_T)row;
        total += row;
    }
    return total;
}

/* Multi-class hinge loss of lanes [lb, le) of an (outer, C, inner) view: target[r]
 * is the class of lane r (validated by the caller), lo[r] receives its loss when not
 * NULL, g (strides so) the gradient when not NULL.  Returns the sum of the lanes'
 * losses. */
/* multi_margin_f32, multi_margin_f64 (fl_kernel_table .multi_margin_f32/_f64) */
static double
FL_FN(multi_margin)(const FL_T *x, const ptrdiff_t *target, FL_T *lo, FL_T *g,
                    const fl_view3 *v, ptrdiff_t lb, ptrdiff_t le, const fl_margin_args *a)
{
    const int unit = v->sa[1] == 1 && (g == NULL || v->so[1] == 1);
    const int p2 = a->p == 2;
    if (g == NULL && unit)
        return p2 ? FL_FN(margin_run)(1, 0, 1, x, target, lo, g, v, lb, le, a)
                  : FL_FN(margin_run)(0, 0, 1, x, target, lo, g, v, lb, le, a);
    if (g == NULL)
        return p2 ? FL_FN(margin_run)(1, 0, 0, x, target, lo, g, v, lb, le, a)
                  : FL_FN(margin_run)(0, 0, 0, x, target, lo, g, v, lb, le, a);
    if (unit)
        return p2 ? FL_FN(margin_run)(1, 1, 1, x, target, lo, g, v, lb, le, a)
                  : FL_FN(margin_run)(0, 1, 1, x, target, lo, g, v, lb, le, a);
    return p2 ? FL_FN(margin_run)(1, 1, 0, x, target, lo, g, v, lb, le, a)
              : FL_FN(margin_run)(0, 1, 0, x, target, lo, g, v, lb, le, a);
}
