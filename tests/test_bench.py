"""Tests of the benchmark package (fastloss.bench): tiny shapes, seconds.

They check the plumbing (flags, grids, JSON structure, positive times, the table's
header and width, the yardsticks), not speed.  The in-process tests install NumPy
stand-ins for the functions they time, so they run whatever the library already has;
the subprocess test runs the real package.
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
from fastloss.bench import cases, cli, machine, peers, report, runner, yardsticks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags that keep a run to a fraction of a second per row.
TINY = ["--shapes", "64x10", "--dtypes", "float32", "--threads", "1", "--repeats", "2",
        "--min-sample", "0.0002", "--copy-mb", "4"]

TOP_KEYS = {"schema", "created", "argv", "settings", "machine", "fastloss_config", "versions",
            "peers_missing", "yardstick_note", "copy_bandwidth", "read_bandwidth", "results",
            "skipped", "interrupted"}
MACHINE_KEYS = {"cpu_model", "cpu_count", "simd_flags", "simd_levels", "fastloss_commit",
                "date", "command", "loadavg_start", "loadavg_end"}
ROW_KEYS = {"function", "variant", "shape", "dtype", "threads", "bytes", "bytes_model",
            "repeats", "times_ms", "speedup", "best_peer", "allocates", "contender_notes",
            "stats_ms", "gb_per_s", "pct_copy_bandwidth", "pct_read_bandwidth",
            "in_row_bandwidth", "notes", "wall_seconds"}


def check_result(data, functions):
    assert TOP_KEYS <= set(data)
    assert data["schema"] == runner.SCHEMA
    assert data["interrupted"] is False
    assert MACHINE_KEYS <= set(data["machine"])
    assert data["machine"]["cpu_count"] >= 1
    assert data["fastloss_config"]["fastloss"] == fastloss.__version__
    for what in ("copy", "read"):
        assert [b["threads"] for b in data[f"{what}_bandwidth"]] == [1]
        assert all(b["gb_per_s"] > 0 for b in data[f"{what}_bandwidth"])
    seen = set()
    for row in data["results"]:
        assert ROW_KEYS <= set(row)
        assert row["function"] in functions
        assert row["shape"] == [64, 10] and row["dtype"] == "float32" and row["threads"] == 1
        assert row["bytes"] > 0 and row["gb_per_s"] > 0 and row["pct_copy_bandwidth"] > 0
        if cases.SPEC_BY_NAME[row["function"]].read_only:
            assert row["pct_read_bandwidth"] > 0
        else:
            assert row["pct_read_bandwidth"] is None
        assert row["repeats"] >= 2
        for name, ms in row["times_ms"].items():
            assert ms > 0, name
            assert len(row["stats_ms"][name]["samples"]) == row["repeats"]
            if name != "fastloss":
                assert row["speedup"][name] == pytest.approx(ms / row["times_ms"]["fastloss"])
        others = {k: v for k, v in row["times_ms"].items() if k != "fastloss"}
        assert row["best_peer"] == (min(others, key=others.get) if others else None)
        seen.add(row["function"])
    # every requested function was either measured or skipped with a reason
    assert set(functions) <= seen | {s["function"] for s in data["skipped"]}
    return seen


def assert_fits(table):
    too_wide = [line for line in table.splitlines() if len(line) > report.WIDTH]
    assert not too_wide, too_wide


def test_cli_subprocess_json(tmp_path):
    out = tmp_path / "bench.json"
    functions = ["softmax", "log_softmax", "cross_entropy_with_grad", "sigmoid"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "fastloss.bench", *TINY, "--peers", "fallback",
         "--functions", ",".join(functions), "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "peer/fastloss = best peer ms / fastloss ms" in proc.stdout
    assert_fits(proc.stdout)
    # progress goes to stderr: the bandwidths, then one numbered line per row
    assert "copy bandwidth" in proc.stderr
    assert "[1/4] softmax out= 64x10 float32 1t: fastloss" in proc.stderr
    data = json.loads(out.read_text())
    assert check_result(data, functions) == set(functions)
    assert {r["best_peer"] for r in data["results"]} == {"fallback"}
    assert data["machine"]["command"].endswith(f"--json {out}")


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


def test_cli_in_process_every_output_mode(stand_ins, tmp_path, capsys):
    out = tmp_path / "bench.json"
    functions = ["softmax", "cross_entropy_with_grad", "relu", "tanh", "sigmoid",
                 "leaky_relu"]
    assert cli.main([*TINY, "--peers", "fallback", "--all-outputs",
                     "--functions", ",".join(functions), "--json", str(out)]) == 0
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
    assert rows[("cross_entropy_with_grad", "out=logits")]["best_peer"] == "fallback"
    # bytes: softmax reads and writes N*C float32; the fused loss also reads N int64 targets
    assert rows[("softmax", "fresh")]["bytes"] == 2 * 64 * 10 * 4
    assert rows[("cross_entropy_with_grad", "fresh")]["bytes"] == 2 * 64 * 10 * 4 + 64 * 8
    assert "fallback" not in rows[("relu", "fresh")]["times_ms"]
    assert rows[("relu", "fresh")]["best_peer"] is None
    assert any("stand-in failure" in n for n in rows[("relu", "fresh")]["notes"])
    assert {"function": "tanh", "reason": "not in fastloss (yet)"} in data["skipped"]
    reasons = {(s["function"], s.get("variant")): s["reason"] for s in data["skipped"]}
    assert reasons[("sigmoid", "out=")] == "fastloss function has no out= parameter"
    assert "stand-in failure" in reasons[("leaky_relu", "fresh")]
    table = capsys.readouterr().out
    assert_fits(table)
    assert "out=logits" in table and "skipped: tanh" in table


def test_without_all_outputs_each_function_times_its_reused_output(stand_ins, tmp_path):
    out = tmp_path / "bench.json"
    assert cli.main([*TINY, "--peers", "none", "--functions",
                     "softmax,cross_entropy_with_grad,sigmoid", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert sorted((r["function"], r["variant"]) for r in data["results"]) == [
        ("cross_entropy_with_grad", "out=logits"), ("softmax", "out=")]
    # sigmoid's stand-in has no out=: its one row is skipped with the reason
    assert any(s["function"] == "sigmoid" and "no out=" in s["reason"]
               for s in data["skipped"])


def test_default_peers_missing_compares_against_the_fallback(stand_ins, tmp_path, monkeypatch):
    """A fresh `pip install ".[bench]"` has no PyTorch: the default run still has a peer."""
    monkeypatch.setitem(sys.modules, "torch", None)      # import torch raises ImportError
    out = tmp_path / "bench.json"
    assert cli.main([*TINY, "--functions", "softmax", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert rows and all(r["best_peer"] == "fallback" for r in rows)


def test_dram_sized_rows_time_the_yardsticks_in_their_round_robin(tmp_path, monkeypatch):
    # With a 1 MB yardstick, 512 x 256 float32 (512 KiB of data) counts as DRAM-sized
    # (at least 1/4 of the copy) and 64 x 10 does not.
    orders = []
    measure = runner.measure

    def spy(contenders, *args, **kwargs):
        orders.append([c.name for c in contenders])
        return measure(contenders, *args, **kwargs)

    monkeypatch.setattr(runner, "measure", spy)
    out = tmp_path / "bench.json"
    assert cli.main(["--shapes", "512x256,64x10", "--dtypes", "float32", "--threads", "1",
                     "--repeats", "3", "--min-sample", "0.0002", "--copy-mb", "1",
                     "--peers", "none", "--functions", "cross_entropy,softmax",
                     "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["results"]) == len(orders) == 4  # 2 shapes x (ce, softmax out=)
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
    pool = cases.InputPool((64, 10), "float32")
    before = pool["logits"].copy()
    spec = cases.SPEC_BY_NAME["cross_entropy_with_grad"]
    ctx = peers.Ctx(peers.Peers(("fallback",)))
    contenders = peers.build_contenders(spec, pool, "out=logits", ctx, _ce_with_grad, [])
    assert [c.name for c in contenders] == ["fastloss", "fallback"]
    for c in contenders:
        c.fn()
    np.testing.assert_array_equal(pool["logits"], before)


# --- grids -------------------------------------------------------------------------------
def test_default_grid_is_the_main_functions_in_float32_at_three_shapes(stand_ins):
    groups, skipped = runner.plan(runner.Settings().resolved())
    assert skipped == []
    assert [key for key, _ in groups] == [((65536, 10), "float32"), ((8192, 1000), "float32"),
                                          ((2048, 32000), "float32")]
    for _, rows in groups:
        assert [(s.name, v) for s, v in rows] == [
            ("softmax", "out="), ("log_softmax", "out="), ("cross_entropy", "fresh"),
            ("cross_entropy_with_grad", "out=logits")]
    s = runner.Settings().resolved()
    assert s.peers == ("torch",) and s.threads == tuple(sorted({1, machine.cores()}))


def test_full_grid_has_every_function_output_mode_and_peer(stand_ins):
    s = runner.Settings(grid="full").resolved()
    assert s.peers == peers.PEER_NAMES and s.all_variants
    groups, skipped = runner.plan(s)
    planned = {(spec.name, v) for _, rows in groups for spec, v in rows}
    skipped = {x["function"] for x in skipped}
    for spec in cases.SPECS:
        if spec.name not in skipped:
            assert {(spec.name, v) for v in spec.variants} <= planned
    assert ((512, 128256), "float64") in dict(groups)


def test_flags_override_the_grid():
    args = cli.make_parser().parse_args(["--quick", "--repeats", "4", "--peers", "all"])
    s = runner.Settings(grid="quick", repeats=args.repeats, peers=args.peers).resolved()
    assert s.repeats == 4 and s.peers == peers.PEER_NAMES
    assert s.budget == runner.GRID_DEFAULTS["quick"]["budget"]


# --- the table ---------------------------------------------------------------------------
def _row(function="softmax", variant="out=", times=None, allocates=None, pct=5.0):
    times = times or {"fastloss": 2.0, "torch": 0.5, "fallback": 4.0}
    others = {k: v for k, v in times.items() if k != "fastloss"}
    return {"function": function, "variant": variant, "shape": [8, 4], "dtype": "float64",
            "threads": 1, "times_ms": times,
            "speedup": {k: v / times["fastloss"] for k, v in others.items()},
            "best_peer": min(others, key=others.get) if others else None,
            "allocates": allocates or {k: False for k in times},
            "gb_per_s": 1.0, "pct_copy_bandwidth": pct, "notes": []}


def test_table_shows_the_best_peer_and_prints_slowdowns_as_measured():
    table = report.format_table({"results": [_row()], "copy_bandwidth": []})
    line = next(ln for ln in table.splitlines() if ln.startswith("softmax"))
    assert line.split() == ["softmax", "out=", "8x4", "float64", "1", "2.00", "torch",
                            "0.5", "0.25", "5%"]
    header = next(ln for ln in table.splitlines() if ln.startswith("function"))
    assert header.split() == ["function", "output", "shape", "dtype", "thr", "fastloss",
                              "ms", "best", "peer", "peer", "ms", "peer/fastloss", "%copy"]


def test_table_marks_a_best_peer_that_allocates_where_fastloss_does_not():
    row = _row(allocates={"fastloss": False, "torch": True, "fallback": False})
    table = report.format_table({"results": [row]})
    assert "0.5*" in next(ln for ln in table.splitlines() if ln.startswith("softmax"))


def test_table_fits_with_the_longest_function_name():
    long = max(cases.function_names(), key=len)
    rows = [_row(long, "fresh", {"fastloss": 1234.5, "torch.compile": 2345.6}),
            _row("cross_entropy_with_grad", "out=logits")]
    table = report.format_table({"results": rows, "skipped": [
        {"function": "x", "reason": "a long reason " * 20}]})
    assert_fits(table)
    lines = table.splitlines()
    assert lines[lines.index(long) + 1].split()[0] == "fresh"  # the row under its name


# --- flags ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--shapes", "10y3"], ["--dtypes", "int8"],
                                  ["--functions", "nope"], ["--threads", "0"],
                                  ["--peers", "tensorflow"], ["--simd", "sse2"],
                                  ["--quick", "--full"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        cli.main([*TINY, "--plot", "x.png"])
    assert exc.value.code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_plot_draws_a_png_and_from_json_redraws_it(stand_ins, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, saved = tmp_path / "bench.png", tmp_path / "bench.json"
    assert cli.main([*TINY, "--peers", "fallback", "--functions", "softmax",
                     "--plot", str(path), "--json", str(saved)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    path.unlink()
    # a saved run: the same table and figure, nothing timed
    assert cli.main(["--from-json", str(saved), "--plot", str(path)]) == 0
    assert capsys.readouterr().out == table
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_shapes():
    assert cli.parse_shapes("1024x100,64x10") == ((1024, 100), (64, 10))
    assert cli.parse_shapes("2X3x4") == ((2, 3, 4),)


# --- the yardsticks ------------------------------------------------------------------------
def test_the_library_extension_has_no_yardsticks():
    kernels = pytest.importorskip("fastloss._lib.kernels")
    assert not hasattr(kernels, "stream_copy") and not hasattr(kernels, "stream_read")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bandwidth_yardsticks_compute_what_they_time(threads):
    # The yardstick kernels must really read (and copy) every byte: an exact sum of
    # integers in float64 and a byte-for-byte copy, at the thread counts the bench uses.
    ext = yardsticks.load_extension()
    if ext is None:
        if os.environ.get("FASTLOSS_REQUIRE_EXTENSION") == "1":
            pytest.fail(f"{yardsticks.EXTENSION} was not built")
        pytest.skip(f"{yardsticks.EXTENSION} not built")
    src = np.arange(3 * 2**20 + 7, dtype=np.float64)
    assert ext.stream_read(src, threads) == math.fsum(src)
    assert ext.stream_read(src[:0], threads) == 0.0
    dst = np.zeros_like(src)
    ext.stream_copy(dst.view(np.int8), src.view(np.int8), threads)
    np.testing.assert_array_equal(dst, src)
    with pytest.raises(ValueError):
        ext.stream_copy(dst[1:].view(np.int8), src.view(np.int8), threads)
    expect_openmp = os.environ.get("FASTLOSS_EXPECT_OPENMP")
    if expect_openmp in ("0", "1"):
        assert ext.OPENMP is (expect_openmp == "1")


def test_yardsticks_fall_back_to_numpy_and_say_so():
    y = yardsticks.Yardsticks(2**20, extension=None)
    assert "not built" in y.note
    fn, method, used, nbytes = y.call("copy", 2)
    assert method == "numpy.copyto (single-threaded)" and used == 1 and nbytes == 2 * 2**20
    y.dst[:] = 0
    fn()
    np.testing.assert_array_equal(y.dst, y.src)
    fn, method, used, nbytes = y.call("read", 1)
    assert method == "numpy.sum" and fn() == y.src.size and nbytes == 2**20
    rows = yardsticks.bandwidth("read", (1, 2), y, repeats=2)
    assert [r["threads_used"] for r in rows] == [1, 1]


# --- --simd ------------------------------------------------------------------------------
def test_simd_and_peers_flags_parse():
    args = cli.make_parser().parse_args(["--simd", "avx2", "--peers", "torch,torch.compile"])
    assert args.simd == "avx2" and args.peers == ("torch", "torch.compile")
    assert cli.make_parser().parse_args(["--peers", "all"]).peers == peers.PEER_NAMES


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
    assert machine.apply_simd(level) == []
    assert os.environ["ATEN_CPU_CAPABILITY"] == aten
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x --xla_cpu_max_isa={xla}"
    assert set_levels == [level]
    # too late for a peer already imported: said so
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert any("ATEN_CPU_CAPABILITY" in w for w in machine.apply_simd(level))
    with pytest.raises(ValueError):
        machine.apply_simd("sse2")


def test_run_sets_simd_before_the_peers_load_and_reports_it(monkeypatch):
    levels = fastloss.available_simd_levels()
    if not levels:
        pytest.skip("compiled extension not available")
    level, before = levels[0], fastloss.get_simd_level()
    seen = {}

    class SpyPeers(peers.Peers):
        def __init__(self, wanted):
            seen["env"] = os.environ.get("ATEN_CPU_CAPABILITY")
            seen["fastloss"] = fastloss.get_simd_level()
            super().__init__(wanted)

    monkeypatch.setattr(runner, "Peers", SpyPeers)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("FASTLOSS_SIMD", raising=False)
    result = runner.run(functions=(), threads=(1,), peers=(), copy_bytes=2**20, simd=level)
    assert seen == {"env": machine.ATEN_CPU_CAPABILITY[level], "fastloss": level}
    assert result["settings"]["simd"] == level
    info = result["machine"]["simd_levels"]
    assert info["requested"] == info["fastloss"] == level
    assert f"SIMD (--simd {level}): fastloss {level}" in report.format_table(result)
    assert fastloss.get_simd_level() == before  # restored after the run


def test_header_reports_the_users_own_simd_variables(monkeypatch):
    monkeypatch.setenv("FASTLOSS_SIMD", "avx2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    info = machine.simd_levels(None, peers.Peers(()))
    assert info["FASTLOSS_SIMD"] == "avx2" and info["ATEN_CPU_CAPABILITY"] == "avx2"
    info.update(fastloss="avx2", torch="AVX2")  # as a run with torch would find them
    assert machine.simd_line(info) == (
        "  SIMD: fastloss avx2 (FASTLOSS_SIMD=avx2); torch AVX2 (ATEN_CPU_CAPABILITY=avx2)")


# --- torch.compile ---------------------------------------------------------------------
def test_torch_compile_is_a_peer_of_the_four_functions():
    assert "torch.compile" in peers.PEER_NAMES
    have = {s.name for s in cases.SPECS if "torch.compile" in s.peers}
    assert have == set(cases.MAIN_FUNCTIONS)
    assert set(peers.TORCH_COMPILE_NOTES) == have


def test_torch_compile_failure_drops_the_peer_with_a_note(monkeypatch):
    torch = pytest.importorskip("torch")

    def no_compiler(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler\nmore text")
        return call

    monkeypatch.setattr(torch, "compile", no_compiler)
    loaded = peers.Peers(("torch.compile",))
    if "torch.compile" not in loaded:
        pytest.skip(loaded.missing["torch.compile"])
    pool = cases.InputPool((8, 5), "float32")
    ctx = peers.Ctx(loaded)
    notes = []
    for name in ("softmax", "cross_entropy"):  # the second does not try again
        spec = cases.SPEC_BY_NAME[name]
        contenders = peers.build_contenders(spec, pool, "fresh", ctx, _softmax, notes)
        assert [c.name for c in contenders] == ["fastloss"]
    assert notes == 2 * ["torch.compile dropped: RuntimeError: compile failed: "
                         "RuntimeError: InvalidCxxCompiler: no working C++ compiler"]


@pytest.mark.torch_compile
def test_torch_compile_cross_entropy_with_grad_matches_fastloss():
    # One compile (seconds): the forward + backward peer on a tiny shape.  Skip with
    # -m "not torch_compile".
    pytest.importorskip("torch")
    loaded = peers.Peers(("torch.compile",))
    if "torch.compile" not in loaded:
        pytest.skip(loaded.missing["torch.compile"])
    pool = cases.InputPool((16, 10), "float32")
    spec = cases.SPEC_BY_NAME["cross_entropy_with_grad"]
    ctx = peers.Ctx(loaded, threads=1, progress=lambda msg: None)
    contenders = {}
    for variant in spec.variants:
        for c in peers.build_contenders(spec, pool, variant, ctx,
                                        fastloss.cross_entropy_with_grad, []):
            contenders[c.name, variant] = c
    assert len(loaded["torch.compile"]["compiled"]) == 1  # compiled once, for both rows
    tc = contenders["torch.compile", "fresh"]
    assert tc.allocates and "compiled in" in tc.note
    loss, grad = tc.fn()
    want_loss, want_grad = fastloss.cross_entropy_with_grad(pool["logits"], pool["target"])
    assert float(loss.detach()) == pytest.approx(float(want_loss), rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-4, atol=1e-7)
