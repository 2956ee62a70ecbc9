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
    int fresh_out;     /* the output is on new pages: never streamed (fl_output_is_fresh) */
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
 * Python layer has validated everything: a target is either ignore_index or in [0, n)
 * (checked again as it is read: see label_fault). */
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
    int *label_fault;               /* set to 1 when a class index the kernel reads is
                                       outside [0, n) after all (another thread changed it
                                       since the check): that lane counts as ignored; NULL
                                       where no one asks */
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
/* ---- elementwise kernels (elementwise_impl.h) ----
 * Activations and pointwise losses take flat, contiguous arrays of the same length;
 * outputs may be the inputs (in place).  The multi-class margin loss takes the
 * (outer, C, inner) view above. */
enum { FL_ACT_SIGMOID = 0, FL_ACT_TANH = 1, FL_ACT_RELU = 2, FL_ACT_LEAKY_RELU = 3, FL_ACT_SOFTPLUS = 4 };
enum { FL_LOSS_MSE = 0, FL_LOSS_SMOOTH_L1 = 1, FL_LOSS_HUBER = 2, FL_LOSS_BCE = 3, FL_LOSS_BCE_LOGITS = 4,
       FL_LOSS_KL_DIV = 5, FL_LOSS_KL_DIV_LOG = 6 };

/* A factor broadcast over a flat array, in the element type: element k uses
 * ptr[(k / rep) % period]; ptr == NULL means a factor of 1. */
typedef struct {
    const void *ptr;
    ptrdiff_t rep, period;
} fl_bcast;

typedef struct {
    int op;              /* FL_LOSS_MSE ... */
    double param;        /* beta (smooth L1), delta (Huber); unused otherwise */
    double grad_scale;   /* the reduction's factor: 1/N (mean), 1/batch, or 1 */
    fl_bcast weight;     /* BCE, BCE with logits */
    fl_bcast pos_weight; /* BCE with logits */
} fl_ploss_args;

typedef struct {
    int p;               /* 1 or 2 */
    double margin;
    const double *weight;  /* per class, or NULL */
    double grad_scale;
} fl_margin_args;

/* activation: y[k] = f(x[k]), k < n; p0, p1 = negative_slope, or beta and threshold */
typedef void (*fl_act_f32_fn)(const float *x, float *y, ptrdiff_t n, int op, double p0, double p1);
typedef void (*fl_act_f64_fn)(const double *x, double *y, ptrdiff_t n, int op, double p0, double p1);
/* backward: out[k] = g[k] * f'(.) given z = forward output (sigmoid, tanh) or input */
typedef void (*fl_act_bwd_f32_fn)(const float *g, const float *z, float *out, ptrdiff_t n,
                                  int op, double p0, double p1);
typedef void (*fl_act_bwd_f64_fn)(const double *g, const double *z, double *out, ptrdiff_t n,
                                  int op, double p0, double p1);
/* pointwise loss over elements [begin, end) (absolute indices into every array):
 * returns the sum of the element losses; writes them to lo and the gradient of the
 * summed loss times grad_scale to g, each when not NULL */
typedef double (*fl_ploss_f32_fn)(const float *x, const float *t, float *lo, float *g,
                                  ptrdiff_t begin, ptrdiff_t end, const fl_ploss_args *a);
typedef double (*fl_ploss_f64_fn)(const double *x, const double *t, double *lo, double *g,
                                  ptrdiff_t begin, ptrdiff_t end, const fl_ploss_args *a);
/* first k in [begin, end) with x[k] outside [lo, hi] (NaN is not), or -1 */
typedef ptrdiff_t (*fl_outside_f32_fn)(const float *x, ptrdiff_t begin, ptrdiff_t end,
                                       double lo, double hi);
typedef ptrdiff_t (*fl_outside_f64_fn)(const double *x, ptrdiff_t begin, ptrdiff_t end,
                                       double lo, double hi);
/* multi-class margin loss of lanes [lb, le): target[lane] in [0, C) (validated by the
 * caller), lo[lane] the lane's loss and g (strides so) the gradient, when not NULL;
 * returns the sum of the lanes' losses */
typedef double (*fl_margin_f32_fn)(const float *x, const ptrdiff_t *target, float *lo, float *g,
                                   const fl_view3 *v, ptrdiff_t lb, ptrdiff_t le,
                                   const fl_margin_args *a);
typedef double (*fl_margin_f64_fn)(const double *x, const ptrdiff_t *target, double *lo,
                                   double *g, const fl_view3 *v, ptrdiff_t lb, ptrdiff_t le,
                                   const fl_margin_args *a);

/* How many of the n class indices are not ignore_index; -1 if one of them is outside
 * [0, n_classes): the wrappers' label check and the "mean" denominator in one pass. */
typedef ptrdiff_t (*fl_count_labels_fn)(const int64_t *labels, ptrdiff_t n, int64_t n_classes,
                                        int64_t ignore_index);

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
    fl_act_f32_fn activation_f32;
    fl_act_f64_fn activation_f64;
    fl_act_bwd_f32_fn activation_backward_f32;
    fl_act_bwd_f64_fn activation_backward_f64;
    fl_ploss_f32_fn pointwise_loss_f32;
    fl_ploss_f64_fn pointwise_loss_f64;
    fl_outside_f32_fn first_outside_f32;
    fl_outside_f64_fn first_outside_f64;
    fl_margin_f32_fn multi_margin_f32;
    fl_margin_f64_fn multi_margin_f64;
    fl_count_labels_fn count_labels;
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

/* "Long" rows, of at least this many bytes (rows layout): the next row is prefetched
 * while they compute (kernels_all.h, fl_prefetch_next), and outputs larger than the
 * L3 are written with streaming stores (fl_stream_output).  Set once at import, before
 * any kernel runs, to fl_long_row_default() or FASTLOSS_LONG_ROW_BYTES. */
extern ptrdiff_t fl_long_row_bytes;
ptrdiff_t fl_long_row_default(void);

/* A 64-byte aligned buffer of at least `bytes` private to the calling thread, kept
 * and reused by its later calls (grown when too small); NULL if it cannot be had.
 * Only for the bounded scratch of the streaming softmax (FL_STREAM_MAX_ROW_BYTES). */
void *fl_thread_scratch(size_t bytes);

/* Outputs at least this large may be written with streaming stores (fl_stream_output
 * in kernels_all.h): 3/4 of a 32 MiB L3 (this machine's; glibc's memcpy switches to
 * streaming stores at the same fraction).  Not read from sysconf: on these VMs it
 * reports the whole socket's 320 MB, while one core sees 32 MiB. */
#define FL_STREAM_MIN_BYTES ((ptrdiff_t)24 << 20)

/* Whether a just-allocated output [p, p + bytes) is fresh memory, which must not be
 * streamed into: 0 when its pages are already there (sampled: the first, middle and
 * last page, by Linux' mincore), i.e. when the allocator took it from memory it had
 * used before (glibc reuses freed blocks below 32 MiB); 1 when it has just been mapped
 * (the OS zeroes each page through the cache when the kernel first writes it), on
 * other systems, and below FL_STREAM_MIN_BYTES (never streamed: no need to ask). */
int fl_output_is_fresh(const void *p, size_t bytes);

#endif /* FL_KERNELS_H */
