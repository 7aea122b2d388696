"""``posealign predict IMAGES... --checkpoint CKPT --out DIR [--boxes COCO.json] [--batch-size N]``

IMAGES are files, folders (searched recursively for .jpg .jpeg .png .bmp .webp .tif .tiff) or glob
patterns (quote them, e.g. 'data/**/*.jpg'). CKPT is a training checkpoint (RUN/checkpoints/final.pt,
or the run folder itself), a .safetensors file written by ``posealign export`` or ``posealign import``,
or a .onnx file written by ``posealign export --format onnx`` (run by onnxruntime on the CPU).

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
from pathlib import Path

from posealign.cli import add_command_parser
from posealign.errors import UserError


def register(subparsers) -> None:
    parser = add_command_parser(
        subparsers, "predict", "predict poses on images with a checkpoint or an exported model", __doc__
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders (recursive) or glob patterns")
    parser.add_argument(
        "--checkpoint", required=True, help="RUN/checkpoints/final.pt, a run folder, an exported .safetensors or .onnx"
    )
    parser.add_argument("--out", required=True, help="output folder (predictions.json, overlays/)")
    parser.add_argument("--boxes", default=None, help="COCO JSON with the object boxes (images + annotations' bbox)")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per forward pass (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--kpt-thr",
        type=float,
        default=0.1,
        help="overlays: keypoints below this confidence are drawn hollow and unlinked (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def resolve_device(device: str):
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a one-line error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible to torch; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None


def predict_files(
    inputs: list[str],
    checkpoint: str | Path,
    out: str | Path,
    box_file: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    kpt_thr: float = 0.1,
) -> list[dict]:
    """Predict every image of ``inputs`` into ``out``; returns the COCO results written.

    Every input, the box file and the output folder are checked, and every prediction made, before
    anything is written; the files then replace their previous versions atomically.
    """
    from posealign.cli.predict_inputs import attach_boxes, collect_images, open_input_image, read_box_file
    from posealign.cli.predict_outputs import check_output_folder, write_predictions
    from posealign.inference import predict_images
    from posealign.onnx_model import load_model_for_prediction
    from posealign.pose_model_files import keypoint_set_to_saved

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    if not 0.0 <= kpt_thr <= 1.0:
        raise UserError(f"--kpt-thr must be between 0 and 1, not {kpt_thr}")
    out = Path(out)
    images = collect_images(inputs)
    if box_file is not None:
        attach_boxes(images, read_box_file(Path(box_file)), Path(box_file))
    model = load_model_for_prediction(checkpoint, device=resolve_device(device))
    fingerprint = model.fingerprint()
    check_output_folder(out, fingerprint)

    poses_per_image: list[list] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        decoded = [open_input_image(image.path) for image in chunk]
        boxes = None if box_file is None else [image.boxes for image in chunk]
        poses_per_image += predict_images(
            model.network, decoded, boxes, model.preprocessing.image_size, batch_size, model.preprocessing.box_scale
        )
    info = {
        "checkpoint": str(checkpoint),
        "weights_sha256": fingerprint,
        "keypoint_set": keypoint_set_to_saved(model.keypoint_set),
        "image_size": model.preprocessing.image_size,
        "box_scale": model.preprocessing.box_scale,
        "boxes": str(box_file) if box_file is not None else None,
        "images": len(images),
    }
    return write_predictions(
        out, images, poses_per_image, model.keypoint_set, info, draw_boxes=box_file is not None, kpt_thr=kpt_thr
    )


def run(args: argparse.Namespace) -> int:
    results = predict_files(
        args.images, args.checkpoint, args.out, args.boxes, args.batch_size, args.device, args.kpt_thr
    )
    out = Path(args.out)
    print(f"{len(results)} poses -> {out / 'predictions.json'}, overlays in {out / 'overlays'}/")
    return 0
