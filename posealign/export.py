"""``posealign export``: a checkpoint's evaluation weights as one self-describing safetensors file.

The weights are the teacher's when the run has one, else the student's (the network every reported
number comes from). The safetensors header carries, as JSON strings, everything needed to use them
without the training code's config: the keypoint set (names, skeleton, flip pairs, groups), the
model config, ``image_size``, ``heatmap_size``, ``sigma``, the crop margin and the input convention
(ImageNet normalisation happens inside the model). The same metadata is written to a sidecar
``FILE.json`` for readers without a safetensors library. ``load_pose_model`` reads the file back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from posealign.errors import UserError
from posealign.inference import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    NORMALIZATION_NOTE,
    build_model_from_weights,
    keypoint_set_to_saved,
    read_pose_weights,
)
from posealign.models.simple_baseline import IMAGENET_MEAN, IMAGENET_STD


def default_export_path(checkpoint: Path) -> Path:
    """``RUN/checkpoints/final.pt`` -> ``RUN/checkpoints/final.safetensors`` (a run folder: its final.pt)."""
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "final.pt"
    return checkpoint.with_suffix(".safetensors")


def export_model(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write the evaluation weights of ``checkpoint`` to ``out`` (safetensors) and ``out``'s ``.json``
    sidecar; returns ``out``. Both files are written to temporary names first, then renamed."""
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else default_export_path(checkpoint)
    if out.suffix != ".safetensors":
        raise UserError(f"{out}: the export file name must end with .safetensors; pass --out MODEL.safetensors")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; pass --out FOLDER/MODEL.safetensors")
    weights = read_pose_weights(checkpoint)
    build_model_from_weights(weights, checkpoint)  # the weights must load into the network the metadata describes
    metadata = {
        "format_version": EXPORT_FORMAT_VERSION,
        "architecture": "SimpleBaseline",
        "keypoint_set": keypoint_set_to_saved(weights.keypoint_set),
        "model": {**weights.model_config, "pretrained": "none"},
        "image_size": weights.preprocessing.image_size,
        "heatmap_size": weights.preprocessing.heatmap_size,
        "sigma": weights.preprocessing.sigma,
        "box_scale": weights.preprocessing.box_scale,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "note": NORMALIZATION_NOTE},
        "outputs": "heatmaps (B, K, H, W) and deconvolution features; keypoint = argmax * image_size / heatmap_size",
        "origin": weights.origin,
    }
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.state_dict.items()}
    header = {"format": EXPORT_FORMAT, **{key: json.dumps(value) for key, value in metadata.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = out.with_suffix(".json")
    temporary, temporary_sidecar = out.with_name(f".{out.name}.tmp"), sidecar.with_name(f".{sidecar.name}.tmp")
    try:
        save_file(tensors, str(temporary), metadata=header)
        temporary_sidecar.write_text(json.dumps({"format": EXPORT_FORMAT, **metadata}, indent=2))
        os.replace(temporary, out)
        os.replace(temporary_sidecar, sidecar)
    finally:
        temporary.unlink(missing_ok=True)
        temporary_sidecar.unlink(missing_ok=True)
    return out
