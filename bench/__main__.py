"""`make bench`: every benchmark in turn, each in a process of its own (they
register hooks and start services; none may colour another's numbers)."""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    "bench.dataflow",
    "bench.headers",
    "bench.fromparse",
    "bench.desk",
    "bench.desk_preview",
    "bench.limits",
    "bench.content",
    "bench.adapter",
    "bench.paired",
    "bench.outcomes",
]

failed = []
for name in BENCHES:
    print(f"\n=== {name} ===", flush=True)
    if subprocess.run([sys.executable, "-m", name], check=False).returncode != 0:
        failed.append(name)
sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
