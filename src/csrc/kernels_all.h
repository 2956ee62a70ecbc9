/*
 * kernels_all.h -- instantiate every kernel template for float and double and
 * publish them as the table fl_kernels_<FL_ISA>.  Included by kernels_<isa>.c
 * after that file has selected its instruction set with #pragma GCC target.
 */
#include <math.h>
#include "fl_kernels.h"
#include "fl_math.h"
#include "fl_template.h"

#define FL_FLAT_MAX_N 16          /* rows this short go through the tiles path */
#define FL_COL_BLOCK 128          /* lanes per block in the columns layout */
#define FL_TILE_ELEMS 2048        /* broadcast-factor tile: 8-16 KiB, L1-resident */
#define FL_TILE_MAX_PERIOD 512    /* patterns up to this long are tiled (stretches >= 1536) */

/* What tile_rows (softmax_impl.h) produces. */
enum { FL_FLAT_SOFTMAX = 0, FL_FLAT_LOG_SOFTMAX = 1, FL_FLAT_LOGSUMEXP = 2 };

/* Rows layout (one lane = one row along the class axis) when there is no inner
 * axis or the class axis is more contiguous than it; columns layout otherwise. */
static inline int fl_rows_layout(const fl_view3 *v)
{
    ptrdiff_t c = v->sa[1] < 0 ? -v->sa[1] : v->sa[1];
    ptrdiff_t i = v->sa[2] < 0 ? -v->sa[2] : v->sa[2];
    return v->inner == 1 || c < i;
}

/* The next run of lanes, starting at `lane` and ending before `lane_end`, that
 * shares one outer index and is at most FL_COL_BLOCK long: its length, with its
 * outer index in *o and first inner index in *i0. */
static inline ptrdiff_t fl_lane_block(const fl_view3 *v, ptrdiff_t lane, ptrdiff_t lane_end,
                                      ptrdiff_t *o, ptrdiff_t *i0)
{
    *o = lane / v->inner;
    *i0 = lane - *o * v->inner;
    ptrdiff_t len = v->inner - *i0;
    if (len > lane_end - lane) len = lane_end - lane;
    return len > FL_COL_BLOCK ? FL_COL_BLOCK : len;
}

#define FL_T float
#define FL_SUF f32
#define FL_EXP fl_expf
#define FL_EXPS fl_expf_nonpos   /* exp of x - max (<= 0) */
#define FL_LOG fl_logf
#define FL_LOG1P fl_log1pf
#define FL_TANH fl_tanhf
#include "softmax_impl.h"
#include "cross_entropy_impl.h"
#include "elementwise_impl.h"
#undef FL_T
#undef FL_SUF
#undef FL_EXP
#undef FL_EXPS
#undef FL_LOG
#undef FL_LOG1P
#undef FL_TANH

#define FL_T double
#define FL_SUF f64
#define FL_EXP fl_exp
#define FL_EXPS fl_exp_nonpos
#define FL_LOG fl_log
#define FL_LOG1P fl_log1p
#define FL_TANH fl_tanh
#include "softmax_impl.h"
#include "cross_entropy_impl.h"
#include "elementwise_impl.h"
#undef FL_T
#undef FL_SUF
#undef FL_EXP
#undef FL_EXPS
#undef FL_LOG
#undef FL_LOG1P
#undef FL_TANH

#define FL_STR_(x) #x
#define FL_STR(x) FL_STR_(x)

const fl_kernel_table FL_CAT(fl_kernels, FL_ISA) = {
    .isa_name = FL_STR(FL_ISA),
    .softmax_f32 = softmax_lanes_f32,
    .softmax_f64 = softmax_lanes_f64,
    .logsumexp_f32 = logsumexp_lanes_f32,
    .logsumexp_f64 = logsumexp_lanes_f64,
    .softmax_backward_f32 = softmax_backward_lanes_f32,
    .softmax_backward_f64 = softmax_backward_lanes_f64,
    .cross_entropy_f32 = cross_entropy_lanes_f32,
    .cross_entropy_f64 = cross_entropy_lanes_f64,
    .nll_f32 = nll_lanes_f32,
    .nll_f64 = nll_lanes_f64,
    .activation_f32 = activation_f32,
    .activation_f64 = activation_f64,
    .activation_backward_f32 = activation_backward_f32,
    .activation_backward_f64 = activation_backward_f64,
    .pointwise_loss_f32 = pointwise_loss_f32,
    .pointwise_loss_f64 = pointwise_loss_f64,
    .first_outside_f32 = first_outside_f32,
    .first_outside_f64 = first_outside_f64,
    .multi_margin_f32 = multi_margin_f32,
    .multi_margin_f64 = multi_margin_f64,
};
