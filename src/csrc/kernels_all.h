/*
 * kernels_all.h -- instantiate every kernel template for float and double and
 * publish them as the table fl_kernels_<FL_ISA>.  Included by kernels_<isa>.c
 * after that file has selected its instruction set with #pragma GCC target.
 */
#include <math.h>
#include <string.h>
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

/* Software prefetch of the next row.  A row's first pass (the max) streams it from
 * memory; the later passes compute out of L2 and would leave DRAM idle.  Asking for
 * the next row while the current one computes (its exp pass) overlaps the two.
 * The prefetches go out FL_PF_BLOCK elements' worth at a time, interleaved with the
 * computation: all of a 4 KiB chunk's 64 lines at once filled the miss buffers and
 * stalled the current row's own loads (slower than no prefetch at all).  Which rows
 * are long enough depends on the CPU's own prefetcher: fl_long_row_bytes, chosen at
 * import (dispatch.c), FASTLOSS_LONG_ROW_BYTES to override. */
#define FL_PF_BLOCK 128               /* elements computed per burst of prefetches */

static inline void fl_prefetch_range(const void *p, ptrdiff_t bytes)
{
    const char *c = (const char *)p;
    for (ptrdiff_t b = 0; b < bytes; b += 64)
        __builtin_prefetch(c + b, 0, 1);   /* prefetcht2: into L2 */
}

/* Whether row r (of lanes ending before le) has a next row worth prefetching: rows
 * layout with inner == 1 and unit class stride, and rows large enough. */
static inline int fl_prefetch_next(const fl_view3 *v, ptrdiff_t r, ptrdiff_t le, size_t esize)
{
    return v->inner == 1 && r + 1 < le && v->n * (ptrdiff_t)esize >= fl_long_row_bytes;
}

/* Streaming (non-temporal) stores, for outputs too large to stay in cache.  A normal
 * store first reads the line it writes from memory (read for ownership), so writing
 * y costs as much traffic as reading x; a streaming store sends the line straight to
 * memory.  Used only where a whole output is larger than the last-level cache
 * (FL_STREAM_MIN_BYTES), i.e. where it would be evicted before anything read it, and
 * its rows are long (fl_long_row_bytes: the streamed path is pipelined with the
 * next row's prefetch; with short rows on CPUs whose hardware prefetcher keeps up,
 * such as Zen 4, its pieces are small and it loses, while long rows gain everywhere:
 * see dispatch.c).
 * The kernels call fl_stream_fence before returning: streaming stores are weakly
 * ordered, and the caller (another thread, after the OpenMP barrier) reads them. */
#if defined(__x86_64__) && (defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__))
#include <immintrin.h>
#define FL_HAVE_STREAM 1
#else
#define FL_HAVE_STREAM 0
#endif
#define FL_STREAM_MAX_ROW_BYTES ((ptrdiff_t)4 << 20)   /* softmax scratch: L2/L3-resident */

/* Copy `bytes` from src to dst, which is 64-byte aligned, with streaming stores for
 * the whole 64-byte blocks and plain ones for the rest. */
static inline void fl_stream_store(void *dst, const void *src, ptrdiff_t bytes)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    ptrdiff_t b = 0;
#if FL_HAVE_STREAM
    for (; b + 64 <= bytes; b += 64) {
#if defined(__AVX512F__)
        _mm512_stream_si512((__m512i *)(d + b), _mm512_loadu_si512((const void *)(s + b)));
#elif defined(__AVX__)
        _mm256_stream_si256((__m256i *)(d + b), _mm256_loadu_si256((const __m256i *)(s + b)));
        _mm256_stream_si256((__m256i *)(d + b + 32), _mm256_loadu_si256((const __m256i *)(s + b + 32)));
#else
        for (int k = 0; k < 64; k += 16)
            _mm_stream_si128((__m128i *)(d + b + k), _mm_loadu_si128((const __m128i *)(s + b + k)));
#endif
    }
#endif
    memcpy(d + b, s + b, (size_t)(bytes - b));
}

static inline void fl_stream_fence(void)
{
#if FL_HAVE_STREAM
    _mm_sfence();
#endif
}

/* Elements of size esize before the first 64-byte boundary at or after p (at most n) */
static inline ptrdiff_t fl_head_to_line(const void *p, size_t esize, ptrdiff_t n)
{
    ptrdiff_t mis = (ptrdiff_t)((uintptr_t)p & 63);
    ptrdiff_t h = mis ? (64 - mis) / (ptrdiff_t)esize : 0;
    if ((64 - mis) % (ptrdiff_t)esize) return n;    /* p not element-aligned to lines: no streaming */
    return h < n ? h : n;
}

