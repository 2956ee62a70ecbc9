"""The one place where a public function chooses between its compiled wrapper and its
NumPy twin in ``fastloss.fallback``."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from fastloss import _runtime

F = TypeVar("F", bound=Callable[..., Any])


def with_fallback(twin: Callable[..., Any]) -> Callable[[F], F]:
    """Decorate the compiled wrapper of ``twin`` (the ``fastloss.fallback`` function).

    The public function runs ``twin`` when the numpy backend is active (or the
    extension is missing) and the compiled wrapper otherwise.  It is the compiled
    wrapper as far as anyone can see -- its name, docstring, annotated signature and
    type -- so the public API is written once, where the wrapper is defined; the twin
    carries a one-line docstring pointing here.  tests/test_api.py checks that both
    take the same parameters with the same defaults.
    """
    def decorate(compiled: F) -> F:
        @functools.wraps(compiled)
        def public(*args: Any, **kwargs: Any) -> Any:
            if _runtime.kernels() is None:
                return twin(*args, **kwargs)
            return compiled(*args, **kwargs)

        public.__module__ = "fastloss"
        return cast(F, public)

    return decorate
