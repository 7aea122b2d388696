"""``posealign ablate --out DIR --seeds N [--task benchmark]``: the rows of the paper's Table 6
(what each alignment level adds to the mean teacher), each over N seeds, printed as mean ± std.

``posealign ablate --out DIR --vary KEY=V1,V2,... [--vary ...] [--preset daml]``: the paper's Fig. 2
instead, target PCK against each value of each key (the others at the preset's values), mean ± std
over the seeds, written to ``DIR/sensitivity.json``; ``posealign report DIR --out PAGE`` draws it.

Rows of one seed share their source pretraining (kept in ``DIR/pretrain_cache``, or the folder a
``run.pretrain_cache=`` override names): the rows with the
image level start from one stylized stage 1 (``source_only_image`` is that stage 1 alone), the
others from source_only's, so rows with the same stage 1 differ only by their adaptation. A
source-free row (``source_free`` and its ablation rows) starts from the same seed's ``source_only``
run (added to the rows when missing), whose checkpoint carries the source pose prior.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posealign.cli import add_command_parser, add_parallel_arguments, signal_number
from posealign.config import load_config
from posealign.config_checks import check_overrides_act, check_values
from posealign.errors import UserError
from posealign.files import atomic_write_json

ABLATION_ROWS = (
    "source_only",
    "source_only_image",
    "mean_teacher",
    "mt_image",
    "mt_image_feature",
    "mt_image_pose",
    "daml",
    "oracle",
)


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "ablate", "Table 6: each alignment level, mean ± std over seeds", __doc__)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ..., N-1)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds S, ..., S+N-1 instead: to choose settings on training seeds other than the reported ones",
    )
    parser.add_argument("--task", default="benchmark", help="task preset (default: the built-in benchmark)")
    parser.add_argument("--rows", nargs="+", help=f"method presets to run (default: {' '.join(ABLATION_ROWS)})")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="sweep KEY over these values, the other keys at the preset's values (repeat for more keys)",
    )
    parser.add_argument("--preset", help="the method preset --vary sweeps (default: daml)")
    add_parallel_arguments(parser, jobs=2)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    parser.set_defaults(func=run)


def _is_source_free(row: str, task: str | None, shared: list[str]) -> bool:
    config = load_config(row, task, [*shared, "run.out=/dev/null"])
    return config.train.supervised_on == "none" and config.train.get("init") is None


def init_override(row: str, task: str | None, shared: list[str], seed_dir: Path) -> list[str]:
    """A source-free row without its own ``train.init`` adapts the seed's source_only model."""
    if not _is_source_free(row, task, shared):
        return []
    return [f"train.init={seed_dir / 'source_only' / 'checkpoints' / 'final.pt'}"]


def run(args: argparse.Namespace) -> int:
    from posealign.experiments import split_overrides

    if args.vary and args.rows:
        raise UserError("--rows and --vary: a sweep varies one preset; name it with --preset, or drop --vary")
    if args.preset and not args.vary:
        raise UserError(
            f"--preset {args.preset}: names the preset a --vary sweep varies; use --rows for Table 6's rows"
        )
    args.rows, args.overrides = split_overrides(args.rows or list(ABLATION_ROWS), args.overrides)
    from posealign.benchmark.task import ensure_benchmark
    from posealign.engine.interrupts import TrainingInterrupted
    from posealign.experiments import (
        PlannedRun,
        config_for,
        domain_gaps,
        format_domain_gaps,
        format_gap_closed,
        format_table,
        gap_closed,
        mean_and_spread,
        run_presets,
    )

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    out = Path(args.out).resolve()
    # DIR/pretrain_cache unless the command names another (to share stage 1s with an earlier ablation).
    shared = [f"run.pretrain_cache={out / 'pretrain_cache'}", *args.overrides]
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    if args.first_seed < 0:
        raise UserError(f"--first-seed {args.first_seed}: must be 0 or more")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    over = f"{args.seeds} seed(s)" + (f" ({seeds[0]}-{seeds[-1]})" if args.first_seed else "")
    uses_benchmark = bool(
        config_for("source_only", args.task, [*shared, "run.out=/dev/null"]).data.get("benchmark_root")
    )
    if uses_benchmark:  # DIR/benchmark unless the command names another (one an earlier ablation made)
        shared.insert(1, f"data.benchmark_root={out / 'benchmark'}")
    if args.vary:
        return _run_sweeps(args, out, shared, seeds, over, uses_benchmark)
    if any(_is_source_free(row, args.task, shared) for row in args.rows) and "source_only" not in args.rows:
        args.rows = ["source_only", *args.rows]  # the model the source-free rows adapt
    configs = {
        row: load_config(
            row,
            args.task,
            [*shared, *init_override(row, args.task, shared, out / "seed0"), f"run.out={out / 'seed0' / row}"],
        )
        for row in args.rows
    }
    check_overrides_act(configs, args.overrides)
    for config in configs.values():  # every value checked before the benchmark or a run folder is written
        check_values(config, check_roots=not config.data.get("benchmark_root"))
    if uses_benchmark:
        ensure_benchmark(config_for("source_only", args.task, [*shared, f"run.out={out / 'probe'}"]))
    planned = [
        PlannedRun(
            row,
            args.task,
            out / f"seed{seed}" / row,
            (*shared, f"run.seed={seed}", *init_override(row, args.task, shared, out / f"seed{seed}")),
        )
        for seed in seeds
        for row in args.rows
    ]
    try:
        finished = run_presets(planned, args.jobs, args.threads)
    except TrainingInterrupted as error:  # a worker's Ctrl-C or SIGTERM: each run saved a checkpoint
        print(f"posealign ablate: {error}; run the same ablate command to continue", file=sys.stderr)
        return 128 + signal_number(error)
    per_row: dict[str, list[dict]] = {}
    for results in finished:
        per_row.setdefault(results["method"], []).append(results)
    first = next(iter(per_row.values()))[0]
    groups = list(first["target"]["groups"]) if "target" in first else []
    means, spreads = {}, {}
    for method, results in per_row.items():
        means[method], spreads[method] = mean_and_spread(results, groups)
    print(f"\nTarget PCK@0.05, mean ± std over {over}:")
    print(format_table(means, groups, "target", spreads))
    shares = gap_closed(means)  # of the means over seeds
    if shares:
        print(format_gap_closed(shares))
    gaps = domain_gaps(per_row)  # does a level make the domains alike, beside what it does to PCK
    if gaps:
        print(format_domain_gaps(gaps))
    validation = {method: results for method, results in per_row.items() if all("target_val" in r for r in results)}
    if validation:  # the split settings are chosen on; the table above is the one to report
        val_means, val_spreads = {}, {}
        for method, results in validation.items():
            val_means[method], val_spreads[method] = mean_and_spread(results, groups, "target_val")
        print(f"\nTarget validation split (target_val: for choosing settings, never reported), over {over}:")
        print(format_table(val_means, groups, "target_val", val_spreads))
    summary = {
        method: {
            "target": means[method]["target"],
            "std": spreads[method],
            "per_seed": [r["target"]["pck"] for r in per_row[method]],
            **(
                {"target_val_per_seed": [r["target_val"]["pck"] for r in per_row[method]]}
                if method in validation
                else {}
            ),
            **({"gap_closed": shares[method]} if method in shares else {}),
            **({"proxy_a_distance_per_seed": gaps[method]} if method in gaps else {}),
        }
        for method in per_row
    }
    atomic_write_json(out / "ablation.json", summary)
    print(f"\n{out / 'ablation.json'}")
    return 0


