"""fastloss's benchmark: fastloss against its peers and against the memory's bandwidth.

    fastloss-bench                  # the default table: about two minutes on two cores
    fastloss-bench --quick          # a smoke test in seconds
    fastloss-bench --full --json results.json --plot results.png    # most of an hour

(``python -m fastloss.bench`` is the same program), or from Python ``bench()``, which
prints the same table and returns the figures.  One job per module:

  cases        the functions timed (SPECS), their grids and their input arrays
  peers        the libraries compared with (PyTorch, torch.compile, JAX, SciPy,
               scikit-learn, fastloss's NumPy fallback) and the contenders of a row
  timing       interleaved repeats of a row's contenders, medians
  yardsticks   the memory copy/read bandwidth each call is compared with (the compiled
               part is the benchmark-only extension fastloss.bench._yardsticks)
  machine      CPU, build, commit, and the SIMD level of every side (--simd)
  runner       settings, the plan of rows, the run
  report       the table, the JSON, the plot
  cli          the command line and bench()
"""
from fastloss.bench.cases import SPECS, function_names
from fastloss.bench.cli import bench, main
from fastloss.bench.report import format_table
from fastloss.bench.runner import Settings, run

__all__ = ["bench", "main", "run", "Settings", "format_table", "SPECS", "function_names"]
