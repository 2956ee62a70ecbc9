"""Facts about the run: the machine, the fastloss build, and the SIMD level of every side.

machine_info()  CPU model, cores, SIMD flags, memory, load average, the fastloss commit
                (when imported from a git checkout), the date and the exact command;
                the JSON's "machine" and what the table's header prints.
apply_simd()    --simd LEVEL: fastloss's level (set_simd_level) and what the peers are
                told, through the variables they read when they start (so set before
                torch and jax are imported): PyTorch's ATEN_CPU_CAPABILITY (its kernels'
                dispatch, and Inductor's vector ISA) and XLA's --xla_cpu_max_isa.  On an
                AVX-512 host, --simd avx2 compares every side's AVX2 build.
simd_levels()   what each side runs at (the JSON's machine.simd_levels).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shlex
import subprocess
import sys

SIMD_LEVELS = ("baseline", "avx2", "avx512")
ATEN_CPU_CAPABILITY = {"baseline": "default", "avx2": "avx2", "avx512": "avx512"}
XLA_CPU_MAX_ISA = {"baseline": "SSE4_2", "avx2": "AVX2", "avx512": "AVX512"}


def cores():
    """Cores this process may run on (the affinity mask, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info():
    """The machine facts of the JSON.  ``cpu_model`` is the kernel's model name (a VM
    may shorten it to the vendor's family name); ``cpu_family``/``cpu_model_number``
    (x86 CPUID, e.g. AMD family 26 = Zen 5) tell CPU classes apart when it does."""
    info = {"cpu_model": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "simd_flags": [], "memory_gb": None,
            "platform": platform.platform()}
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    info["cpu_model"] = value.strip()
                elif key == "cpu family":
                    info["cpu_family"] = int(value)
                elif key == "model":
                    info["cpu_model_number"] = int(value)
                elif key == "flags":
                    flags = set(value.split())
                    info["simd_flags"] = sorted(
                        f for f in flags
                        if f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                 "avx512vl", "avx512dq"))
                    break
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    info["fastloss_commit"] = fastloss_commit()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    prog = os.path.basename(sys.argv[0])
    if prog == "__main__.py":
        prog = "python -m fastloss.bench"
    info["command"] = " ".join([prog, shlex.join(sys.argv[1:])]).strip()
    return info


def fastloss_commit():
    """``git describe``-like ``<commit>[-dirty]`` of the checkout fastloss was imported
    from, or None (an installed copy, no git)."""
    import fastloss

    where = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))
    if not os.path.exists(os.path.join(where, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def fastloss_config():
    import fastloss

    cfg = getattr(fastloss, "config", None)
    if cfg is None:
        from fastloss._runtime import config as cfg
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
            for k, v in cfg().items()}


def simd_environment(level, environ=None):
    """The environment variables ``--simd LEVEL`` sets: ``{name: value}``.  XLA_FLAGS
    keeps its other flags and gets ``--xla_cpu_max_isa`` (replaced if there)."""
    environ = os.environ if environ is None else environ
    xla = [f for f in environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_cpu_max_isa")]
    return {"ATEN_CPU_CAPABILITY": ATEN_CPU_CAPABILITY[level],
            "XLA_FLAGS": " ".join([*xla, f"--xla_cpu_max_isa={XLA_CPU_MAX_ISA[level]}"])}


def apply_simd(level, environ=None):
    """Set the peers' environment variables (before torch or jax is imported) and
    fastloss's SIMD level; returns warnings (a list of str) for what could not take
    effect.  A level the CPU lacks raises ``ValueError`` (from fastloss)."""
    import fastloss

    environ = os.environ if environ is None else environ
    if level not in SIMD_LEVELS:
        raise ValueError(f"SIMD level must be one of {SIMD_LEVELS}; got {level!r}")
    warns = [f"{mod} was imported before --simd: its {var} may not take effect"
             for mod, var in (("torch", "ATEN_CPU_CAPABILITY"), ("jax", "XLA_FLAGS"))
             if mod in sys.modules]
    environ.update(simd_environment(level, environ))
    try:
        fastloss.set_simd_level(level)
    except RuntimeError as exc:  # no compiled extension: the peers are still set
        warns.append(f"fastloss: {exc}")
    return warns


def simd_levels(requested, peers, environ=None):
    """What each side runs at (the JSON's ``machine.simd_levels``): fastloss's level,
    what torch reports (``torch.backends.cpu.get_cpu_capability()``), and the
    environment variables that set them (the user's own, without ``--simd``)."""
    import fastloss

    environ = os.environ if environ is None else environ
    info = {"requested": requested, "fastloss": fastloss.get_simd_level(),
            "FASTLOSS_SIMD": environ.get("FASTLOSS_SIMD")}
    torch = next((peers[n]["torch"] for n in ("torch", "torch.compile") if n in peers), None)
    if torch is not None:
        with contextlib.suppress(Exception):
            info["torch"] = torch.backends.cpu.get_cpu_capability()
    info["ATEN_CPU_CAPABILITY"] = environ.get("ATEN_CPU_CAPABILITY")
    info["XLA_FLAGS"] = environ.get("XLA_FLAGS")
    if "jax" in peers:  # XLA has no call that reports its ISA: the flag it was given
        isa = [f for f in (info["XLA_FLAGS"] or "").split() if "xla_cpu_max_isa" in f]
        info["jax"] = isa[-1].partition("=")[2] if isa else "best"
    return info


def simd_line(info):
    """The header's line: ``fastloss avx2; torch AVX2 (ATEN_CPU_CAPABILITY=avx2); ...``."""
    if not info:
        return None
    env = info.get("FASTLOSS_SIMD")
    parts = [f"fastloss {info.get('fastloss') or 'none (no extension)'}"
             + (f" (FASTLOSS_SIMD={env})" if env and not info.get("requested") else "")]
    aten = info.get("ATEN_CPU_CAPABILITY")
    if info.get("torch") or aten:
        parts.append(f"torch {info.get('torch') or '?'}"
                     + (f" (ATEN_CPU_CAPABILITY={aten})" if aten else ""))
    if info.get("inductor"):
        parts.append(f"torch.compile {info['inductor']}")
    if info.get("jax"):
        parts.append(f"jax {info['jax']}" + (" (XLA_FLAGS --xla_cpu_max_isa)"
                                             if info["jax"] != "best" else ""))
    where = f" (--simd {info['requested']})" if info.get("requested") else ""
    return f"  SIMD{where}: " + "; ".join(parts)