def _run_sweeps(
    args: argparse.Namespace, out: Path, shared: list[str], seeds: range, over: str, uses_benchmark: bool
) -> int:
    """``--vary``: every value of each key over the seeds, one run each, then the table and ``sensitivity.json``."""
    from posealign.benchmark.task import ensure_benchmark
    from posealign.engine.interrupts import TrainingInterrupted
    from posealign.experiments import config_for, run_presets
    from posealign.sensitivity import SENSITIVITY_FILE, format_sensitivity, parse_vary, plan_grid, summarize

    preset = args.preset or "daml"
    if _is_source_free(preset, args.task, shared):
        raise UserError(f"--vary with {preset}: give the model every run adapts, train.init=CKPT")
    sweeps = parse_vary(args.vary)
    for key in (sweep.key for sweep in sweeps):
        if key in (item.partition("=")[0].strip() for item in args.overrides):
            raise UserError(f"{key}: both swept by --vary and set by a key=value override; keep one")
    preset_config = load_config(preset, args.task, [*shared, f"run.out={out / 'seed0' / preset}"])
    check_overrides_act({preset: preset_config}, args.overrides)
    check_values(preset_config, check_roots=not preset_config.data.get("benchmark_root"))
    for sweep in sweeps:  # every value checked before the benchmark or a run folder is written
        for value in sweep.values:
            override = f"{sweep.key}={value}"
            try:
                config = load_config(preset, args.task, [*shared, override, "run.out=/dev/null"])
                check_overrides_act({preset: config}, [override])
                check_values(config, check_roots=not config.data.get("benchmark_root"))
            except UserError as error:
                raise UserError(f"--vary {override}: {error}") from None
    planned = plan_grid(sweeps, preset, args.task, out, shared, seeds, preset_config)
    if uses_benchmark:
        ensure_benchmark(config_for("source_only", args.task, [*shared, f"run.out={out / 'probe'}"]))
    try:
        finished = run_presets(planned, args.jobs, args.threads)
    except TrainingInterrupted as error:  # a worker's Ctrl-C or SIGTERM: each run saved a checkpoint
        print(f"posealign ablate: {error}; run the same ablate command to continue", file=sys.stderr)
        return 128 + signal_number(error)
    results = {run.out: result for run, result in zip(planned, finished, strict=True)}
    summary = summarize(sweeps, preset, preset_config, out, seeds, results)
    print(f"\nTarget PCK@0.05 of {preset} against each setting, mean ± std over {over}")
    print("(target: the reported split; target_val: for choosing settings, never reported)\n")
    print(format_sensitivity(summary, preset))
    record = {"preset": preset, "task": args.task, "seeds": list(seeds), "sweeps": summary}
    atomic_write_json(out / SENSITIVITY_FILE, record)
    print(f"\n{out / SENSITIVITY_FILE}  (draw it: posealign report {out} --out REPORT_DIR)")
    return 0
