"""`make bench`: every benchmark in turn, each printing its own table."""

from __future__ import annotations

import importlib
import sys

BENCHES = ["bench.dataflow", "bench.headers", "bench.desk", "bench.limits"]

for name in BENCHES:
    print(f"\n=== {name} ===", flush=True)
    module = importlib.import_module(name)
    sys.argv = [name]
    module.main()
