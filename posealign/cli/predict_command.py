"""``posealign predict IMAGES... --checkpoint CKPT --out DIR [--boxes COCO.json] [--batch-size N]``

IMAGES are files, folders (searched recursively for .jpg .jpeg .png .bmp .webp .tif .tiff) or glob
patterns (quote them, e.g. 'data/**/*.jpg'). CKPT is a training checkpoint (RUN/checkpoints/final.pt,
or the run folder itself) or a .safetensors file written by ``posealign export``.

Without ``--boxes`` each image is one object (the whole image, aspect kept). With ``--boxes`` (a
COCO JSON: ``images`` with ``file_name`` and ``id``, ``annotations`` with ``bbox`` and ``image_id``)
each box is one object, cropped as 1.25 x its longest side; every image given must be listed there.

Writes DIR/predictions.json (COCO keypoint results: image_id, file_name, category_id 1,
keypoints [x, y, score] * K in original pixels, score, bbox), DIR/overlays/<name>.png (skeleton,
dots sized by confidence, confidence values) and DIR/predictions_info.json (which weights). Nothing
is written unless every input is readable; DIR must not hold predictions of other weights.
"""

from __future__ import annotations

import argparse

from posealign.inference import predict_files


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict poses on images with a checkpoint or an exported model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (recursive) or glob patterns")
    parser.add_argument(
        "--checkpoint", required=True, help="RUN/checkpoints/final.pt, a run folder or an exported .safetensors"
    )
    parser.add_argument("--out", required=True, help="output folder (predictions.json, overlays/)")
    parser.add_argument("--boxes", default=None, help="COCO JSON with the object boxes (images + annotations' bbox)")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per forward pass (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = predict_files(args.images, args.checkpoint, args.out, args.boxes, args.batch_size, args.device)
    print(f"{len(results)} poses -> {args.out}/predictions.json, overlays in {args.out}/overlays/")
    return 0
