"""``python -m fastloss.bench``: the same program as the ``fastloss-bench`` command."""
import sys

from fastloss.bench.cli import main

sys.exit(main())
