# C declarations of the SIMD kernel interface (src/csrc/fl_kernels.h).
cdef extern from "fl_kernels.h" nogil:
    ctypedef struct fl_view3:
        Py_ssize_t outer, n, inner
        Py_ssize_t sa[3]
        Py_ssize_t sb[3]
        Py_ssize_t so[3]

    ctypedef void (*fl_softmax_f32_fn)(const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_softmax_f64_fn)(const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_logsumexp_f32_fn)(const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fl_logsumexp_f64_fn)(const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fl_softmax_bwd_f32_fn)(const float *, const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_softmax_bwd_f64_fn)(const double *, const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil

    ctypedef struct fl_kernel_table:
        const char *isa_name
        fl_softmax_f32_fn softmax_f32
        fl_softmax_f64_fn softmax_f64
        fl_logsumexp_f32_fn logsumexp_f32
        fl_logsumexp_f64_fn logsumexp_f64
        fl_softmax_bwd_f32_fn softmax_backward_f32
        fl_softmax_bwd_f64_fn softmax_backward_f64

    const fl_kernel_table *fl_active
    int FL_ISA_COUNT
    int fl_isa_supported(int level)
    int fl_isa_best()
    int fl_isa_set(int level)
    int fl_isa_current()
    const char *fl_isa_name(int level)
    const char *fl_build_compiler()
    int fl_build_openmp()
    int fl_omp_max_threads()
    void fl_omp_set_num_threads(int n)
