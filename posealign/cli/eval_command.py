"""``posealign eval RUN_DIR_OR_CHECKPOINT [--split NAME] [--device D] [--json] [key=value ...]``: PCK of a
trained model on the labeled splits of its config (``data.eval``).

Prints the table train and the demo print: one row per split, the keypoint set's groups and All,
PCK@0.05 in percent. ``--json`` prints the numbers in full instead (per split: pck, groups and
bbox_pck, the PCK with each keypoint's threshold taken from its object's box)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from posealign.cli import add_command_parser


def register(subparsers) -> None:
    parser = add_command_parser(subparsers, "eval", "evaluate a trained run or checkpoint", __doc__)
    parser.add_argument("checkpoint", help="run directory (uses checkpoints/final.pt) or checkpoint file")
    parser.add_argument("--split", default=None, help="one entry of data.eval (default: all)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.eval.target.root=/data/lsp")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.cli.predict_command import resolve_device
    from posealign.config import check_layer
    from posealign.engine.data import build_dataset, run_keypoint_set
    from posealign.engine.evaluate import evaluate
    from posealign.errors import UserError
    from posealign.pose_model_files import load_pose_model

    path = Path(args.checkpoint)
    device = resolve_device(args.device)
    model = load_pose_model(path, device=device)
    if model.training_config is None:
        raise UserError(f"{path}: an exported model has no data config to evaluate on; pass RUN/checkpoints/final.pt")
    for item in args.overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. data.eval.target.root=/data/lsp)")
    saved = OmegaConf.create(model.training_config)
    overrides = OmegaConf.from_dotlist(args.overrides)
    check_layer(overrides, saved, "command line")
    config = OmegaConf.merge(saved, overrides)
    splits = {name: spec for name, spec in config.data.eval.items() if spec is not None}  # data.eval.X=null: not X
    if args.split is not None:
        if args.split not in splits:
            raise UserError(f"{path}: no evaluation split {args.split!r} in its config; choose one of {sorted(splits)}")
        splits = {args.split: splits[args.split]}
    if not splits:
        raise UserError(
            f"{path}: its config names no labeled split (data.eval is empty); add one, e.g. "
            "data.eval.target='{dataset: coco, root: DIR, split: val, options: {}}'"
        )
    datasets = {name: build_dataset(spec, config, f"eval.{name}") for name, spec in splits.items()}
    keypoint_set = run_keypoint_set(config, list(datasets.values()))
    model.require_keypoint_set(keypoint_set, path)
    report = {}
    for name, dataset in datasets.items():
        numbers = evaluate(model.network, dataset, keypoint_set, device=device)
        report[name] = {"pck": numbers["pck"], "groups": numbers["groups"], "bbox_pck": numbers["bbox_pck"]["pck"]}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(eval_table(report, model.origin))
    return 0


def eval_table(report: dict, origin: dict) -> str:
    """A title naming the checkpoint and its weights, then one row per split: groups + All, one decimal."""
    from posealign.experiments import format_table

    groups = list(next(iter(report.values()))["groups"])
    step = f", step {origin['step']}" if origin.get("step") is not None else ""
    title = f"{origin.get('checkpoint')} ({origin.get('method')}, {origin.get('weights')}{step}), PCK@0.05:"
    return (
        title
        + "\n"
        + format_table(
            {name: {"split": numbers} for name, numbers in report.items()}, groups, "split", first_column="Split"
        )
    )
