"""``posealign demo --out DIR``: the built-in benchmark end to end, no downloads.

Generates the benchmark (once), trains source-only, the oracle, the mean teacher and DAML, evaluates
each on the target test split (and the source test split), prints a table like the paper's Table 1,
writes ``DIR/results.json`` and a report. Finished runs in DIR are reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from posealign.files import atomic_write_json

DEMO_METHODS = ("source_only", "oracle", "mean_teacher", "daml")


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="the built-in benchmark end to end", description=__doc__)
    parser.add_argument("--out", required=True, help="output folder (benchmark, runs, results.json, report)")
    parser.add_argument("--methods", nargs="+", default=list(DEMO_METHODS), help="method presets to run")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.experiments import split_overrides

    args.methods, args.overrides = split_overrides(args.methods, args.overrides)
    from posealign.benchmark.task import ensure_benchmark
    from posealign.experiments import config_for, format_gap_closed, format_table, gap_closed, run_preset
    from posealign.keypoints import BODY16

    out = Path(args.out).resolve()
    started = time.time()
    shared = [
        *args.overrides,
        f"data.benchmark_root={out / 'benchmark'}",
        f"run.pretrain_cache={out / 'pretrain_cache'}",
    ]
    ensure_benchmark(config_for("source_only", "benchmark", [*shared, f"run.out={out / 'source_only'}"]))
    print(f"benchmark ready in {out / 'benchmark'} ({time.time() - started:.0f} s)")
    rows = {}
    for method in args.methods:
        results = run_preset(method, "benchmark", out / method, shared)
        rows[results["method"]] = {
            domain: _table_numbers(results[domain]) for domain in ("target", "source") if domain in results
        }
    groups = list(BODY16.groups)
    print("\nTarget test split, PCK@0.05 (legacy), teacher where there is one:")
    print(format_table(rows, groups, "target"))
    shares = gap_closed(rows)
    if shares:
        print(format_gap_closed(shares))
    print("\nSource test split:")
    print(format_table(rows, groups, "source"))
    for name, share in shares.items():
        rows[name]["gap_closed"] = share
    atomic_write_json(out / "results.json", rows)
    try:
        from posealign.report import write_report
    except ImportError:
        pass
    else:
        page = write_report([out / m for m in args.methods], out / "report")
        print(f"\nreport: {page}")
    print(f"results: {out / 'results.json'} ({time.time() - started:.0f} s in all)")
    return 0


def _table_numbers(numbers: dict) -> dict:
    return {"pck": numbers["pck"], "groups": numbers["groups"]}
