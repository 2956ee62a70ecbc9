# Softmax family: softmax / log_softmax, logsumexp and the two backward passes.
# Every array arrives as an (outer, n, inner) view; `lanes` = outer * inner rows.

cdef bint view_is_fresh(floating[:, :, :] out) noexcept nogil:
    """fl_output_is_fresh over the bytes the (non-empty) view spans."""
    cdef char *lo = <char *>&out[0, 0, 0]
    cdef Py_ssize_t span = sizeof(floating), step
    cdef int k
    for k in range(3):
        step = (out.shape[k] - 1) * out.strides[k]
        if step < 0:
            lo += step
            span -= step
        else:
            span += step
    return fl_output_is_fresh(lo, <size_t>span)


def softmax(const floating[:, :, :] x, floating[:, :, :] out, bint log_mode, int n_threads,
            bint fresh_out=False):
    """out = softmax(x) (or log_softmax) along axis 1 of the 3-D views; fresh_out: out
    was just allocated, and is not streamed into if its pages are fresh too (see
    fl_output_is_fresh, fl_stream_output)."""
    cdef fl_view3 v
    cdef Py_ssize_t lanes = x.shape[0] * x.shape[2], begin, end
    cdef int t, nt
    if lanes == 0 or x.shape[1] == 0:
        return
    v.outer, v.n, v.inner = x.shape[0], x.shape[1], x.shape[2]
    set_strides(v.sa, x.strides, sizeof(floating), 3)
    set_strides(v.so, out.strides, sizeof(floating), 3)
    v.fresh_out = fresh_out and view_is_fresh(out)
    nt = threads_for(lanes, lanes * v.n, n_threads)
    with nogil:
        if nt == 1:
            if floating is float:
                fl_active.softmax_f32(&x[0, 0, 0], &out[0, 0, 0], &v, 0, lanes, log_mode)
            else:
                fl_active.softmax_f64(&x[0, 0, 0], &out[0, 0, 0], &v, 0, lanes, log_mode)
        else:
            for t in prange(nt, num_threads=nt, schedule='static'):
                begin = lanes * t // nt
                end = lanes * (t + 1) // nt
                if floating is float:
                    fl_active.softmax_f32(&x[0, 0, 0], &out[0, 0, 0], &v, begin, end, log_mode)
                else:
                    fl_active.softmax_f64(&x[0, 0, 0], &out[0, 0, 0], &v, begin, end, log_mode)


def logsumexp(const floating[:, :, :] x, floating[:, :] out, int n_threads):
    """out[o, i] = log(sum_c exp(x[o, c, i])); an empty class axis gives -inf."""
    cdef fl_view3 v
    cdef Py_ssize_t lanes = x.shape[0] * x.shape[2], begin, end
    cdef int t, nt
    if lanes == 0:
        return
    v.outer, v.n, v.inner = x.shape[0], x.shape[1], x.shape[2]
    v.fresh_out = 0
    set_strides(v.sa, x.strides, sizeof(floating), 3)
    v.so[0] = out.strides[0] // sizeof(floating)
    v.so[1] = 0
    v.so[2] = out.strides[1] // sizeof(floating)
    nt = threads_for(lanes, lanes * v.n, n_threads)
    with nogil:
        if v.n == 0:
            for begin in range(x.shape[0]):
                for end in range(x.shape[2]):
                    out[begin, end] = -INFINITY
        elif nt == 1:
            if floating is float:
                fl_active.logsumexp_f32(&x[0, 0, 0], &out[0, 0], &v, 0, lanes)
            else:
                fl_active.logsumexp_f64(&x[0, 0, 0], &out[0, 0], &v, 0, lanes)
        else:
            for t in prange(nt, num_threads=nt, schedule='static'):
                begin = lanes * t // nt
                end = lanes * (t + 1) // nt
                if floating is float:
                    fl_active.logsumexp_f32(&x[0, 0, 0], &out[0, 0], &v, begin, end)
                else:
                    fl_active.logsumexp_f64(&x[0, 0, 0], &out[0, 0], &v, begin, end)


def softmax_backward(const floating[:, :, :] grad, const floating[:, :, :] y,
                     floating[:, :, :] out, bint log_mode, int n_threads):
    """Vector-Jacobian product of softmax (or log_softmax) given its output y."""
    cdef fl_view3 v
    cdef Py_ssize_t lanes = grad.shape[0] * grad.shape[2], begin, end
    cdef int t, nt
    if lanes == 0 or grad.shape[1] == 0:
        return
    v.outer, v.n, v.inner = grad.shape[0], grad.shape[1], grad.shape[2]
    v.fresh_out = 0
    set_strides(v.sa, grad.strides, sizeof(floating), 3)
    set_strides(v.sb, y.strides, sizeof(floating), 3)
    set_strides(v.so, out.strides, sizeof(floating), 3)
    nt = threads_for(lanes, lanes * v.n, n_threads)
    with nogil:
        if nt == 1:
            if floating is float:
                fl_active.softmax_backward_f32(&grad[0, 0, 0], &y[0, 0, 0], &out[0, 0, 0], &v, 0, lanes, log_mode)
            else:
                fl_active.softmax_backward_f64(&grad[0, 0, 0], &y[0, 0, 0], &out[0, 0, 0], &v, 0, lanes, log_mode)
        else:
            for t in prange(nt, num_threads=nt, schedule='static'):
                begin = lanes * t // nt
                end = lanes * (t + 1) // nt
                if floating is float:
                    fl_active.softmax_backward_f32(&grad[0, 0, 0], &y[0, 0, 0], &out[0, 0, 0], &v, begin, end, log_mode)
                else:
                    fl_active.softmax_backward_f64(&grad[0, 0, 0], &y[0, 0, 0], &out[0, 0, 0], &v, begin, end, log_mode)
