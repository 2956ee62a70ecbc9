# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled core of fastloss: OpenMP loops over the SIMD kernels of src/csrc.

Design (see src/csrc/fl_kernels.h for the C side):
  * The Python wrappers (fastloss/_softmax.py, ...) validate every argument, choose
    dtypes, allocate outputs and reshape everything to (outer, n, inner) views.
    Nothing here checks user input: it trusts the wrapper, and it is private.
  * This module turns the typed memoryviews into pointers + element strides, splits
    the lanes (rows) into one contiguous range per thread and calls the kernel of the
    active instruction set once per range, without the GIL.
  * Small inputs run on one thread: below MIN_ELEMENTS_PER_THREAD elements of work per
    thread the start-up of a parallel region (a few microseconds) costs more than it
    saves.
"""
cimport cython
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from libc.math cimport INFINITY

from fl_kernels cimport *

ctypedef fused floating:
    float
    double

cdef enum:
    # Below this many elements per thread a parallel region does not pay for itself
    # (OpenMP start-up ~ 2-5 us; the kernels process ~1-3 elements per ns per core).
    MIN_ELEMENTS_PER_THREAD = 32768


# ----------------------------------------------------------------------------- runtime

_ISA_NAMES = tuple(fl_isa_name(i).decode() for i in range(FL_ISA_COUNT))


def get_max_threads():
    return fl_omp_max_threads()


def set_num_threads(int n):
    fl_omp_set_num_threads(n)


def available_simd_levels():
    return [name for i, name in enumerate(_ISA_NAMES) if fl_isa_supported(i)]


def get_simd_level():
    return fl_isa_name(fl_isa_current()).decode()


def set_simd_level(level):
    if level not in _ISA_NAMES:
        raise ValueError(f"level must be one of {_ISA_NAMES}; got {level!r}")
    if fl_isa_set(_ISA_NAMES.index(level)) != 0:
        raise ValueError(
            f"SIMD level {level!r} is not supported here; available: {available_simd_levels()}"
        )


def _select_initial_simd_level():
    import os
    import warnings
    requested = os.environ.get("FASTLOSS_SIMD", "").strip().lower()
    if requested:
        try:
            set_simd_level(requested)
            return
        except ValueError as exc:
            warnings.warn(f"fastloss: FASTLOSS_SIMD ignored: {exc}", RuntimeWarning)
    fl_isa_set(fl_isa_best())


_select_initial_simd_level()


def get_long_row_bytes():
    """Rows of at least this many bytes count as long: the next row is prefetched, and
    outputs over 24 MiB are written with streaming stores (see dispatch.c)."""
    return fl_long_row_bytes


def set_long_row_bytes(Py_ssize_t nbytes):
    """Set the long-row length (a tuning knob: results do not depend on it).
    Not thread-safe against running kernels: set it before computing."""
    global fl_long_row_bytes
    if nbytes < 0:
        raise ValueError(f"long-row length must be >= 0 bytes, got {nbytes}")
    fl_long_row_bytes = nbytes


def _select_initial_long_row():
    import os
    import warnings
    requested = os.environ.get("FASTLOSS_LONG_ROW_BYTES", "").strip()
    if requested:
        try:
            set_long_row_bytes(int(requested))
            return
        except ValueError as exc:
            warnings.warn(f"fastloss: FASTLOSS_LONG_ROW_BYTES ignored: {exc}", RuntimeWarning)
    set_long_row_bytes(fl_long_row_default())


_select_initial_long_row()


def build_info():
    omp = fl_build_openmp()
    return {
        "compiler": fl_build_compiler().decode(),
        "openmp": f"yes (OpenMP {omp})" if omp else "no (built without OpenMP: single-threaded)",
    }


cdef inline int threads_for(Py_ssize_t lanes, Py_ssize_t work, int n_threads) noexcept nogil:
    """Threads worth starting for `work` elements spread over `lanes` lanes."""
    cdef Py_ssize_t by_work = work // MIN_ELEMENTS_PER_THREAD
    if n_threads > by_work:
        n_threads = <int>by_work
    if n_threads > lanes:
        n_threads = <int>lanes
    return n_threads if n_threads > 1 else 1


cdef inline void set_strides(Py_ssize_t *dst, Py_ssize_t[8] strides, Py_ssize_t itemsize, int ndim) noexcept nogil:
    cdef int k
    for k in range(ndim):
        dst[k] = strides[k] // itemsize


def output_is_fresh(const signed char[::1] buf):
    """fl_output_is_fresh over a contiguous buffer (for the tests)."""
    # signed char: the tests pass int8 views. Plain char would not take them where
    # char is unsigned (aarch64): Cython then expects the buffer format of uint8.
    return bool(fl_output_is_fresh(&buf[0], buf.shape[0])) if buf.shape[0] else True


include "softmax.pxi"
include "cross_entropy.pxi"
include "elementwise.pxi"
