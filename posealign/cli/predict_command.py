"""``posealign predict INPUTS... --checkpoint CKPT --out DIR [--box X,Y,W,H | --boxes FILE.json] [--overlay] [--mirror]``

INPUTS are image or video files, folders (searched recursively for .jpg .jpeg .png .bmp .webp .tif
.tiff and the videos .mp4 .avi .mov) or glob patterns (quote them, e.g. 'data/**/*.jpg'). CKPT is a
training checkpoint (RUN/checkpoints/final.pt, or the run folder itself), a .safetensors file written
by ``posealign export`` or ``posealign import``, or a .onnx file written by ``posealign export --format
onnx`` (run by onnxruntime on the CPU).

Images. Without boxes each image is one object (the whole image, aspect kept). With ``--boxes`` (a
COCO JSON: ``images`` with ``file_name`` and ``id``, ``annotations`` with ``bbox`` and ``image_id``)
each box is one object, cropped as 1.25 x its longest side; every image given must be listed there.
``--box`` gives every image the same box. Writes DIR/predictions.json (COCO keypoint results:
image_id, file_name, category_id 1, keypoints [x, y, score] * K in original pixels, score, bbox),
DIR/overlays/<name>.png (skeleton, dots sized by confidence, confidence values). Nothing is written
unless every image is readable.

Videos. One object per frame: the whole frame, the ``--box`` of every frame, or the frame's box in
the ``videos`` section of ``--boxes`` ({"videos": {"clip.mp4": {"0": [x, y, w, h], ...}}}, frame
index -> box; a frame without one gets no pose). Writes DIR/videos/<name>.predictions.json (COCO
results, image_id = frame index from 0), DIR/videos/<name>.csv (DeepLabCut's table: scorer /
bodyparts / coords rows, x, y, likelihood per keypoint, one row per frame) and, with ``--overlay``,
DIR/videos/<name>.overlay.mp4 at the video's frame rate. Each video's files replace the old ones
only once the whole video has been read.

DIR/predictions_info.json records which weights wrote DIR; a DIR holding predictions of other
weights is refused. Images and keypoints are in the frame a viewer shows (EXIF orientation and video
rotation applied).

Hands. The rhd2h3d and rhd2freihand tasks train, as the anchors do, on left hands: RHD's right
hands and every FreiHAND hand are mirrored. ``--mirror`` shows the network each crop flipped
left-right, as training flips a right hand, and maps the keypoints back: predict right hands with
``--mirror`` and left hands without it. (``benchmark_hand`` draws both hands.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from posealign.cli import add_command_parser
from posealign.errors import UserError

if TYPE_CHECKING:
    from posealign.cli.predict_video_inputs import VideoInput
    from posealign.pose_model_files import PoseModel


def register(subparsers) -> None:
    parser = add_command_parser(
        subparsers, "predict", "predict poses on images and videos with a checkpoint or an exported model", __doc__
    )
    parser.add_argument(
        "images", nargs="+", metavar="INPUTS", help="image or video files, folders (recursive) or glob patterns"
    )
    parser.add_argument(
        "--checkpoint", required=True, help="RUN/checkpoints/final.pt, a run folder, an exported .safetensors or .onnx"
    )
    parser.add_argument("--out", required=True, help="output folder (predictions.json, overlays/)")
    parser.add_argument(
        "--boxes",
        default=None,
        help="JSON with the object boxes: COCO images + annotations for images, a 'videos' section for videos",
    )
    parser.add_argument("--box", default=None, metavar="X,Y,W,H", help="one box (pixels) for every image and frame")
    parser.add_argument("--overlay", action="store_true", help="videos: also write an overlay video of each")
    parser.add_argument(
        "--mirror",
        action="store_true",
        help="flip each crop left-right for the network (right hands for a hand model, which sees left hands)",
    )
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
    box: str | None = None,
    overlay: bool = False,
    mirror: bool = False,
) -> list[dict]:
    """Predict every image and video of ``inputs`` into ``out``; returns the COCO results of the images.

    Every input, the box file and the output folder are checked before the model runs. The images'
    predictions are all made before their files are written; each video's files are written once
    the whole video has been read. Every file replaces its previous version atomically.
    """
    from posealign.cli.predict_inputs import attach_boxes, collect_images, open_input_image, read_box_file
    from posealign.cli.predict_outputs import INFO_FILE, check_output_folder, write_predictions
    from posealign.cli.predict_video_inputs import check_box_in_frame, parse_box_option, prepare_videos
    from posealign.files import atomic_write_json
    from posealign.image_crops import IMAGE_EXTENSIONS
    from posealign.inference import predict_images
    from posealign.onnx_model import load_model_for_prediction
    from posealign.pose_model_files import keypoint_set_to_saved
    from posealign.video_io import VIDEO_EXTENSIONS

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    if not 0.0 <= kpt_thr <= 1.0:
        raise UserError(f"--kpt-thr must be between 0 and 1, not {kpt_thr}")
    if box is not None and box_file is not None:
        raise UserError("--box and --boxes: give one (a fixed box, or a file of boxes)")
    fixed_box = None if box is None else parse_box_option(box)
    out = Path(out)
    found = collect_images(inputs, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    images = [item for item in found if item.path.suffix.lower() not in VIDEO_EXTENSIONS]
    for number, image in enumerate(images, start=1):
        image.image_id = number
    if box_file is not None and images:
        attach_boxes(images, read_box_file(Path(box_file)), Path(box_file))
    if fixed_box is not None:
        for image in images:
            check_box_in_frame(fixed_box, *_shown_size(image.path), f"{image.path}: --box")
            image.boxes = [fixed_box]
    videos = prepare_videos(
        [item for item in found if item.path.suffix.lower() in VIDEO_EXTENSIONS],
        fixed_box,
        None if box_file is None else Path(box_file),
    )
    model = load_model_for_prediction(checkpoint, device=resolve_device(device))
    fingerprint = model.fingerprint()
    check_output_folder(out, fingerprint)

    cropped = box_file is not None or fixed_box is not None
    poses_per_image: list[list] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        decoded = [open_input_image(image.path) for image in chunk]
        boxes = [image.boxes for image in chunk] if cropped else None
        poses_per_image += predict_images(
            model.network,
            decoded,
            boxes,
            model.preprocessing.image_size,
            batch_size,
            model.preprocessing.box_scale,
            mirror,
        )
    info = {
        "checkpoint": str(checkpoint),
        "weights_sha256": fingerprint,
        "keypoint_set": keypoint_set_to_saved(model.keypoint_set),
        "image_size": model.preprocessing.image_size,
        "box_scale": model.preprocessing.box_scale,
        "boxes": str(box_file) if box_file is not None else box,
        "mirror": mirror,
        "images": len(images),
        "videos": [video.file_name for video in videos],
    }
    results = []
    if images:
        results = write_predictions(
            out, images, poses_per_image, model.keypoint_set, info, draw_boxes=cropped, kpt_thr=kpt_thr
        )
        print(f"{len(results)} poses -> {out / 'predictions.json'}, overlays in {out / 'overlays'}/")
    elif not (out / INFO_FILE).exists():  # an existing one names these weights (checked above)
        atomic_write_json(out / INFO_FILE, {**info, "objects": 0}, indent=1)
    if videos:
        _predict_videos(model, videos, out, batch_size, kpt_thr, overlay, mirror)
    return results


def _shown_size(path: Path) -> tuple[int, int]:
    """An image's size as shown, from its header; decoding it when the header does not tell (which
    raises the reader's one-line error for a broken file)."""
    from posealign.cli.predict_inputs import open_input_image
    from posealign.image_crops import read_image_size

    try:
        return read_image_size(path)
    except Exception:  # noqa: BLE001 - PIL raises many types; the decoding below names the file
        return open_input_image(path).size


def _predict_videos(
    model: PoseModel,
    videos: list[VideoInput],
    out: Path,
    batch_size: int,
    kpt_thr: float,
    overlay: bool,
    mirror: bool,
) -> None:
    """Each video in turn; a video that fails leaves the files of the videos before it written."""
    from posealign.cli.predict_video import VIDEO_FOLDER, predict_video, video_output_names

    for video, name in zip(videos, video_output_names(videos), strict=True):
        frames, seconds = predict_video(model, video, out, name, batch_size, kpt_thr, overlay, mirror)
        written = f"{name}.predictions.json, {name}.csv" + (f", {name}.overlay.mp4" if overlay else "")
        print(
            f"{video.file_name}: {frames} frames at {frames / max(seconds, 1e-9):.1f} frames/s -> "
            f"{out / VIDEO_FOLDER}/ ({written})"
        )


def run(args: argparse.Namespace) -> int:
    predict_files(
        args.images,
        args.checkpoint,
        args.out,
        args.boxes,
        args.batch_size,
        args.device,
        args.kpt_thr,
        box=args.box,
        overlay=args.overlay,
        mirror=args.mirror,
    )
    return 0
