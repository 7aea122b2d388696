"""``posealign eval RUN_DIR_OR_CHECKPOINT [--split NAME] [--device D] [key=value ...]``: PCK of a trained model
on the labeled splits of its config (``data.eval``), printed as JSON."""

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
    splits = dict(config.data.eval)
    if args.split is not None:
        if args.split not in splits:
            raise UserError(f"{path}: no evaluation split {args.split!r} in its config; choose one of {sorted(splits)}")
        splits = {args.split: splits[args.split]}
    datasets = {name: build_dataset(spec, config, f"eval.{name}") for name, spec in splits.items()}
    keypoint_set = run_keypoint_set(config, list(datasets.values()))
    model.require_keypoint_set(keypoint_set, path)
    report = {}
    for name, dataset in datasets.items():
        numbers = evaluate(model.network, dataset, keypoint_set, device=device)
        report[name] = {"pck": numbers["pck"], "groups": numbers["groups"], "bbox_pck": numbers["bbox_pck"]["pck"]}
    print(json.dumps(report, indent=2))
    return 0
