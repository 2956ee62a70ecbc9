"""Compiled kernels (built from ``src/``).  Import through ``fastloss._runtime``."""
