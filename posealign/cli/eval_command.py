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

    from posealign.engine.checkpoint import load_checkpoint
    from posealign.engine.data import build_dataset, run_keypoint_set
    from posealign.engine.evaluate import evaluate
    from posealign.errors import UserError
    from posealign.models.simple_baseline import build_pose_model

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "final.pt"
    state = load_checkpoint(path)
    config = OmegaConf.merge(OmegaConf.create(state["config"]), OmegaConf.from_dotlist(args.overrides))
    splits = dict(config.data.eval)
    if args.split is not None:
        if args.split not in splits:
            raise UserError(f"{path}: no evaluation split {args.split!r} in its config; choose one of {sorted(splits)}")
        splits = {args.split: splits[args.split]}
    datasets = {name: build_dataset(spec, config, f"eval.{name}") for name, spec in splits.items()}
    keypoint_set = run_keypoint_set(config, list(datasets.values()))
    model = build_pose_model(config.model, keypoint_set.num_keypoints)
    model.load_state_dict(state["teacher"] if state.get("teacher") is not None else state["student"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    report = {}
    for name, dataset in datasets.items():
        numbers = evaluate(model, dataset, keypoint_set, float(config.data.sigma), device=device)
        report[name] = {"pck": numbers["pck"], "groups": numbers["groups"], "bbox_pck": numbers["bbox_pck"]["pck"]}
    print(json.dumps(report, indent=2))
    return 0
