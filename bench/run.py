"""Run the benchmarks and print each result as a ratio against a baseline measured in
the same run (never an absolute wall-clock target).

    python bench/run.py            # full runs
    python bench/run.py --quick    # tiny sizes: a smoke test that CI runs
    python bench/run.py query      # only benchmarks whose name contains "query"

A benchmark is a module ``bench/bench_*.py`` with a function
``run(quick: bool) -> list[Result]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Result  # noqa: E402


def _load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI smoke runs")
    parser.add_argument(
        "filter", nargs="?", default="", help="run only benchmarks whose file name contains this"
    )
    args = parser.parse_args(argv)

    paths = sorted(p for p in HERE.glob("bench_*.py") if args.filter in p.stem)
    failures = 0
    for path in paths:
        started = time.perf_counter()
        module = _load(path)
        try:
            results: list[Result] = module.run(args.quick)  # type: ignore[attr-defined]
        except Exception as exc:  # a broken benchmark must fail the smoke run loudly
            failures += 1
            print(f"{path.stem}: FAILED: {type(exc).__name__}: {exc}")
            continue
        for result in results:
            print(result.render())
        print(f"{path.stem}: done in {time.perf_counter() - started:.1f}s\n")
    if not paths:
        print("no benchmarks matched")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
