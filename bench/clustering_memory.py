"""Peak memory and time of AMI/NMI and of the clustering step on many classes.

Each measurement runs in a fresh child process (``ru_maxrss`` of the child is its peak
RSS). Usage::

    python bench/clustering_memory.py ami 20000 10000        # AMI on random labels
    python bench/clustering_memory.py clustering 20000 10000 # clustering_metrics, D=128
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
what, n, classes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
y = np.arange(n) % classes
rng.shuffle(y)
from gluon_triplet.evaluation.clustering import ami, clustering_metrics
t = time.perf_counter()
if what == "ami":
    out = {"ami": ami(y, rng.permutation(y))}
else:
    emb = rng.normal(size=(n, 128)).astype(np.float32)
    out = clustering_metrics(emb, y, seed=0)
out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("ami", "clustering"))
    p.add_argument("n", type=int, help="labels (samples)")
    p.add_argument("classes", type=int)
    args = p.parse_args()
    what, n, classes = args.what, args.n, args.classes
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(n), str(classes)], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB
    result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    print(
        json.dumps(
            {
                "what": what,
                "labels": n,
                "classes": classes,
                "returncode": proc.returncode,
                "peak_rss_mib": round(peak, 1),
                "wall_seconds": round(wall, 2),
                **result,
                "stderr_tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else [],
            }
        ),
        flush=True,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
