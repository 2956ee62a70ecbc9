"""The one place where a public function chooses what runs: its Dask graph builder
(``fastloss._dask``) for Dask arrays, a DLPack round trip (``fastloss._interop``) for
PyTorch and JAX arrays, and otherwise its compiled wrapper or its NumPy twin in
``fastloss.fallback``."""
from __future__ import annotations

import functools
import inspect
from itertools import chain
from typing import Any, Callable, TypeVar, cast

from fastloss import _runtime
from fastloss._interop import array_family, call_with_dlpack

F = TypeVar("F", bound=Callable[..., Any])


def _family(args: tuple, kwargs: dict) -> str | None:
    """The foreign array library among the arguments; Dask wins over the others."""
    found = None
    for value in chain(args, kwargs.values()):
        family = array_family(value)
        if family == "dask":
            return family
        found = found or family
    return found


def with_fallback(twin: Callable[..., Any]) -> Callable[[F], F]:
    """Decorate the compiled wrapper of ``twin`` (the ``fastloss.fallback`` function).

    The public function runs ``twin`` when the numpy backend is active (or the
    extension is missing) and the compiled wrapper otherwise.  It is the compiled
    wrapper as far as anyone can see -- its name, docstring, annotated signature and
    type -- so the public API is written once, where the wrapper is defined; the twin
    carries a one-line docstring pointing here.  tests/test_api.py checks that both
    take the same parameters with the same defaults.

    Any Dask array among the arguments sends the call to ``fastloss._dask``, which
    builds a lazy graph whose blocks call this same public function; any torch or JAX
    array, to ``fastloss._interop``, which calls it on NumPy views.
    """
    def decorate(compiled: F) -> F:
        signature = inspect.signature(compiled)

        @functools.wraps(compiled)
        def public(*args: Any, **kwargs: Any) -> Any:
            family = _family(args, kwargs)
            if family == "dask":
                from fastloss import _dask
                return _dask.call(compiled.__name__, signature, args, kwargs)
            if family is not None:
                return call_with_dlpack(public, signature, family, args, kwargs)
            if _runtime.kernels() is None:
                return twin(*args, **kwargs)
            return compiled(*args, **kwargs)

        public.__module__ = "fastloss"
        return cast(F, public)

    return decorate
