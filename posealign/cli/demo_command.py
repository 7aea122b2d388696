"""``posealign demo --out DIR [--task benchmark] [--resume auto]``: a built-in benchmark end to end, no downloads.

``--task`` picks the benchmark: ``benchmark`` (humans, the default), ``benchmark_quadruped`` or
``benchmark_hand``. Generates the benchmark (once, in ``DIR/benchmark``), trains source-only, the oracle, DAML and DAML+ (``daml_plus``: the
settings that make each alignment level do measurable work), evaluates each on the target test
split (and the source test split and target_val), prints a table like the paper's Table 1,
writes ``DIR/results.json`` and a report. Finished runs in DIR are reused and stopped ones continue
from their latest checkpoint (``--resume auto`` says so explicitly; it is what the demo always does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from posealign.cli import add_command_parser, add_parallel_arguments, signal_number
from posealign.config import load_config
from posealign.config_checks import check_overrides_act, check_values
from posealign.errors import UserError
from posealign.files import atomic_write_json

# The demo's message in four rows: the gap (source-only, oracle) and how much of it DAML closes. The
# mean teacher alone (the paper's Table 6 baseline, in `posealign ablate`) would add a fifth adaptation
# and about 35 s on a 2-core CPU; `--methods ... mean_teacher` adds it back. Four rows keep the demo
# within 10 minutes on a 2-core CPU.
DEMO_METHODS = ("source_only", "oracle", "daml", "daml_plus")


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "demo", "the built-in benchmark end to end", __doc__)
    parser.add_argument("--out", required=True, help="output folder (benchmark, runs, results.json, report)")
    parser.add_argument(
        "--task",
        default="benchmark",
        help="a built-in benchmark task: benchmark (default), benchmark_quadruped or benchmark_hand",
    )
    parser.add_argument("--methods", nargs="+", default=list(DEMO_METHODS), help="method presets to run")
    parser.add_argument(
        "--resume",
        choices=["auto"],
        default="auto",
        help="continue stopped runs from their latest checkpoint (always on: finished runs are reused)",
    )
    # Three one-thread workers on two cores: source_only, the oracle and daml's stylized stage 1 start
    # together, then daml and daml+ adapt side by side from that one stage 1.
    add_parallel_arguments(parser, jobs=3)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.experiments import split_overrides

    args.methods, args.overrides = split_overrides(args.methods, args.overrides)
    from posealign.benchmark.task import ensure_benchmark
    from posealign.experiments import PlannedRun, config_for, format_gap_closed, format_table, gap_closed, run_presets
    from posealign.keypoints import KEYPOINT_SETS

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    out = Path(args.out).resolve()
    started = time.time()
    shared = [
        *args.overrides,
        f"data.benchmark_root={out / 'benchmark'}",
        f"run.pretrain_cache={out / 'pretrain_cache'}",
    ]
    if not load_config("source_only", args.task, ["run.out=/dev/null"]).data.get("benchmark_body"):
        raise UserError(
            f"--task {args.task}: not a built-in benchmark; the demo runs benchmark, benchmark_quadruped or "
            "benchmark_hand (train on other tasks with `posealign train` or `posealign ablate --task`)"
        )
    configs = {method: load_config(method, args.task, [*shared, f"run.out={out / method}"]) for method in args.methods}
    probe = config_for("source_only", args.task, [*shared, f"run.out={out / 'source_only'}"])
    _check_same_body(out, str(probe.data.benchmark_body), args.task)
    check_overrides_act(configs, args.overrides)
    for config in configs.values():  # every value checked before the benchmark or a run folder is written
        check_values(config, check_roots=False)
    ensure_benchmark(probe)
    print(f"benchmark ready in {out / 'benchmark'} ({time.time() - started:.0f} s)")
    planned = [PlannedRun(method, args.task, out / method, tuple(shared)) for method in args.methods]
    try:
        finished = run_presets(planned, args.jobs, args.threads)
    except Exception as error:
        if type(error).__name__ != "TrainingInterrupted":
            raise
        print(f"posealign demo: {error}; run the same demo command to continue", file=sys.stderr)
        return 128 + signal_number(error)
    rows = {}
    for results in finished:
        rows[results["method"]] = {
            domain: _table_numbers(results[domain]) for domain in ("target", "source") if domain in results
        }
    groups = list(KEYPOINT_SETS[str(probe.data.keypoint_set)].groups)
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


def _check_same_body(out: Path, body: str, task: str) -> None:
    """A demo folder holds one benchmark's runs: finished runs are reused, so another task's would be too."""
    try:
        written = json.loads((out / "benchmark" / "benchmark.json").read_text())
    except (OSError, json.JSONDecodeError):
        return
    if written.get("body", "human") != body:
        raise UserError(
            f"--out {out}: holds the demo of the {written.get('body', 'human')} benchmark, not --task {task}'s "
            f"({body}); give another --out"
        )


def _table_numbers(numbers: dict) -> dict:
    return {"pck": numbers["pck"], "groups": numbers["groups"]}