/* Whether a softmax-like kernel writing the view's output should stream it.  Not into
 * a freshly allocated output on new pages (fl_output_is_fresh): the OS zeroes each
 * page through the cache as it is first written, so plain stores hit cached lines
 * while streaming stores must first evict them, so streaming loses there.  A fresh
 * output on pages the allocator used before is streamed like out=. */
static inline int fl_stream_output(const fl_view3 *v, size_t esize)
{
    return FL_HAVE_STREAM && !v->fresh_out
           && v->outer * v->n * v->inner * (ptrdiff_t)esize >= FL_STREAM_MIN_BYTES
           && v->n * (ptrdiff_t)esize >= fl_long_row_bytes;
}

/* The SIMD builds' row helpers: the rows' exp, max and sum loops, the one-read rows'
 * common case and the streamed softmax pieces, and the tiles path's transposes in
 * registers.  AVX-512: fl_math_avx512.h (vscalef, four accumulators) and
 * fl_tile_avx512.h; AVX2 + FMA: fl_math_avx2.h and fl_tile_avx2.h, the same functions
 * with 256-bit vectors.  Each defines the FL_*_F32 / FL_*_F64 names below to its own;
 * the baseline build runs the portable loops (FL_EXPS, `omp simd` reductions) and reads
 * long rows in two passes. */
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include "fl_math_avx512.h"
#include "fl_tile_avx512.h"
#define FL_EXP_SHIFTED_F32 fl_exp_shifted_avx512_f32
#define FL_EXP_SHIFTED_F64 fl_exp_shifted_avx512_f64
#define FL_EXP_SHIFTED_SUM_F64 fl_exp_shifted_sum_avx512_f64
#define FL_ROW_MAX_F32 fl_max_avx512_f32
#define FL_ROW_MAX_F64 fl_max_avx512_f64
#define FL_MAX_EXCEEDS_F32 fl_max_exceeds_avx512_f32
#define FL_MAX_EXCEEDS_F64 fl_max_exceeds_avx512_f64
#define FL_ONLINE_RUN_F32 fl_online_run_avx512_f32
#define FL_SUM_AS_DOUBLE_F32 fl_sum_as_double_avx512_f32
#define FL_STREAM_SCALE_F32 fl_stream_scale_avx512_f32
#define FL_STREAM_SCALE_F64 fl_stream_scale_avx512_f64
#define FL_TILE_IN_F32 fl_tile_in_avx512_f32
#define FL_TILE_OUT_F32 fl_tile_out_avx512_f32
#define FL_TILE_IN_F64 fl_tile_in_avx512_f64
#define FL_TILE_OUT_F64 fl_tile_out_avx512_f64
#define FL_ONLINE_ROWS 1   /* long rows read once (softmax_impl.h) */
#elif defined(__AVX2__) && defined(__FMA__)
#include "fl_math_avx2.h"
#include "fl_tile_avx2.h"
#define FL_EXP_SHIFTED_F32 fl_exp_shifted_avx2_f32
#define FL_EXP_SHIFTED_F64 fl_exp_shifted_avx2_f64
#define FL_EXP_SUB_LANES_F32 fl_exp_sub_lanes_avx2_f32
#define FL_EXP_SUB_LANES_F64 fl_exp_sub_lanes_avx2_f64
#define FL_EXP_SHIFTED_SUM_F64 fl_exp_shifted_sum_avx2_f64
#define FL_ROW_MAX_F32 fl_max_avx2_f32
#define FL_ROW_MAX_F64 fl_max_avx2_f64
#define FL_MAX_EXCEEDS_F32 fl_max_exceeds_avx2_f32
#define FL_MAX_EXCEEDS_F64 fl_max_exceeds_avx2_f64
#define FL_ONLINE_RUN_F32 fl_online_run_avx2_f32
#define FL_SUM_AS_DOUBLE_F32 fl_sum_as_double_avx2_f32
#define FL_STREAM_SCALE_F32 fl_stream_scale_avx2_f32
#define FL_STREAM_SCALE_F64 fl_stream_scale_avx2_f64
#define FL_TILE_IN_F32 fl_tile_in_avx2_f32
#define FL_TILE_OUT_F32 fl_tile_out_avx2_f32
#define FL_TILE_IN_F64 fl_tile_in_avx2_f64
#define FL_TILE_OUT_F64 fl_tile_out_avx2_f64
#define FL_ONLINE_ROWS 1   /* long rows read once (softmax_impl.h) */
#endif

