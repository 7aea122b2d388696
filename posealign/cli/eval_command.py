"""``posealign eval RUN_DIR_OR_CHECKPOINT [--split NAME] [key=value ...]``: PCK of a trained model
on the labeled splits of its config (``data.eval``), printed as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained run or checkpoint", description=__doc__)
    parser.add_argument("checkpoint", help="run directory (uses checkpoints/final.pt) or checkpoint file")
    parser.add_argument("--split", default=None, help="one entry of data.eval (default: all)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.eval.target.root=/data/lsp")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from posealign.engine.data import build_dataset, run_keypoint_set
    from posealign.engine.evaluate import evaluate
    from posealign.errors import UserError
    from posealign.pose_model_files import load_pose_model

    path = Path(args.checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_pose_model(path, device=device)
    if model.training_config is None:
        raise UserError(f"{path}: an exported model has no data config to evaluate on; pass RUN/checkpoints/final.pt")
    config = OmegaConf.merge(OmegaConf.create(model.training_config), OmegaConf.from_dotlist(args.overrides))
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
        numbers = evaluate(model.network, dataset, keypoint_set, float(config.data.sigma), device=device)
        report[name] = {"pck": numbers["pck"], "groups": numbers["groups"], "bbox_pck": numbers["bbox_pck"]["pck"]}
    print(json.dumps(report, indent=2))
    return 0
