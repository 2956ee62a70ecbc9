"""Backend selection, thread control and build information.

The compiled kernels live in one extension module, ``fastloss._lib.kernels``.  If it
cannot be imported (no compiler at install time, a broken build) the package still
imports: it warns once and every function runs on the NumPy fallback.

Threads: the kernels ask OpenMP for ``omp_get_max_threads()`` at each call, so
``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` (which calls
``omp_set_num_threads`` on the libgomp our extension links) and our own
``set_num_threads`` all act on the same setting.

BLAS: NumPy's matmul runs on its BLAS's own thread pool (OpenBLAS's pthreads in the
wheels), which ``set_num_threads`` and threadpoolctl's "openmp" limits do not reach
(``OMP_NUM_THREADS`` does, read when the BLAS loads).  Functions that call matmul between
kernels (``linear_cross_entropy``) hold the BLAS to at most ``get_num_threads()``
threads while they run (``blas_threads_at_most``), so that one setting limits both
pools.

Fork: GNU libgomp's thread pool does not survive ``fork()``.  A child forked after the
parent ran a parallel region inherits the pool's bookkeeping but not its threads, and
its first parallel region waits for them forever (PyTorch hangs the same way).  So a
forked child (``os.fork``, ``multiprocessing``'s "fork" start method) runs the kernels
on 1 thread: ``get_num_threads()`` reports 1 there and asking for more -- through
``set_num_threads`` or the OpenMP setting (``threadpoolctl``) -- warns once and stays
at 1.  Every kernel takes its thread count from ``get_num_threads()``; with 1 it runs
serially or in a 1-thread region, which takes no thread from the pool.  Use the
"spawn" or "forkserver" start method for multi-threaded workers.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import warnings
from typing import Any, Iterator, TextIO

import numpy as np

from fastloss._typing import Backend

BACKENDS = ("cython", "numpy")

try:
    from fastloss._lib import kernels as _kernels
    _IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    _kernels = None  # type: ignore[assignment]  # every use checks for None first
    _IMPORT_ERROR = exc
    warnings.warn(
        f"fastloss: the compiled extension could not be imported ({exc}); "
        "using the NumPy fallback for every function.",
        RuntimeWarning,
        stacklevel=2,
    )

_fallback_num_threads = 1
_forked_child = False   # set in a child of os.fork (see _after_fork_in_child)
_fork_warned = False    # the once-per-process warning of a forked child asking for threads


def _after_fork_in_child():
    """Put a forked child on 1 thread: its inherited libgomp pool has no threads left,
    and the first parallel region would hang waiting for them."""
    global _forked_child, _fork_warned
    _forked_child = True
    _fork_warned = False    # a grandchild says so again
    if _kernels is not None:
        _kernels.set_num_threads(1)


if hasattr(os, "register_at_fork"):   # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_forked_child(asked):
    global _fork_warned
    if _fork_warned:
        return
    _fork_warned = True
    warnings.warn(
        f"fastloss: {asked} threads asked for in a process started by fork(); GNU libgomp's "
        "thread pool does not survive fork, so a parallel region here could hang: running "
        "on 1 thread. Use the 'spawn' or 'forkserver' start method for multi-threaded workers.",
        RuntimeWarning,
        stacklevel=3,
    )


def _initial_backend():
    requested = os.environ.get("FASTLOSS_BACKEND", "").strip().lower()
    if requested and requested not in BACKENDS:
        warnings.warn(
            f"fastloss: FASTLOSS_BACKEND={requested!r} is not one of {BACKENDS}; ignored.",
            RuntimeWarning,
            stacklevel=3,
        )
        requested = ""
    if requested == "numpy" or _kernels is None:
        return "numpy"
    return "cython"


_backend = _initial_backend()


def kernels() -> Any:
    """The compiled kernel module when the cython backend is active, else ``None``."""
    return _kernels if _backend == "cython" else None


def get_backend() -> Backend:
    """The active backend.

    Returns
    -------
    str
        ``"cython"`` (the compiled kernels) or ``"numpy"`` (``fastloss.fallback``).
    """
    return _backend


def set_backend(name: Backend) -> None:
    """Select the backend for every function of this process.

    Parameters
    ----------
    name : {"cython", "numpy"}
        ``"cython"``: the compiled kernels; ``"numpy"``: their NumPy twins in
        ``fastloss.fallback``.  The environment variable ``FASTLOSS_BACKEND`` sets the
        start value.

    Raises
    ------
    ValueError
        An unknown name.
    RuntimeError
        ``"cython"`` asked for when the extension could not be imported.
    """
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {name!r}")
    if name == "cython" and _kernels is None:
        raise RuntimeError(
            f"the cython backend is unavailable: the extension failed to import ({_IMPORT_ERROR})"
        )
    _backend = name


def get_num_threads() -> int:
    """Number of threads the kernels use.

    Every kernel call takes its thread count from here, so the forked-child rule holds
    even when the OpenMP setting was raised behind our back (``threadpoolctl``).

    Returns
    -------
    int
        OpenMP's current maximum (``OMP_NUM_THREADS``, ``set_num_threads`` or
        ``threadpoolctl``); 1 in a process started by ``fork()``.
    """
    if _kernels is None:
        return _fallback_num_threads
    n = _kernels.get_max_threads()
    if _forked_child and n > 1:
        _warn_forked_child(n)
        return 1
    return n


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use (``omp_set_num_threads``).

    Parameters
    ----------
    n : int
        A positive count.  In a process started by ``fork()`` more than 1 warns once
        (``RuntimeWarning``) and sets 1: libgomp's thread pool does not survive fork.

    Raises
    ------
    TypeError
        ``n`` is not an int (a bool included).
    ValueError
        ``n`` is less than 1.
    """
    global _fallback_num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be a positive int; got {n!r}")
    if n < 1:
        raise ValueError(f"n must be a positive int; got {n}")
    if _forked_child and _kernels is not None and n > 1:
        _warn_forked_child(int(n))
        n = 1
    _fallback_num_threads = int(n)
    if _kernels is not None:
        _kernels.set_num_threads(int(n))