#define FL_T float
#define FL_SUF f32
#define FL_EXP fl_expf
#define FL_EXPS fl_expf_nonpos   /* exp of x - max (<= 0) */
#ifdef FL_EXP_SHIFTED_F32   /* AVX-512, AVX2 */
#define FL_EXP_SHIFTED_VEC FL_EXP_SHIFTED_F32   /* the same over a contiguous stretch */
#ifdef FL_EXP_SUB_LANES_F32                     /* AVX2: exp(x_i - m_i) across lanes */
#define FL_EXP_SUB_LANES_VEC FL_EXP_SUB_LANES_F32
#endif
#define FL_ROW_MAX_VEC FL_ROW_MAX_F32           /* max of a contiguous row */
#define FL_MAX_EXCEEDS_VEC FL_MAX_EXCEEDS_F32   /* ... whether it exceeds a value */
#define FL_ONLINE_RUN_VEC FL_ONLINE_RUN_F32     /* blocks of a row read once */
#define FL_SUM_AS_DOUBLE_VEC FL_SUM_AS_DOUBLE_F32   /* sum of a float stretch, in double */
#define FL_STREAM_SCALE_VEC FL_STREAM_SCALE_F32 /* a piece of a streamed softmax output */
#define FL_TILE_IN_VEC FL_TILE_IN_F32           /* the tiles path's transposes */
#define FL_TILE_OUT_VEC FL_TILE_OUT_F32
#endif
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
#undef FL_EXP_SHIFTED_VEC
#undef FL_EXP_SHIFTED_SUM_VEC
#undef FL_EXP_SUB_LANES_VEC
#undef FL_ROW_MAX_VEC
#undef FL_MAX_EXCEEDS_VEC
#undef FL_ONLINE_RUN_VEC
#undef FL_SUM_AS_DOUBLE_VEC
#undef FL_STREAM_SCALE_VEC
#undef FL_TILE_IN_VEC
#undef FL_TILE_OUT_VEC
#undef FL_LOG
#undef FL_LOG1P
#undef FL_TANH

#define FL_T double
#define FL_SUF f64
#define FL_EXP fl_exp
#define FL_EXPS fl_exp_nonpos
#ifdef FL_EXP_SHIFTED_F64   /* AVX-512, AVX2 */
#define FL_EXP_SHIFTED_VEC FL_EXP_SHIFTED_F64
#ifdef FL_EXP_SUB_LANES_F64
#define FL_EXP_SUB_LANES_VEC FL_EXP_SUB_LANES_F64
#endif
#define FL_EXP_SHIFTED_SUM_VEC FL_EXP_SHIFTED_SUM_F64   /* ... also summing it */
#define FL_ROW_MAX_VEC FL_ROW_MAX_F64
#define FL_MAX_EXCEEDS_VEC FL_MAX_EXCEEDS_F64
#define FL_STREAM_SCALE_VEC FL_STREAM_SCALE_F64
#define FL_TILE_IN_VEC FL_TILE_IN_F64
#define FL_TILE_OUT_VEC FL_TILE_OUT_F64
#endif
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
#undef FL_EXP_SHIFTED_VEC
#undef FL_EXP_SHIFTED_SUM_VEC
#undef FL_EXP_SUB_LANES_VEC
#undef FL_ROW_MAX_VEC
#undef FL_MAX_EXCEEDS_VEC
#undef FL_ONLINE_RUN_VEC
#undef FL_SUM_AS_DOUBLE_VEC
#undef FL_STREAM_SCALE_VEC
#undef FL_TILE_IN_VEC
#undef FL_TILE_OUT_VEC
#undef FL_LOG
#undef FL_LOG1P
#undef FL_TANH

/* fl_count_labels_fn: branch-free, so that it vectorizes (64-bit compares: AVX2 and up;
 * a negative label, seen as unsigned, is huge, so one compare tests both ends) */
/* count_labels_baseline, count_labels_avx2, count_labels_avx512 (fl_kernel_table .count_labels) */
static ptrdiff_t FL_CAT(count_labels, FL_ISA)(const int64_t *labels, ptrdiff_t n,
                                             int64_t n_classes, int64_t ignore_index)
{
    ptrdiff_t active = 0, bad = 0;
#pragma omp simd reduction(+:active, bad)
    for (ptrdiff_t j = 0; j < n; j++) {
        const int64_t v = labels[j];
        const ptrdiff_t a = v != ignore_index;
        active += a;
        bad += a & ((uint64_t)v >= (uint64_t)n_classes);
    }
    return bad ? -1 : active;
}

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
    .count_labels = FL_CAT(count_labels, FL_ISA),
};
