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

typedef struct {
    const char *isa_name;
    fl_softmax_f32_fn softmax_f32;
    fl_softmax_f64_fn softmax_f64;
    fl_logsumexp_f32_fn logsumexp_f32;
    fl_logsumexp_f64_fn logsumexp_f64;
    fl_softmax_bwd_f32_fn softmax_backward_f32;
    fl_softmax_bwd_f64_fn softmax_backward_f64;
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
