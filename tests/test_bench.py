"""Smoke tests of the benchmark CLI (``python -m fastloss.bench``): tiny shapes, seconds.

They check the plumbing (flags, JSON structure, positive times, the table's header), not
speed.  The in-process test installs NumPy stand-ins for the functions it times, so it
runs whatever the library already has; the subprocess test runs the real package.
"""
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import fastloss
from fastloss import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags that keep a run to a fraction of a second per row.
TINY = ["--shapes", "64x10", "--dtypes", "float32", "--threads", "1", "--repeats", "2",
        "--min-sample", "0.0002", "--copy-mb", "4"]

TOP_KEYS = {"schema", "created", "argv", "settings", "machine", "fastloss_config", "versions",
            "peers_missing", "copy_bandwidth", "read_bandwidth", "results", "skipped",
            "interrupted"}
ROW_KEYS = {"function", "variant", "shape", "dtype", "threads", "bytes", "bytes_model",
            "repeats", "times_ms", "speedup", "allocates", "contender_notes", "stats_ms",
            "gb_per_s", "pct_copy_bandwidth", "pct_read_bandwidth", "in_row_bandwidth",
            "notes"}


def check_result(data, functions):
    assert TOP_KEYS <= set(data)
    assert data["schema"] == bench.SCHEMA
    assert data["interrupted"] is False
    assert data["machine"]["cpu_count"] >= 1
    assert data["fastloss_config"]["fastloss"] == fastloss.__version__
    assert [b["threads"] for b in data["copy_bandwidth"]] == [1]
    assert all(b["gb_per_s"] > 0 for b in data["copy_bandwidth"])
    assert [b["threads"] for b in data["read_bandwidth"]] == [1]
    assert all(b["gb_per_s"] > 0 for b in data["read_bandwidth"])
    read_only = {s.name for s in bench.SPECS if s.read_only}
    assert {"cross_entropy", "logsumexp"} <= read_only and "softmax" not in read_only
    seen = set()
    for row in data["results"]:
        assert ROW_KEYS <= set(row)
        assert row["function"] in functions
        assert row["shape"] == [64, 10] and row["dtype"] == "float32" and row["threads"] == 1
        assert row["bytes"] > 0 and row["gb_per_s"] > 0 and row["pct_copy_bandwidth"] > 0
        if row["function"] in read_only:
            assert row["pct_read_bandwidth"] > 0
        else:
            assert row["pct_read_bandwidth"] is None
        assert row["repeats"] >= 2
        assert row["times_ms"]["fastloss"] > 0
        for name, ms in row["times_ms"].items():
            assert ms > 0, name
            assert len(row["stats_ms"][name]["samples"]) == row["repeats"]
            if name != "fastloss":
                assert row["speedup"][name] == pytest.approx(ms / row["times_ms"]["fastloss"])
        seen.add(row["function"])
    # every requested function was either measured or skipped with a reason
    skipped = {s["function"] for s in data["skipped"]}
    assert set(functions) <= seen | skipped
    return seen


