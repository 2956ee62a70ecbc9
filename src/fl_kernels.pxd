# C declarations of the SIMD kernel interface (src/csrc/fl_kernels.h).
from libc.stdint cimport int64_t

cdef extern from "fl_kernels.h" nogil:
    ctypedef struct fl_view3:
        Py_ssize_t outer, n, inner
        Py_ssize_t sa[3]
        Py_ssize_t sb[3]
        Py_ssize_t so[3]
        int fresh_out

    ctypedef void (*fl_softmax_f32_fn)(const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_softmax_f64_fn)(const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_logsumexp_f32_fn)(const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fl_logsumexp_f64_fn)(const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fl_softmax_bwd_f32_fn)(const float *, const float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    ctypedef void (*fl_softmax_bwd_f64_fn)(const double *, const double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t, int) noexcept nogil

    ctypedef struct fl_ce_args:
        const int64_t *target
        Py_ssize_t ts[2]
        int64_t ignore_index
        const double *sample_weight
        Py_ssize_t sws[2]
        const double *weight
        double weight_sum
        double label_smoothing
        const double *grad_scale
        Py_ssize_t gss[2]
        double grad_scale0
        Py_ssize_t ls[2]
        int *label_fault
        int want_loss
        int grad_zeroed

    ctypedef double (*fl_ce_f32_fn)(const float *, const float *, float *, float *, const fl_view3 *, const fl_ce_args *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef double (*fl_ce_f64_fn)(const double *, const double *, double *, double *, const fl_view3 *, const fl_ce_args *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef double (*fl_nll_f32_fn)(const float *, float *, float *, const fl_view3 *, const fl_ce_args *, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef double (*fl_nll_f64_fn)(const double *, double *, double *, const fl_view3 *, const fl_ce_args *, Py_ssize_t, Py_ssize_t) noexcept nogil
    enum:
        FL_ACT_SIGMOID, FL_ACT_TANH, FL_ACT_RELU, FL_ACT_LEAKY_RELU, FL_ACT_SOFTPLUS
    enum:
        FL_LOSS_MSE, FL_LOSS_SMOOTH_L1, FL_LOSS_HUBER, FL_LOSS_BCE, FL_LOSS_BCE_LOGITS
        FL_LOSS_KL_DIV, FL_LOSS_KL_DIV_LOG

    ctypedef struct fl_bcast:
        const void *ptr
        Py_ssize_t rep, period

    ctypedef struct fl_ploss_args:
        int op
        double param
        double grad_scale
        fl_bcast weight
        fl_bcast pos_weight

    ctypedef struct fl_margin_args:
        int p
        double margin
        const double *weight
        double grad_scale

    ctypedef void (*fl_act_f32_fn)(const float *, float *, Py_ssize_t, int, double, double) noexcept nogil
    ctypedef void (*fl_act_f64_fn)(const double *, double *, Py_ssize_t, int, double, double) noexcept nogil
    ctypedef void (*fl_act_bwd_f32_fn)(const float *, const float *, float *, Py_ssize_t, int, double, double) noexcept nogil
    ctypedef void (*fl_act_bwd_f64_fn)(const double *, const double *, double *, Py_ssize_t, int, double, double) noexcept nogil
    ctypedef double (*fl_ploss_f32_fn)(const float *, const float *, float *, float *, Py_ssize_t, Py_ssize_t, const fl_ploss_args *) noexcept nogil
    ctypedef double (*fl_ploss_f64_fn)(const double *, const double *, double *, double *, Py_ssize_t, Py_ssize_t, const fl_ploss_args *) noexcept nogil
    ctypedef Py_ssize_t (*fl_outside_f32_fn)(const float *, Py_ssize_t, Py_ssize_t, double, double) noexcept nogil
    ctypedef Py_ssize_t (*fl_outside_f64_fn)(const double *, Py_ssize_t, Py_ssize_t, double, double) noexcept nogil
    ctypedef double (*fl_margin_f32_fn)(const float *, const Py_ssize_t *, float *, float *, const fl_view3 *, Py_ssize_t, Py_ssize_t, const fl_margin_args *) noexcept nogil
    ctypedef double (*fl_margin_f64_fn)(const double *, const Py_ssize_t *, double *, double *, const fl_view3 *, Py_ssize_t, Py_ssize_t, const fl_margin_args *) noexcept nogil

    ctypedef Py_ssize_t (*fl_count_labels_fn)(const int64_t *, Py_ssize_t, int64_t, int64_t) noexcept nogil

    ctypedef struct fl_kernel_table:
        const char *isa_name
        fl_softmax_f32_fn softmax_f32
        fl_softmax_f64_fn softmax_f64
        fl_logsumexp_f32_fn logsumexp_f32
        fl_logsumexp_f64_fn logsumexp_f64
        fl_softmax_bwd_f32_fn softmax_backward_f32
        fl_softmax_bwd_f64_fn softmax_backward_f64
        fl_ce_f32_fn cross_entropy_f32
        fl_ce_f64_fn cross_entropy_f64
        fl_nll_f32_fn nll_f32
        fl_nll_f64_fn nll_f64
        fl_act_f32_fn activation_f32
        fl_act_f64_fn activation_f64
        fl_act_bwd_f32_fn activation_backward_f32
        fl_act_bwd_f64_fn activation_backward_f64
        fl_ploss_f32_fn pointwise_loss_f32
        fl_ploss_f64_fn pointwise_loss_f64
        fl_outside_f32_fn first_outside_f32
        fl_outside_f64_fn first_outside_f64
        fl_margin_f32_fn multi_margin_f32
        fl_margin_f64_fn multi_margin_f64
        fl_count_labels_fn count_labels

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
    Py_ssize_t fl_long_row_bytes
    Py_ssize_t fl_long_row_default()
    int fl_output_is_fresh(const void *p, size_t nbytes)
