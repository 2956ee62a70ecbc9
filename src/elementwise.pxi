# Activations, pointwise losses and the multi-class margin loss (src/csrc/elementwise_impl.h).
#
# The activations and pointwise losses take flat contiguous 1-D views (# IN / # OUT
# below); the wrapper makes them so.  Each thread gets one contiguous range of
# elements, its start rounded down to a multiple of ALIGN_ELEMENTS so that no two
# threads write the same cache line.  Optional outputs and factors are None.

cdef enum:
    # 64 elements = 256 or 512 bytes: whole cache lines, and whole vectors, per thread
    ALIGN_ELEMENTS = 64


cdef inline Py_ssize_t split_point(Py_ssize_t n, int t, int nt) noexcept nogil:
    """Start of thread t's range of n elements split nt ways (nt itself gives n)."""
    if t >= nt:
        return n
    return (n * t // nt) // ALIGN_ELEMENTS * ALIGN_ELEMENTS


def activation(const floating[::1] x,      # IN
               floating[::1] out,          # OUT (may be x)
               int op, double p0, double p1, int n_threads):
    """out = f(x) for the activation `op` (FL_ACT_*); p0, p1 its parameters."""
    cdef Py_ssize_t n = x.shape[0], begin, end
    cdef int t, nt = threads_for(n, n, n_threads)
    if n == 0:
        return
    with nogil:
        if nt == 1:
            if floating is float:
                fl_active.activation_f32(&x[0], &out[0], n, op, p0, p1)
            else:
                fl_active.activation_f64(&x[0], &out[0], n, op, p0, p1)
        else:
            for t in prange(nt, num_threads=nt, schedule='static'):
                begin = split_point(n, t, nt)
                end = split_point(n, t + 1, nt)
                if floating is float:
                    fl_active.activation_f32(&x[begin], &out[begin], end - begin, op, p0, p1)
                else:
                    fl_active.activation_f64(&x[begin], &out[begin], end - begin, op, p0, p1)


def activation_backward(const floating[::1] g,   # IN  gradient w.r.t. the output
                        const floating[::1] z,   # IN  forward output or input
                        floating[::1] out,       # OUT (may be g or z)
                        int op, double p0, double p1, int n_threads):
    """out = g * f'(.) for the activation `op`."""
    cdef Py_ssize_t n = g.shape[0], begin, end
    cdef int t, nt = threads_for(n, n, n_threads)
    if n == 0:
        return
    with nogil:
        if nt == 1:
            if floating is float:
                fl_active.activation_backward_f32(&g[0], &z[0], &out[0], n, op, p0, p1)
            else:
                fl_active.activation_backward_f64(&g[0], &z[0], &out[0], n, op, p0, p1)
        else:
            for t in prange(nt, num_threads=nt, schedule='static'):
                begin = split_point(n, t, nt)
                end = split_point(n, t + 1, nt)
                if floating is float:
                    fl_active.activation_backward_f32(&g[begin], &z[begin], &out[begin],
                                                      end - begin, op, p0, p1)
                else:
                    fl_active.activation_backward_f64(&g[begin], &z[begin], &out[begin],
                                                      end - begin, op, p0, p1)


def pointwise_loss(const floating[::1] x,            # IN  input
                   const floating[::1] t,            # IN  target (same length)
                   floating[::1] loss_out,           # OUT per-element losses, or None
                   floating[::1] grad,               # OUT gradient (may be x), or None
                   int op, double param, double grad_scale,
                   const floating[::1] weight,       # IN  broadcast factor, or None
                   Py_ssize_t w_rep, Py_ssize_t w_period,
                   const floating[::1] pos_weight,   # IN  broadcast factor, or None
                   Py_ssize_t pw_rep, Py_ssize_t pw_period,
                   int n_threads):
    """Sum of the element losses of `op` (FL_LOSS_*); fills loss_out and grad if given.

    A factor's element k is factor[(k // rep) % period] (see fl_bcast).
    """
    cdef Py_ssize_t n = x.shape[0], begin, end
    cdef int i, nt = threads_for(n, n, n_threads)
    cdef fl_ploss_args a
    cdef floating *lo = NULL
    cdef floating *gp = NULL
    cdef double total = 0.0
    if n == 0:
        return 0.0
    a.op = op
    a.param = param
    a.grad_scale = grad_scale
    a.weight.ptr = NULL
    a.weight.rep = w_rep
    a.weight.period = w_period
    a.pos_weight.ptr = NULL
    a.pos_weight.rep = pw_rep
    a.pos_weight.period = pw_period
    if weight is not None and weight.shape[0] > 0:
        a.weight.ptr = &weight[0]
    if pos_weight is not None and pos_weight.shape[0] > 0:
        a.pos_weight.ptr = &pos_weight[0]
    if loss_out is not None:
        lo = &loss_out[0]
    if grad is not None:
        gp = &grad[0]
    with nogil:
        if nt == 1:
            if floating is float:
                total = fl_active.pointwise_loss_f32(&x[0], &t[0], lo, gp, 0, n, &a)
            else:
                total = fl_active.pointwise_loss_f64(&x[0], &t[0], lo, gp, 0, n, &a)
        else:
            for i in prange(nt, num_threads=nt, schedule='static'):
                begin = split_point(n, i, nt)
                end = split_point(n, i + 1, nt)
                if floating is float:
                    total += fl_active.pointwise_loss_f32(&x[0], &t[0], lo, gp, begin, end, &a)
                else:
                    total += fl_active.pointwise_loss_f64(&x[0], &t[0], lo, gp, begin, end, &a)
    return total


def first_outside(const floating[::1] x, double lo, double hi, int n_threads):   # IN x
    """Index of the first element outside [lo, hi] (NaN is not outside), or -1."""
    cdef Py_ssize_t n = x.shape[0], begin, end, first = -1
    cdef int i, nt = threads_for(n, n, n_threads)
    cdef Py_ssize_t *found
    if n == 0:
        return -1
    found = <Py_ssize_t *>malloc(nt * sizeof(Py_ssize_t))
    if found == NULL:
        raise MemoryError()
    with nogil:
        for i in prange(nt, num_threads=nt, schedule='static'):
            begin = split_point(n, i, nt)
            end = split_point(n, i + 1, nt)
            if floating is float:
                found[i] = fl_active.first_outside_f32(&x[0], begin, end, lo, hi)
            else:
                found[i] = fl_active.first_outside_f64(&x[0], begin, end, lo, hi)
        for i in range(nt):     # ranges are in order: the first hit is the smallest
            if found[i] >= 0:
                first = found[i]
                break
    free(found)
    return first


def multi_margin(const floating[:, :, :] x,        # IN  (outer, C, inner) scores
                 const Py_ssize_t[::1] target,     # IN  one class per lane, validated
                 floating[::1] loss_out,           # OUT per-lane losses, or None
                 floating[:, :, :] grad,           # OUT like x (may be x), or None
                 int p, double margin,
                 const double[::1] weight,         # IN  per-class weight, or None
                 double grad_scale, int n_threads):
    """Sum over lanes of the multi-class hinge loss; fills loss_out and grad if given."""
    cdef fl_view3 v
    cdef fl_margin_args a
    cdef Py_ssize_t lanes = x.shape[0] * x.shape[2], begin, end
    cdef int i, nt
    cdef floating *lo = NULL
    cdef floating *gp = NULL
    cdef double total = 0.0
    if lanes == 0 or x.shape[1] == 0:     # no class: the caller rejected every target
        return 0.0
    v.outer, v.n, v.inner = x.shape[0], x.shape[1], x.shape[2]
    v.fresh_out = 0
    set_strides(v.sa, x.strides, sizeof(floating), 3)
    v.so[0] = v.so[1] = v.so[2] = 0
    if grad is not None:
        set_strides(v.so, grad.strides, sizeof(floating), 3)
        gp = &grad[0, 0, 0]
    if loss_out is not None:
        lo = &loss_out[0]
    a.p = p
    a.margin = margin
    a.weight = &weight[0] if weight is not None else NULL
    a.grad_scale = grad_scale
    nt = threads_for(lanes, lanes * v.n, n_threads)
    with nogil:
        if nt == 1:
            if floating is float:
                total = fl_active.multi_margin_f32(&x[0, 0, 0], &target[0], lo, gp, &v, 0, lanes, &a)
            else:
                total = fl_active.multi_margin_f64(&x[0, 0, 0], &target[0], lo, gp, &v, 0, lanes, &a)
        else:
            for i in prange(nt, num_threads=nt, schedule='static'):
                begin = lanes * i // nt
                end = lanes * (i + 1) // nt
                if floating is float:
                    total += fl_active.multi_margin_f32(&x[0, 0, 0], &target[0], lo, gp, &v, begin, end, &a)
                else:
                    total += fl_active.multi_margin_f64(&x[0, 0, 0], &target[0], lo, gp, &v, begin, end, &a)
    return total