def test_cli_subprocess_json(tmp_path):
    out = tmp_path / "bench.json"
    functions = ["softmax", "log_softmax", "cross_entropy_with_grad", "sigmoid"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "fastloss.bench", *TINY, "--peers", "none",
         "--functions", ",".join(functions), "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "speed-up = fallback ms / fastloss ms" in proc.stdout
    assert "copy bandwidth" in proc.stderr  # progress goes to stderr
    check_result(json.loads(out.read_text()), functions)


# --- in process, with stand-ins ------------------------------------------------------
def _softmax(x, axis=-1, *, out=None):
    y = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    np.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


def _ce_with_grad(logits, target, *, out=None):
    g = _softmax(logits, out=out)
    n = target.shape[0]
    loss = -np.log(g[np.arange(n), target]).mean()
    g[np.arange(n), target] -= 1.0
    g /= n
    return loss, g


def _broken(x, *, out=None):
    raise RuntimeError("stand-in failure")


@pytest.fixture
def stand_ins(monkeypatch):
    """fastloss.softmax / cross_entropy_with_grad / relu and a fallback module."""
    fb = types.ModuleType("fastloss.fallback")
    fb.softmax = _softmax
    fb.cross_entropy_with_grad = _ce_with_grad
    fb.relu = _broken  # a fallback that fails is dropped with a note
    monkeypatch.setitem(sys.modules, "fastloss.fallback", fb)
    monkeypatch.setattr(fastloss, "softmax", _softmax, raising=False)
    monkeypatch.setattr(fastloss, "cross_entropy_with_grad", _ce_with_grad, raising=False)
    monkeypatch.setattr(fastloss, "relu", lambda x, *, out=None: np.maximum(x, 0, out=out),
                        raising=False)
    # a function that fastloss lacks is skipped, not an error
    monkeypatch.delattr(fastloss, "tanh", raising=False)
    # no out= parameter: only the fresh row; a failing call: the row is skipped
    monkeypatch.setattr(fastloss, "sigmoid", lambda x: 1 / (1 + np.exp(-x)), raising=False)
    monkeypatch.setattr(fastloss, "leaky_relu", _broken, raising=False)
    return fb


def test_cli_in_process_variants(stand_ins, tmp_path, capsys):
    out = tmp_path / "bench.json"
    functions = ["softmax", "cross_entropy_with_grad", "relu", "tanh", "sigmoid",
                 "leaky_relu"]
    assert bench.main([*TINY, "--peers", "none", "--functions", ",".join(functions),
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    seen = check_result(data, functions)
    assert seen == {"softmax", "cross_entropy_with_grad", "relu", "sigmoid"}
    rows = {(r["function"], r["variant"]): r for r in data["results"]}
    assert set(rows) == {("softmax", "fresh"), ("softmax", "out="),
                         ("cross_entropy_with_grad", "fresh"),
                         ("cross_entropy_with_grad", "out=logits"),
                         ("relu", "fresh"), ("relu", "out="), ("sigmoid", "fresh")}
    assert rows[("softmax", "fresh")]["allocates"] == {"fastloss": True, "fallback": True}
    assert rows[("softmax", "out=")]["allocates"] == {"fastloss": False, "fallback": False}
    assert "fallback" in rows[("cross_entropy_with_grad", "out=logits")]["speedup"]
    # bytes: softmax reads and writes N*C float32; the fused loss also reads N int64 targets
    assert rows[("softmax", "fresh")]["bytes"] == 2 * 64 * 10 * 4
    assert rows[("cross_entropy_with_grad", "fresh")]["bytes"] == 2 * 64 * 10 * 4 + 64 * 8
    assert "fallback" not in rows[("relu", "fresh")]["times_ms"]
    assert any("stand-in failure" in n for n in rows[("relu", "fresh")]["notes"])
    assert {"function": "tanh", "reason": "not in fastloss (yet)"} in data["skipped"]
    reasons = {(s["function"], s.get("variant")): s["reason"] for s in data["skipped"]}
    assert reasons[("sigmoid", "out=")] == "fastloss function has no out= parameter"
    assert "stand-in failure" in reasons[("leaky_relu", "fresh")]
    table = capsys.readouterr().out
    assert "speed-up = fallback ms / fastloss ms; >1 means fastloss is faster" in table
    assert "out=logits" in table and "skipped: tanh" in table


def test_dram_sized_rows_time_the_yardsticks_in_their_round_robin(tmp_path, monkeypatch):
    # With a 1 MB yardstick, 512 x 256 float32 (512 KiB of data) counts as DRAM-sized
    # (at least 1/4 of the copy) and 64 x 10 does not.
    orders = []
    measure = bench.measure

    def spy(contenders, *args, **kwargs):
        orders.append([c.name for c in contenders])
        return measure(contenders, *args, **kwargs)

    monkeypatch.setattr(bench, "measure", spy)
    out = tmp_path / "bench.json"
    assert bench.main(["--shapes", "512x256,64x10", "--dtypes", "float32", "--threads", "1",
                       "--repeats", "3", "--min-sample", "0.0002", "--copy-mb", "1",
                       "--peers", "none", "--functions", "cross_entropy,softmax",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["results"]) == len(orders) == 6  # 2 shapes x (ce, softmax, softmax out=)
    start = {"copy": data["copy_bandwidth"][0]["gb_per_s"],
             "read": data["read_bandwidth"][0]["gb_per_s"]}
    for row, order in zip(data["results"], orders):
        read_only = row["function"] == "cross_entropy"
        in_row = row["in_row_bandwidth"]
        if row["shape"] == [64, 10]:
            assert in_row == {} and "copy yardstick" not in order
            copy, read = start["copy"], start["read"]
        else:
            wanted = ["copy", "read"] if read_only else ["copy"]
            assert sorted(in_row) == wanted and all(v > 0 for v in in_row.values())
            # timed right after fastloss, and reported apart from the contenders
            assert order[:1 + len(wanted)] == ["fastloss", *(f"{w} yardstick" for w in wanted)]
            copy, read = in_row["copy"], in_row.get("read")
        assert not any("yardstick" in name for name in row["times_ms"])
        assert row["pct_copy_bandwidth"] == pytest.approx(100 * row["gb_per_s"] / copy)
        if read_only:
            assert row["pct_read_bandwidth"] == pytest.approx(100 * row["gb_per_s"] / read)


def test_in_place_variant_leaves_inputs_alone(stand_ins):
    pool = bench.InputPool((64, 10), "float32")
    before = pool["logits"].copy()
    spec = bench.SPEC_BY_NAME["cross_entropy_with_grad"]
    ctx = bench.Ctx(bench.Peers(()))
    contenders = bench.build_contenders(spec, pool, "out=logits", ctx, _ce_with_grad,
                                        _ce_with_grad, [])
    for c in contenders:
        c.fn()
    np.testing.assert_array_equal(pool["logits"], before)


def test_table_prints_slowdowns_as_measured():
    row = {"function": "softmax", "variant": "fresh", "shape": [8, 4], "dtype": "float64",
           "threads": 1, "times_ms": {"fastloss": 2.0, "fallback": 1.0, "torch": 0.5},
           "speedup": {"fallback": 0.5, "torch": 0.25},
           "allocates": {"fastloss": True, "fallback": True, "torch": True},
           "gb_per_s": 1.0, "pct_copy_bandwidth": 5.0, "notes": []}
    table = bench.format_table({"results": [row], "copy_bandwidth": []})
    line = next(ln for ln in table.splitlines() if ln.startswith("softmax"))
    assert "0.50" in line and "0.5 (0.25)" in line


@pytest.mark.parametrize("argv", [["--shapes", "10y3"], ["--dtypes", "int8"],
                                  ["--functions", "nope"], ["--threads", "0"],
                                  ["--peers", "tensorflow"], ["--simd", "sse2"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2


def test_parse_shapes():
    assert bench.parse_shapes("1024x100,64x10") == ((1024, 100), (64, 10))
    assert bench.parse_shapes("2X3x4") == ((2, 3, 4),)


@pytest.mark.parametrize("threads", [1, 2])
def test_bandwidth_yardsticks_compute_what_they_time(threads):
    # The yardstick kernels must really read (and copy) every byte: an exact sum of
    # integers in float64 and a byte-for-byte copy, at the thread counts the bench uses.
    kernels = pytest.importorskip("fastloss._lib.kernels")
    src = np.arange(3 * 2**20 + 7, dtype=np.float64)
    assert kernels.stream_read(src, threads) == math.fsum(src)
    assert kernels.stream_read(src[:0], threads) == 0.0
    dst = np.zeros_like(src)
    kernels.stream_copy(dst.view(np.int8), src.view(np.int8), threads)
    np.testing.assert_array_equal(dst, src)


# --- --simd ----------------------------------------------------------------------------
def test_simd_and_peers_flags_parse():
    args = bench.make_parser().parse_args(["--simd", "avx2", "--peers", "torch,torch.compile"])
    assert args.simd == "avx2" and args.peers == ("torch", "torch.compile")
    assert "torch.compile" in bench.make_parser().parse_args([]).peers  # on with "all"


@pytest.mark.parametrize("level, aten, xla", [("baseline", "default", "SSE4_2"),
                                              ("avx2", "avx2", "AVX2"),
                                              ("avx512", "avx512", "AVX512")])
def test_apply_simd_sets_the_peers_environment(monkeypatch, level, aten, xla):
    set_levels = []
    monkeypatch.setattr(fastloss, "set_simd_level", set_levels.append)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    # XLA_FLAGS keeps the user's other flags; an old --xla_cpu_max_isa is replaced
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512 --xla_dump_to=/tmp/x")
    for mod in ("torch", "jax"):  # not imported yet: the variables will take effect
        monkeypatch.delitem(sys.modules, mod, raising=False)
    assert bench.apply_simd(level) == []
    assert os.environ["ATEN_CPU_CAPABILITY"] == aten
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x --xla_cpu_max_isa={xla}"
    assert set_levels == [level]
    # too late for a peer already imported: said so
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert any("ATEN_CPU_CAPABILITY" in w for w in bench.apply_simd(level))
    with pytest.raises(ValueError):
        bench.apply_simd("sse2")


def test_run_sets_simd_before_the_peers_load_and_reports_it(monkeypatch):
    levels = fastloss.available_simd_levels()
    if not levels:
        pytest.skip("compiled extension not available")
    level, before = levels[0], fastloss.get_simd_level()
    seen = {}

    class SpyPeers(bench.Peers):
        def __init__(self, wanted):
            seen["env"] = os.environ.get("ATEN_CPU_CAPABILITY")
            seen["fastloss"] = fastloss.get_simd_level()
            super().__init__(wanted)

    monkeypatch.setattr(bench, "Peers", SpyPeers)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("FASTLOSS_SIMD", raising=False)
    result = bench.run(functions=(), threads=(1,), peers=(), copy_bytes=2**20, simd=level)
    assert seen == {"env": bench.ATEN_CPU_CAPABILITY[level], "fastloss": level}
    assert result["settings"]["simd"] == level
    info = result["machine"]["simd_levels"]
    assert info["requested"] == info["fastloss"] == level
    assert f"SIMD (--simd {level}): fastloss {level}" in bench.format_table(result)
    assert fastloss.get_simd_level() == before  # restored after the run


def test_header_reports_the_users_own_simd_variables(monkeypatch):
    monkeypatch.setenv("FASTLOSS_SIMD", "avx2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    info = bench.simd_levels(None, bench.Peers(()))
    assert info["FASTLOSS_SIMD"] == "avx2" and info["ATEN_CPU_CAPABILITY"] == "avx2"
    info.update(fastloss="avx2", torch="AVX2")  # as a run with torch would find them
    assert bench._simd_line(info) == (
        "  SIMD: fastloss avx2 (FASTLOSS_SIMD=avx2); torch AVX2 (ATEN_CPU_CAPABILITY=avx2)")


# --- torch.compile ---------------------------------------------------------------------
def test_torch_compile_is_a_peer_of_the_four_functions():
    assert "torch.compile" in bench.PEER_NAMES
    have = {s.name for s in bench.SPECS if "torch.compile" in s.peers}
    assert have == {"softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad"}
    assert set(bench.TORCH_COMPILE_NOTES) == have


def test_torch_compile_failure_drops_the_peer_with_a_note(monkeypatch):
    torch = pytest.importorskip("torch")

    def no_compiler(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler\nmore text")
        return call

    monkeypatch.setattr(torch, "compile", no_compiler)
    peers = bench.Peers(("torch.compile",))
    if "torch.compile" not in peers:
        pytest.skip(peers.missing["torch.compile"])
    pool = bench.InputPool((8, 5), "float32")
    ctx = bench.Ctx(peers)
    notes = []
    for name in ("softmax", "cross_entropy"):  # the second does not try again
        spec = bench.SPEC_BY_NAME[name]
        contenders = bench.build_contenders(spec, pool, "fresh", ctx, _softmax, None, notes)
        assert [c.name for c in contenders] == ["fastloss"]
    assert len(notes) == 4  # per row: no fallback, and the compile's note
    assert notes[1] == notes[3] == ("torch.compile dropped: RuntimeError: compile failed: "
                                    "RuntimeError: InvalidCxxCompiler: no working C++ compiler")


@pytest.mark.torch_compile
def test_torch_compile_cross_entropy_with_grad_matches_fastloss():
    # One compile (seconds): the forward + backward peer on a tiny shape.  Skip with
    # -m "not torch_compile".
    pytest.importorskip("torch")
    peers = bench.Peers(("torch.compile",))
    if "torch.compile" not in peers:
        pytest.skip(peers.missing["torch.compile"])
    pool = bench.InputPool((16, 10), "float32")
    spec = bench.SPEC_BY_NAME["cross_entropy_with_grad"]
    ctx = bench.Ctx(peers, threads=1, progress=lambda msg: None)
    contenders = {}
    for variant in spec.variants:
        for c in bench.build_contenders(spec, pool, variant, ctx,
                                        fastloss.cross_entropy_with_grad, None, []):
            contenders[c.name, variant] = c
    assert len(peers["torch.compile"]["compiled"]) == 1  # compiled once, for both rows
    tc = contenders["torch.compile", "fresh"]
    assert tc.allocates and "compiled in" in tc.note
    loss, grad = tc.fn()
    want_loss, want_grad = fastloss.cross_entropy_with_grad(pool["logits"], pool["target"])
    assert float(loss.detach()) == pytest.approx(float(want_loss), rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-4, atol=1e-7)
