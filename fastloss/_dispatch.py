"""The one place where a public function chooses between its compiled wrapper and its
NumPy twin in ``fastloss.fallback``."""
import functools

from fastloss import _runtime


def with_fallback(twin):
    """Decorate the compiled wrapper of ``twin`` (the ``fastloss.fallback`` function).

    The public function runs ``twin`` when the numpy backend is active (or the
    extension is missing) and the compiled wrapper otherwise.  It carries the twin's
    name, docstring and signature, so the two backends cannot drift apart in what
    they document or accept.
    """
    def decorate(compiled):
        @functools.wraps(twin)
        def public(*args, **kwargs):
            if _runtime.kernels() is None:
                return twin(*args, **kwargs)
            return compiled(*args, **kwargs)

        public.__module__ = "fastloss"
        return public

    return decorate
