/*
 * fl_kernels.h -- the C interface between the Cython layer and the SIMD kernels.
 *
 * Layers:
 *   1. *_impl.h   the kernels, written once as a template over the element type
 *                 (FL_T = float or double) in plain C that gcc auto-vectorizes;
 *   2. kernels_<isa>.c  compile every template for one instruction set
 *                 (baseline x86-64, AVX2+FMA, AVX-512) and publish it as a table
 *                 of function pointers, fl_kernels_<isa>;
 *   3. dispatch.c picks the best table the CPU supports at import time
 *                 (FASTLOSS_SIMD can force a lower one);
 *   4. src/kernels.pyx (Cython) validate nothing -- the Python layer already did -- but
 *                 own the threads: they split the lanes into one contiguous range
 *                 per OpenMP thread (prange, static schedule) and call the table
 *                 once per range, so the indirect call is paid once per thread.
 *
 * Every array is seen as a 3-D view (outer, n, inner) around the reduced/class
 * axis of length n.  A "lane" is one (outer, inner) pair, i.e. one softmax row.
 * Strides are in elements and may be negative or zero.
 */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    ptrdiff_t outer, n, inner;
    ptrdiff_t sa[3];   /* strides of the first input  (x, or grad in backward) */
    ptrdiff_t sb[3];   /* strides of the second input (y in backward; unused otherwise) */
    ptrdiff_t so[3];   /* strides of the output (logsumexp: so[1] unused) */
} fl_view3;

/* log_mode: 0 = softmax, 1 = log_softmax */
typedef void (*fl_softmax_f32_fn)(const float *x, float *y, const fl_view3 *v,
                                  ptrdiff_t lane_begin, ptrdiff_t lane_end, int log_mode);
typedef void (*fl_softmax_f64_fn)(const double *x, double *y, const fl_view3 *v,
                                  ptrdiff_t lane_begin, ptrdiff_t lane_end, int log_mode);
typedef void (*fl_logsumexp_f32_fn)(const float *x, float *out, const fl_view3 *v,
                                    ptrdiff_t lane_begin, ptrdiff_t lane_end);
typedef void (*fl_logsumexp_f64_fn)(const double *x, double *out, const fl_view3 *v,
                                    ptrdiff_t lane_begin, ptrdiff_t lane_end);
typedef void (*fl_softmax_bwd_f32_fn)(const float *grad, const float *y, float *out,
                                      const fl_view3 *v, ptrdiff_t lane_begin,
                                      ptrdiff_t lane_end, int log_mode);
typedef void (*fl_softmax_bwd_f64_fn)(const double *grad, const double *y, double *out,
                                      const fl_view3 *v, ptrdiff_t lane_begin,
                                      ptrdiff_t lane_end, int log_mode);

/* Arguments of the cross-entropy / nll kernels that do not depend on the element type.
 * Per-lane arrays are 2-D (outer, inner) views with element strides [0], [1].  The
 * Python layer has validated everything: a target is either ignore_index or in [0, n). */
typedef struct {
    const int64_t *target;          /* class indices; NULL: class probabilities (q) */
    ptrdiff_t ts[2];
    int64_t ignore_index;
    const double *sample_weight;    /* per lane; NULL: all 1 */
    ptrdiff_t sws[2];
    const double *weight;           /* per class, n contiguous values; NULL: all 1 */
    double weight_sum;              /* sum of weight (n when weight is NULL) */
    double label_smoothing;         /* eps in [0, 1] */
    const double *grad_scale;       /* per-lane upstream gradient (reduction "none"); */
    ptrdiff_t gss[2];               /* NULL: grad_scale0 for every lane */
    double grad_scale0;             /* d reduced loss / d loss_i ("mean": 1 / denominator) */
    ptrdiff_t ls[2];                /* strides of the per-lane loss output, if any */
    int want_loss;                  /* 0: only the gradient is wanted */
    int grad_zeroed;                /* nll: grad holds zeros already (write the targets only) */
} fl_ce_args;

/* Fused cross-entropy over lanes [lane_begin, lane_end): per lane the weighted loss
 * sample_weight * l is written to loss (if not NULL) and the gradient grad_scale *
 * sample_weight * dl/dx to grad (if not NULL; grad may be x itself).  q: class
 * probabilities laid out as v->sb (NULL with index targets); grad as v->so.
 * Returns the sum of the weighted losses of the range (0 when !want_loss). */
typedef double (*fl_ce_f32_fn)(const float *x, const float *q, float *grad, float *loss,
                               const fl_view3 *v, const fl_ce_args *a,
                               ptrdiff_t lane_begin, ptrdiff_t lane_end);
typedef double (*fl_ce_f64_fn)(const double *x, const double *q, double *grad, double *loss,
                               const fl_view3 *v, const fl_ce_args *a,
                               ptrdiff_t lane_begin, ptrdiff_t lane_end);
/* Negative log-likelihood of index targets: l = -weight[y] * x[y].  Same conventions
 * (q unused; grad gets -grad_scale * weight[y] at y and 0 elsewhere). */
typedef double (*fl_nll_f32_fn)(const float *x, float *grad, float *loss, const fl_view3 *v,
                                const fl_ce_args *a, ptrdiff_t lane_begin, ptrdiff_t lane_end);
typedef double (*fl_nll_f64_fn)(const double *x, double *grad, double *loss, const fl_view3 *v,
                                const fl_ce_args *a, ptrdiff_t lane_begin, ptrdiff_t lane_end);

typedef struct {
    const char *isa_name;
    fl_softmax_f32_fn softmax_f32;
    fl_softmax_f64_fn softmax_f64;
    fl_logsumexp_f32_fn logsumexp_f32;
    fl_logsumexp_f64_fn logsumexp_f64;
    fl_softmax_bwd_f32_fn softmax_backward_f32;
    fl_softmax_bwd_f64_fn softmax_backward_f64;
    fl_ce_f32_fn cross_entropy_f32;
    fl_ce_f64_fn cross_entropy_f64;
    fl_nll_f32_fn nll_f32;
    fl_nll_f64_fn nll_f64;
} fl_kernel_table;

/* Instruction-set levels, lowest first. */
enum { FL_ISA_BASELINE = 0, FL_ISA_AVX2 = 1, FL_ISA_AVX512 = 2, FL_ISA_COUNT = 3 };

extern const fl_kernel_table *fl_active;          /* the table in use */
int fl_isa_supported(int level);                  /* compiled in and supported by this CPU */
int fl_isa_best(void);
int fl_isa_set(int level);                        /* 0 on success, -1 if unsupported */
int fl_isa_current(void);
const char *fl_isa_name(int level);
const char *fl_build_compiler(void);
int fl_build_openmp(void);                        /* _OPENMP date, 0 without OpenMP */
int fl_omp_max_threads(void);
void fl_omp_set_num_threads(int n);

#endif /* FL_KERNELS_H */
