"""``posealign export CKPT [--out FILE.safetensors]``

Writes the teacher's weights (the student's when the run has no teacher) as safetensors, with the
keypoint set, model config, image_size, heatmap_size, sigma and the input convention in the header,
and the same metadata in FILE.json. ``posealign predict --checkpoint FILE.safetensors`` uses it.
Default FILE: the checkpoint's path with .safetensors (RUN/checkpoints/final.safetensors).
"""

from __future__ import annotations

import argparse

from posealign.export import export_model


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint's evaluation weights as self-describing safetensors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="RUN/checkpoints/final.pt (or the run folder)")
    parser.add_argument("--out", default=None, help="FILE.safetensors (default: next to the checkpoint)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = export_model(args.checkpoint, args.out)
    print(f"exported {path} (metadata also in {path.with_suffix('.json')})")
    return 0
