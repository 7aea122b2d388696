"""``posealign export CKPT [--out FILE.safetensors]``

Writes the teacher's weights (the student's when the run has no teacher) as safetensors, with the
keypoint set, model config, image_size, heatmap_size, sigma and the input convention in the header,
and the same metadata in FILE.json. ``posealign predict --checkpoint FILE.safetensors`` uses it.
Default FILE: the checkpoint's path with .safetensors (RUN/checkpoints/final.safetensors).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posealign.cli import add_command_parser
from posealign.errors import UserError


def register(subparsers) -> None:
    parser = add_command_parser(
        subparsers, "export", "export a checkpoint's evaluation weights as self-describing safetensors", __doc__
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="RUN/checkpoints/final.pt (or the run folder)")
    parser.add_argument("--out", default=None, help="FILE.safetensors (default: next to the checkpoint)")
    parser.set_defaults(func=run)


def default_export_path(checkpoint: Path) -> Path:
    """``RUN/checkpoints/final.pt`` -> ``RUN/checkpoints/final.safetensors`` (a run folder: its final.pt)."""
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "final.pt"
    return checkpoint.with_suffix(".safetensors")


def export_model(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write the evaluation weights of ``checkpoint`` to ``out`` (safetensors) and its ``.json``
    sidecar; returns ``out``. Loading them into the network first proves the metadata describes them."""
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else default_export_path(checkpoint)
    if out.suffix != ".safetensors":
        raise UserError(f"{out}: the export file name must end with .safetensors; pass --out MODEL.safetensors")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; pass --out FOLDER/MODEL.safetensors")
    from posealign.pose_model_files import load_pose_model, write_exported_model

    write_exported_model(load_pose_model(checkpoint), out)
    return out


def run(args: argparse.Namespace) -> int:
    path = export_model(args.checkpoint, args.out)
    print(f"exported {path} (metadata also in {path.with_suffix('.json')})")
    return 0
