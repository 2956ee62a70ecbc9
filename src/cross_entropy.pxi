# Cross-entropy family: the fused cross-entropy kernel and the negative log-likelihood.
# The logits (and probability targets, gradient) arrive as (outer, C, inner) views;
# every per-lane array (class indices, sample weights, upstream gradients, per-lane
# losses) as an (outer, inner) view; `lanes` = outer * inner.  The wrapper
# (fastloss/_cross_entropy.py) has checked every class index: each one is either
# ignore_index or in [0, C).  The kernels check each index again as they read it (another
# thread may write to the labels while they run without the GIL): one outside [0, C)
# counts as ignored, never as an address, and the call raises afterwards
# (raise_if_label_changed).
#
# The loss sum of each thread's lane range goes to its own slot of `partial` and the
# slots are added in thread order after the parallel region: the result is the same
# from run to run for a given thread count.

from libc.stdlib cimport malloc, free
from libc.string cimport memset


def count_labels(const int64_t[::1] labels,   # IN  class indices
                 int64_t n_classes, int64_t ignore_index):
    """How many labels are not ``ignore_index``; -1 if one of them is outside [0, C).

    The wrappers' label check and ``"mean"`` denominator in one pass without the GIL, by
    the kernel table's count_labels (vectorized for the SIMD level: NumPy's comparisons
    and reductions cost several microseconds per call at classifier batch sizes); the
    shared NumPy check still builds the error message.
    """
    cdef Py_ssize_t count
    with nogil:
        count = fl_active.count_labels(&labels[0] if labels.shape[0] else NULL,
                                       labels.shape[0], n_classes, ignore_index)
    return count


cdef inline void set_lane_strides(Py_ssize_t *dst, Py_ssize_t[8] strides,
                                  Py_ssize_t itemsize) noexcept nogil:
    dst[0] = strides[0] // itemsize
    dst[1] = strides[1] // itemsize


cdef double run_ce(const floating *x, const floating *q, floating *g, floating *loss,
                   const fl_view3 *v, const fl_ce_args *a, Py_ssize_t lanes, int nt,
                   bint nll) noexcept nogil:
    """Call the kernel over `lanes` lanes on `nt` threads; the summed weighted losses."""
    cdef double total = 0.0
    cdef double *partial
    cdef Py_ssize_t begin, end
    cdef int t
    if nt == 1:
        if nll:
            if floating is float:
                return fl_active.nll_f32(x, g, loss, v, a, 0, lanes)
            else:
                return fl_active.nll_f64(x, g, loss, v, a, 0, lanes)
        if floating is float:
            return fl_active.cross_entropy_f32(x, q, g, loss, v, a, 0, lanes)
        else:
            return fl_active.cross_entropy_f64(x, q, g, loss, v, a, 0, lanes)
    partial = <double *>malloc(nt * sizeof(double))
    if partial == NULL:   # no memory for nt doubles: run on one thread instead
        return run_ce(x, q, g, loss, v, a, lanes, 1, nll)
    for t in prange(nt, num_threads=nt, schedule='static'):
        begin = lanes * t // nt
        end = lanes * (t + 1) // nt
        if nll:
            if floating is float:
                partial[t] = fl_active.nll_f32(x, g, loss, v, a, begin, end)
            else:
                partial[t] = fl_active.nll_f64(x, g, loss, v, a, begin, end)
        else:
            if floating is float:
                partial[t] = fl_active.cross_entropy_f32(x, q, g, loss, v, a, begin, end)
            else:
                partial[t] = fl_active.cross_entropy_f64(x, q, g, loss, v, a, begin, end)
    for t in range(nt):
        total += partial[t]
    free(partial)
    return total


cdef void fill_ce_args(fl_ce_args *a, const int64_t[:, :] target, int64_t ignore_index,
                       const double[:, :] sample_weight, const double[::1] weight,
                       double weight_sum, double label_smoothing,
                       const double[:, :] grad_scale, double grad_scale0, bint want_loss):
    memset(a, 0, sizeof(fl_ce_args))
    if target is not None:
        a.target = &target[0, 0]
        set_lane_strides(a.ts, target.strides, sizeof(int64_t))
    a.ignore_index = ignore_index
    if sample_weight is not None:
        a.sample_weight = &sample_weight[0, 0]
        set_lane_strides(a.sws, sample_weight.strides, sizeof(double))
    if weight is not None:
        a.weight = &weight[0]
    a.weight_sum = weight_sum
    a.label_smoothing = label_smoothing
    if grad_scale is not None:
        a.grad_scale = &grad_scale[0, 0]
        set_lane_strides(a.gss, grad_scale.strides, sizeof(double))
    a.grad_scale0 = grad_scale0
    a.want_loss = want_loss