class _BlasLimit:
    """Which fastloss call, if any, holds the BLAS's thread limit.

    The BLAS's thread count is process-wide (OpenBLAS's pool is shared by every Python
    thread), and calls from several Python threads may overlap.  One call at a time
    holds a limit: the others run under it, or under the BLAS's own count once it is
    released.  So every limit restores the count the BLAS had before any fastloss limit,
    never another call's limit (two overlapping limiters, each restoring what it found,
    could leave one behind).  Results do not depend on the BLAS's thread count beyond
    rounding.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.controller: Any = None     # threadpoolctl's, restricted to the BLAS
        self.held = False

    def blas(self) -> Any:
        # Found once: NumPy's BLAS is loaded with NumPy, before fastloss, and a BLAS
        # loaded later (SciPy's, PyTorch's) is not the one NumPy's matmul calls.
        if self.controller is None:
            from threadpoolctl import ThreadpoolController
            self.controller = ThreadpoolController().select(user_api="blas")
        return self.controller


_blas_limit = _BlasLimit()


@contextlib.contextmanager
def blas_threads_at_most(n: int) -> Iterator[None]:
    """Hold every BLAS of the process to at most ``n`` threads inside the block.

    A BLAS already at ``n`` threads or fewer is left as it is (a lower limit the user
    set, through ``OPENBLAS_NUM_THREADS`` or ``threadpoolctl``, stands).  The limit is
    threadpoolctl's own context, entered and exited by the calling thread: threadpoolctl
    (3.8 at least) lets one Python thread at a time control OpenBLAS's shared pool, and
    its context hands that control back on exit, so other threads can set limits after
    the call.  While another call holds a limit, this block runs under it.
    """
    state = _blas_limit
    limiter = None
    with state.lock:
        if not state.held:
            blas = state.blas()
            over = [lib.filepath for lib in blas.lib_controllers
                    if lib.num_threads is not None and lib.num_threads > n]
            if over:
                limiter = blas.select(filepath=over).limit(limits=n)
                state.held = True
    if limiter is None:
        yield
        return
    try:
        with limiter:
            yield
    finally:
        with state.lock:
            state.held = False


def get_simd_level() -> str | None:
    """The instruction-set level the kernels dispatch to.

    Returns
    -------
    str or None
        ``"baseline"``, ``"avx2"`` or ``"avx512"``; ``None`` without the extension.
    """
    return None if _kernels is None else _kernels.get_simd_level()


def set_simd_level(level: str) -> None:
    """Force an instruction-set level; meant for testing.

    Parameters
    ----------
    level : str
        One of :func:`available_simd_levels`.  The environment variable
        ``FASTLOSS_SIMD`` sets the start value.

    Raises
    ------
    ValueError
        A level this CPU or this build lacks.
    RuntimeError
        No compiled extension.
    """
    if _kernels is None:
        raise RuntimeError("no compiled extension: there is no SIMD level to set")
    _kernels.set_simd_level(level)


def available_simd_levels() -> tuple[str, ...]:
    """The instruction-set levels this CPU and this build can run.

    Returns
    -------
    tuple of str
        From ``"baseline"`` up to the best one (e.g. ``("baseline", "avx2")``); empty
        without the extension.
    """
    return () if _kernels is None else tuple(_kernels.available_simd_levels())


def config() -> dict[str, Any]:
    """Build and runtime facts as a dict (what ``show_config`` prints)."""
    from fastloss import __version__

    info = {
        "fastloss": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "backend": _backend,
        "extension": "loaded" if _kernels is not None else f"not available ({_IMPORT_ERROR})",
    }
    if _kernels is not None:
        info.update(_kernels.build_info())
        info["simd level in use"] = _kernels.get_simd_level()
        info["simd levels available"] = ", ".join(_kernels.available_simd_levels())
        info["long rows"] = (f"from {_kernels.get_long_row_bytes()} bytes (next row prefetched; "
                             "outputs over 24 MiB streamed)")
    info["threads"] = get_num_threads()
    return info


def show_config(file: TextIO | None = None) -> None:
    """Print the version, backend, compiler, OpenMP and SIMD level in use, and threads.

    Parameters
    ----------
    file : file-like, optional
        Where to print (anything with ``write``); default ``sys.stdout``.
    """
    info = config()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:>{width}} : {value}", file=file)
