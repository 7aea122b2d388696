"""``posealign export CKPT [--format safetensors|onnx] [--out FILE]``

Writes the teacher's weights (the student's when the run has no teacher) as safetensors, with the
keypoint set, model config, image_size, heatmap_size, sigma, the input convention and the run's
config in the header, and the same metadata in FILE.json. ``posealign predict --checkpoint FILE``
and ``posealign eval FILE`` use it.

``--format onnx`` writes an ONNX graph instead: input ``images`` (B, 3, S, S) RGB in [0, 1], output
``heatmaps`` (B, K, H, W), B dynamic, the same metadata in its metadata_props (needs
``pip install 'posealign[onnx]'``). ``posealign predict --checkpoint FILE.onnx`` runs it with onnxruntime.

Default FILE: the checkpoint's path with .safetensors or .onnx (RUN/checkpoints/final.safetensors).
The format follows --out's suffix when --format is not given.
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
    parser.add_argument(
        "--format",
        choices=sorted(EXPORT_SUFFIXES),
        default=None,
        help="safetensors (PyTorch weights) or onnx (a graph for onnxruntime); default: --out's suffix, else safetensors",
    )
    parser.add_argument("--out", default=None, help="FILE.safetensors or FILE.onnx (default: next to the checkpoint)")
    parser.set_defaults(func=run)


EXPORT_SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx"}


def default_export_path(checkpoint: Path, export_format: str = "safetensors") -> Path:
    """``RUN/checkpoints/final.pt`` -> ``RUN/checkpoints/final.safetensors`` (a run folder: its final.pt)."""
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "final.pt"
    return checkpoint.with_suffix(EXPORT_SUFFIXES[export_format])


def export_model(checkpoint: str | Path, out: str | Path | None = None, export_format: str | None = None) -> Path:
    """Write the evaluation weights of ``checkpoint`` to ``out`` (safetensors with its ``.json``
    sidecar, or ONNX); returns ``out``. Loading them into the network first proves the metadata
    describes them."""
    checkpoint = Path(checkpoint)
    if export_format is None:
        by_suffix = {suffix: name for name, suffix in EXPORT_SUFFIXES.items()}
        export_format = by_suffix.get(Path(out).suffix, "safetensors") if out is not None else "safetensors"
    suffix = EXPORT_SUFFIXES[export_format]
    out = Path(out) if out is not None else default_export_path(checkpoint, export_format)
    if out.suffix != suffix:
        raise UserError(f"{out}: a {export_format} export's file name must end with {suffix}; pass --out MODEL{suffix}")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; pass --out FOLDER/MODEL{suffix}")
    from posealign.pose_model_files import load_pose_model, write_exported_model

    model = load_pose_model(checkpoint)
    if export_format == "onnx":
        from posealign.onnx_model import write_onnx_model

        write_onnx_model(model, out)
    else:
        write_exported_model(model, out)
    return out


def run(args: argparse.Namespace) -> int:
    path = export_model(args.checkpoint, args.out, args.format)
    where = "in its metadata_props" if path.suffix == ".onnx" else f"also in {path.with_suffix('.json')}"
    print(f"exported {path} (metadata {where})")
    return 0
