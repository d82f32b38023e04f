"""Run the default test suite under other thread counts and seeds (issue 18: "green on any machine").

Each variant is a separate `pytest -q` process with METABONK_TEST_THREADS / METABONK_TEST_SEED set (see
tests/conftest.py); the pass/fail/skip counts, the failing test ids and the wall time of each go to
benchmarks/results/test-matrix.json. Usage: `.venv/bin/python benchmarks/test_matrix.py [THREADS:SEED ...]`
(default: 1:1 and 2:2 — the CI run itself is 1:0; `make test-matrix` runs the default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from metabonk.common.results import write_result

ROOT = Path(__file__).resolve().parents[1]


def run_variant(threads: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        env = dict(os.environ, METABONK_TEST_THREADS=str(threads), METABONK_TEST_SEED=str(seed))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        wall = time.time() - t0
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                  if c.find("failure") is not None or c.find("error") is not None]
        return {"threads": threads, "seed_offset": seed, "returncode": rc, "wall_s": round(wall, 1),
                "tests": int(suite.get("tests", 0)), "failures": int(suite.get("failures", 0)),
                "errors": int(suite.get("errors", 0)), "skipped": int(suite.get("skipped", 0)),
                "failed": failed}


def main(argv: list[str]) -> int:
    specs = argv or ["1:1", "2:2"]
    variants = []
    for spec in specs:
        threads, seed = (int(x) for x in spec.split(":"))
        variants.append(run_variant(threads, seed))
        print(variants[-1], flush=True)
    write_result(ROOT / "benchmarks/results/test-matrix.json",
                 {"command": " ".join(["python", "benchmarks/test_matrix.py", *argv]), "variants": variants})
    return 0 if all(v["returncode"] == 0 for v in variants) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