cdef raise_if_label_changed(int fault):
    if fault:
        raise ValueError("target: a class index outside [0, C) was read during the call "
                         "although every index had been checked before it: another "
                         "thread wrote to the labels meanwhile (that row counted as "
                         "ignored; the outputs are not to be used)")


def cross_entropy(const floating[:, :, :] x,          # IN  logits (outer, C, inner)
                  const floating[:, :, :] q,          # IN  class probabilities, or None
                  const int64_t[:, :] target,         # IN  class indices (outer, inner), or None
                  int64_t ignore_index,
                  const double[:, :] sample_weight,   # IN  per lane, or None
                  const double[::1] weight,           # IN  per class, or None
                  double weight_sum,                  # IN  sum of weight (C if None)
                  double label_smoothing,
                  const double[:, :] grad_scale,      # IN  upstream gradient per lane, or None
                  double grad_scale0,                 # IN  upstream gradient of every lane otherwise
                  floating[:, :, :] grad,             # OUT gradient (may be x itself), or None
                  floating[:, :] loss,                # OUT weighted loss per lane, or None
                  bint want_loss,
                  int n_threads):
    """Fused cross-entropy: returns the sum of the weighted per-lane losses (float64).

    Exactly one of ``q`` and ``target`` is given.  Lanes have at least one class.
    """
    cdef fl_view3 v
    cdef fl_ce_args a
    cdef Py_ssize_t lanes = x.shape[0] * x.shape[2]
    cdef int nt
    cdef double total
    cdef const floating *qp = NULL
    cdef floating *gp = NULL
    cdef floating *lp = NULL
    cdef int label_fault = 0
    if lanes == 0:
        return 0.0
    memset(&v, 0, sizeof(v))
    v.outer, v.n, v.inner = x.shape[0], x.shape[1], x.shape[2]
    set_strides(v.sa, x.strides, sizeof(floating), 3)
    if q is not None:
        set_strides(v.sb, q.strides, sizeof(floating), 3)
        qp = &q[0, 0, 0]
    if grad is not None:
        set_strides(v.so, grad.strides, sizeof(floating), 3)
        gp = &grad[0, 0, 0]
    fill_ce_args(&a, target, ignore_index, sample_weight, weight, weight_sum,
                 label_smoothing, grad_scale, grad_scale0, want_loss)
    if loss is not None:
        set_lane_strides(a.ls, loss.strides, sizeof(floating))
        lp = &loss[0, 0]
    a.label_fault = &label_fault
    nt = threads_for(lanes, lanes * v.n, n_threads)
    with nogil:
        total = run_ce(&x[0, 0, 0], qp, gp, lp, &v, &a, lanes, nt, False)
    raise_if_label_changed(label_fault)
    return total


def nll_loss(const floating[:, :, :] x,          # IN  log-probabilities (outer, C, inner)
             const int64_t[:, :] target,         # IN  class indices (outer, inner)
             int64_t ignore_index,
             const double[::1] weight,           # IN  per class, or None
             double grad_scale0,                 # IN  upstream gradient of every lane
             floating[:, :, :] grad,             # OUT gradient, or None
             bint grad_zeroed,                   # IN  grad holds zeros already
             floating[:, :] loss,                # OUT weighted loss per lane, or None
             int n_threads):
    """Negative log-likelihood: returns the sum of -weight[y] * x[y] over the lanes."""
    cdef fl_view3 v
    cdef fl_ce_args a
    cdef Py_ssize_t lanes = x.shape[0] * x.shape[2]
    cdef int nt
    cdef double total
    cdef floating *gp = NULL
    cdef floating *lp = NULL
    cdef int label_fault = 0
    if lanes == 0:
        return 0.0
    memset(&v, 0, sizeof(v))
    v.outer, v.n, v.inner = x.shape[0], x.shape[1], x.shape[2]
    set_strides(v.sa, x.strides, sizeof(floating), 3)
    if grad is not None:
        set_strides(v.so, grad.strides, sizeof(floating), 3)
        gp = &grad[0, 0, 0]
    fill_ce_args(&a, target, ignore_index, None, weight, 0.0, 0.0, None, grad_scale0, True)
    a.label_fault = &label_fault
    a.grad_zeroed = grad_zeroed
    if loss is not None:
        set_lane_strides(a.ls, loss.strides, sizeof(floating))
        lp = &loss[0, 0]
    nt = threads_for(lanes, lanes * (v.n if grad is not None and not grad_zeroed else 1),
                     n_threads)
    with nogil:
        total = run_ce(&x[0, 0, 0], NULL, gp, lp, &v, &a, lanes, nt, True)
    raise_if_label_changed(label_fault)
    return total
