# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Memory-bandwidth yardsticks of the benchmark: fastloss.bench._yardsticks.

Benchmark-only (not part of fastloss's kernels): fastloss/bench/yardsticks.py times
these to turn "bytes a call must move" into a percentage of what this machine's memory
can move.  Built by setup.py as its own extension with the flags of the kernels'
baseline build (-O3, no -march, no -ffast-math; OpenMP when the probe passes), so the
yardsticks run at the speed plain compiled code reaches, on any x86-64.

  stream_copy(dst, src, n_threads)   memcpy of src into dst, one contiguous slice per
                                     thread: moves 2 x nbytes (read + write, STREAM's
                                     convention).
  stream_read(src, n_threads)        the float64 sum of src, one slice per thread: reads
                                     every byte once.  Returns the sum, so the compiler
                                     cannot drop the loop and a test can check it.
  OPENMP                             whether the threads are real (False: built without
                                     OpenMP; prange runs the slices one after another).
"""
from cython.parallel cimport prange
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <stddef.h>
    /* Eight independent accumulators: the adds are not chained, so the loop is bound
     * by memory, not by the add latency.  Plain C: the compiler vectorizes it with
     * the baseline ISA (SSE2 on x86-64). */
    static double yardstick_sum_f64(const double *p, ptrdiff_t n)
    {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += p[i + k];
        double s = 0.0;
        for (; i < n; i++) s += p[i];
        for (int k = 0; k < 8; k++) s += acc[k];
        return s;
    }
    #ifdef _OPENMP
    #define YARDSTICK_OPENMP 1
    #else
    #define YARDSTICK_OPENMP 0
    #endif
    """
    double yardstick_sum_f64(const double *p, Py_ssize_t n) noexcept nogil
    int YARDSTICK_OPENMP

cdef enum:
    MAX_THREADS = 64   # size of stream_read's per-thread partial sums

OPENMP = bool(YARDSTICK_OPENMP)


cdef int slices(Py_ssize_t n, int n_threads) noexcept:
    """Threads to use: as asked, but at most MAX_THREADS and one per element."""
    cdef int nt = n_threads if n_threads < MAX_THREADS else MAX_THREADS
    if nt > n:
        nt = <int>n
    return nt if nt > 1 else 1


def stream_copy(signed char[::1] dst, const signed char[::1] src, int n_threads):
    """Copy src into dst (byte views of equal length) with n_threads threads."""
    # signed char, as the int8 views the benchmark passes (plain char is unsigned on
    # aarch64, where Cython would expect uint8 buffers).
    cdef Py_ssize_t n = src.shape[0], begin, end
    cdef int t, nt = slices(n, n_threads)
    if dst.shape[0] != n:
        raise ValueError(f"dst has {dst.shape[0]} bytes, src {n}")
    if n == 0:
        return
    with nogil:
        for t in prange(nt, num_threads=nt, schedule='static'):
            begin = n * t // nt
            end = n * (t + 1) // nt
            memcpy(&dst[begin], &src[begin], end - begin)


def stream_read(const double[::1] src, int n_threads):
    """The sum of src, read once with n_threads threads."""
    cdef Py_ssize_t n = src.shape[0], begin, end
    cdef int t, nt = slices(n, n_threads)
    cdef double partial[MAX_THREADS]
    if n == 0:
        return 0.0
    with nogil:
        for t in prange(nt, num_threads=nt, schedule='static'):
            begin = n * t // nt
            end = n * (t + 1) // nt
            partial[t] = yardstick_sum_f64(&src[begin], end - begin)
    return sum([partial[t] for t in range(nt)])
