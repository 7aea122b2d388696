"""The files a trained pose network lives in, and the one way to load it: ``load_pose_model``.

Two formats hold a network: a training checkpoint (``RUN/checkpoints/final.pt``, written by the
trainer: the teacher when the run has one, else the student, as every reported number) and an
export (``posealign export`` or ``posealign import``: safetensors whose header holds, as JSON
strings, the keypoint set, the model config, the preprocessing and the run's config, so that no
other file is needed to use it). ``eval``, ``report``, ``predict``, ``export`` and ``train.init``
all load through ``load_pose_model``; an ONNX export (:mod:`posealign.onnx_model`) carries the same
metadata and is read by ``predict`` only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from posealign.errors import UserError
from posealign.files import atomic_replace, atomic_write_json, load_torch_file
from posealign.keypoints import KEYPOINT_SETS, KeypointSet, keypoint_set_from_coco_category
from posealign.models.simple_baseline import IMAGENET_MEAN, IMAGENET_STD, SimpleBaseline, build_pose_model

EXPORT_FORMAT = "posealign.pose_model"
EXPORT_FORMAT_VERSION = 1
DEFAULT_BOX_SCALE = 1.25  # load_coco's crop_scale: the top-down protocol's margin around a box
NORMALIZATION_NOTE = (
    "input: RGB float (B, 3, S, S) in [0, 1]; the ImageNet mean/std normalisation is applied inside the "
    "model (buffers pixel_mean/pixel_std), do not normalise before calling it"
)
_WHICH_FILE = "pass RUN/checkpoints/final.pt or a file written by posealign export"


@dataclass(frozen=True)
class Preprocessing:
    """How images must reach the model: a square crop resized to ``image_size``, values in [0, 1]."""

    image_size: int
    heatmap_size: int
    sigma: float
    box_scale: float = DEFAULT_BOX_SCALE


@dataclass
class PoseModel:
    """A loaded network (eval mode) and what a caller needs to feed it and to read its output.

    ``origin``: checkpoint, weights ("teacher" | "student"), method, preset, task, step (and
    ``exported`` for an export). ``training_config``: the run's resolved config, for checkpoints only.
    """

    network: SimpleBaseline
    keypoint_set: KeypointSet
    preprocessing: Preprocessing
    model_config: dict
    origin: dict
    training_config: dict | None = None

    def fingerprint(self) -> str:
        """Which weights these are (:func:`weights_fingerprint`): a checkpoint and its exports agree."""
        return weights_fingerprint(self.network)

    def require_keypoint_set(self, keypoint_set: KeypointSet, source: str | Path) -> None:
        """A ``UserError`` unless the network predicts ``keypoint_set`` (the same names, in order)."""
        if tuple(keypoint_set.names) != tuple(self.keypoint_set.names):
            raise UserError(
                f"{source}: model predicts keypoint set {self.keypoint_set.name!r} ({self.keypoint_set.num_keypoints} "
                f"keypoints) but {keypoint_set.name!r} ({keypoint_set.num_keypoints}) is required; use a checkpoint "
                f"trained on {keypoint_set.name!r}"
            )


@dataclass
class _SavedPoseModel:
    """What a file holds, before a network is built from it."""

    state_dict: dict[str, torch.Tensor]
    keypoint_set: KeypointSet
    model_config: dict
    preprocessing: Preprocessing
    origin: dict
    training_config: dict | None = None


# ------------------------------------------------------------------------------ keypoint sets


def keypoint_set_to_saved(keypoint_set: KeypointSet) -> dict:
    """The JSON form of a keypoint set that checkpoints, exports and predictions carry."""
    return {
        "name": keypoint_set.name,
        "names": list(keypoint_set.names),
        "skeleton": [[i + 1, j + 1] for i, j in keypoint_set.skeleton],  # 1-based, as COCO's
        "skeleton_base": 1,
        "flip_pairs": [list(p) for p in keypoint_set.flip_pairs],
        "groups": {g: list(members) for g, members in keypoint_set.groups.items()},
        "all_group": list(keypoint_set.all_group),
    }


def keypoint_set_from_saved(saved: dict) -> KeypointSet:
    """A keypoint set from its saved form ({name, names, skeleton[, skeleton_base, flip_pairs, groups, all_group]}).

    A built-in set with the same names comes back whole (its evaluation groups included); otherwise
    the set is rebuilt the way a COCO category defines one.
    """
    names = tuple(str(n) for n in saved["names"])
    base = int(saved.get("skeleton_base", 0))  # training checkpoints store it 0-based, exports 1-based
    skeleton = tuple((int(i) - base, int(j) - base) for i, j in saved.get("skeleton", []))
    known = KEYPOINT_SETS.get(saved.get("name"))
    if known is not None and known.names == names:
        return known
    if "flip_pairs" in saved and "groups" in saved:
        return KeypointSet(
            name=str(saved.get("name", "custom")),
            names=names,
            flip_pairs=tuple((int(i), int(j)) for i, j in saved["flip_pairs"]),
            skeleton=skeleton,
            groups={str(g): tuple(int(i) for i in members) for g, members in saved["groups"].items()},
            all_group=tuple(int(i) for i in saved.get("all_group", ())),
        )
    category = {
        "name": saved.get("name", "custom"),
        "keypoints": list(names),
        "skeleton": [[i + 1, j + 1] for i, j in skeleton],
    }
    return keypoint_set_from_coco_category(category)


# ------------------------------------------------------------------------------ reading


def _read_training_checkpoint(path: Path) -> _SavedPoseModel:
    """The evaluation weights of a training checkpoint: the teacher if the run has one, else the student."""
    state = load_torch_file(path, "checkpoint", _WHICH_FILE)  # weights_only: a file from elsewhere runs no code
    if not isinstance(state, dict) or "student" not in state or "config" not in state:
        raise UserError(f"{path}: not a posealign training checkpoint (no 'student'/'config'); {_WHICH_FILE}")
    config = state["config"]
    which = "teacher" if state.get("teacher") is not None else "student"
    saved_set = state.get("keypoint_set") or {"name": config["data"]["keypoint_set"]}
    if "names" not in saved_set:
        saved_set = keypoint_set_to_saved(KEYPOINT_SETS[saved_set["name"]])
    data = config["data"]
    return _SavedPoseModel(
        state_dict=state[which],
        keypoint_set=keypoint_set_from_saved(saved_set),
        model_config=dict(config["model"]),
        preprocessing=Preprocessing(int(data["image_size"]), int(data["heatmap_size"]), float(data["sigma"])),
        origin={
            "checkpoint": str(path),
            "weights": which,
            "method": config.get("method"),
            "preset": config.get("preset"),
            "task": config.get("task"),
            "step": state.get("step"),
        },
        training_config=config,
    )


def _read_exported_model(path: Path) -> _SavedPoseModel:
    """Weights and metadata of a ``posealign export`` safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(
            f"{path}: cannot read safetensors file ({error}); export it again with posealign export"
        ) from None
    return _SavedPoseModel(state_dict, *read_export_metadata(header, path, "safetensors"))


def read_export_metadata(
    header: dict[str, str], path: Path, kind: str
) -> tuple[KeypointSet, dict, Preprocessing, dict, dict | None]:
    """keypoint set, model config, preprocessing, origin and training config (None when the export
    carries none) from the string metadata an export holds (``write_exported_model``, ``.onnx``)."""
    if header.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{path}: {kind} file without posealign metadata (format {header.get('format')!r}); "
            "write it with posealign export"
        )
    try:
        meta = {key: json.loads(value) for key, value in header.items() if key != "format"}
        return (
            keypoint_set_from_saved(meta["keypoint_set"]),
            dict(meta["model"]),
            Preprocessing(
                int(meta["image_size"]), int(meta["heatmap_size"]), float(meta["sigma"]), float(meta["box_scale"])
            ),
            {**meta.get("origin", {}), "exported": str(path)},
            meta.get("config"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path}: incomplete posealign metadata ({type(error).__name__}: {error}); export it again"
        ) from None


def _read_saved_model(path: Path) -> _SavedPoseModel:
    """A checkpoint (``.pt``), an export (``.safetensors``) or a run directory (its final checkpoint)."""
    if path.is_dir() and (path / "checkpoints" / "final.pt").is_file():
        path = path / "checkpoints" / "final.pt"
    if not path.is_file():
        raise UserError(
            f"{path}: checkpoint not found; pass RUN/checkpoints/final.pt or a .safetensors file written by posealign export"
        )
    if path.suffix.lower() == ".onnx":
        raise UserError(
            f"{path}: an ONNX model runs in posealign predict only; pass the checkpoint or .safetensors it was "
            "exported from"
        )
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: 8-byte little-endian header length, then the JSON header.
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        return _read_exported_model(path)
    return _read_training_checkpoint(path)


def _build_network(saved: _SavedPoseModel, source: Path) -> SimpleBaseline:
    """The network of ``saved.model_config`` with its weights loaded (no backbone download)."""
    model_config = OmegaConf.create({**saved.model_config, "pretrained": "none"})
    network = build_pose_model(model_config, saved.keypoint_set.num_keypoints)
    try:
        network.load_state_dict(saved.state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise UserError(
            f"{source}: weights do not fit the model its config describes ({first}); re-export it"
        ) from None
    return network.eval()


def load_pose_model(path: str | Path, device: str | torch.device = "cpu") -> PoseModel:
    """The network of a checkpoint, an export or a run directory, in eval mode on ``device``."""
    path = Path(path)
    saved = _read_saved_model(path)
    return PoseModel(
        network=_build_network(saved, path).to(device),
        keypoint_set=saved.keypoint_set,
        preprocessing=saved.preprocessing,
        model_config=saved.model_config,
        origin=saved.origin,
        training_config=saved.training_config,
    )


# Architecture keys of ``model`` and their values in files written before the key existed.
_ARCHITECTURE_DEFAULTS = {
    "backbone": None,
    "backbone_stages": 4,
    "deconv_layers": 3,
    "deconv_channels": 256,
    "head_layers": 1,
}


def initialise_from_model_file(
    networks: list[nn.Module], model_config, keypoint_set: KeypointSet, path: str | Path
) -> None:
    """``train.init`` given a model file: every weight of ``networks`` (a run's student, and its teacher)
    from the model file at ``path``, whose network must be the run's (the same ``model`` keys and keypoints)."""
    source = f"train.init={path}"
    if not Path(path).exists():
        raise UserError(f"{source}: file not found; pass a posealign checkpoint, export or `posealign import` file")
    loaded = load_pose_model(path)
    for key, default in _ARCHITECTURE_DEFAULTS.items():
        theirs, ours = loaded.model_config.get(key, default), model_config.get(key, default)
        if theirs != ours:
            raise UserError(
                f"{source}: its network has model.{key}={theirs} but this run's has model.{key}={ours}; "
                f"set model.{key}={theirs}"
            )
    loaded.require_keypoint_set(keypoint_set, source)
    for network in networks:
        network.load_state_dict(loaded.network.state_dict())


# ------------------------------------------------------------------------------ writing and identity


def export_metadata(model: PoseModel) -> dict[str, str]:
    """What an export says about its model, each value a JSON string (safetensors headers and ONNX
    metadata_props hold strings only): ``format`` plus what ``read_export_metadata`` reads back.
    ``config`` (the run's resolved config) lets ``eval`` find the labeled splits."""
    metadata = {
        "format_version": EXPORT_FORMAT_VERSION,
        "architecture": "SimpleBaseline",
        "keypoint_set": keypoint_set_to_saved(model.keypoint_set),
        # The network only: not where its training found backbone or starting weights.
        "model": {**model.model_config, "pretrained": "none"},
        "image_size": model.preprocessing.image_size,
        "heatmap_size": model.preprocessing.heatmap_size,
        "sigma": model.preprocessing.sigma,
        "box_scale": model.preprocessing.box_scale,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "note": NORMALIZATION_NOTE},
        "outputs": "heatmaps (B, K, H, W) and deconvolution features; keypoint = argmax * image_size / heatmap_size",
        "origin": model.origin,
        "weights_sha256": model.fingerprint(),
    }
    if model.training_config is not None:
        metadata["config"] = model.training_config
    return {"format": EXPORT_FORMAT, **{key: json.dumps(value) for key, value in metadata.items()}}


def write_exported_model(model: PoseModel, out: Path) -> None:
    """``model`` as one safetensors file at ``out`` with the metadata in its header, and the same
    metadata in the sidecar ``out.json`` for readers without a safetensors library. Both files are
    complete before either replaces an earlier version."""
    from safetensors.torch import save_file

    header = export_metadata(model)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.network.state_dict().items()}
    sidecar = {key: value if key == "format" else json.loads(value) for key, value in header.items()}
    with atomic_replace(out) as temporary:
        save_file(tensors, str(temporary), metadata=header)
        atomic_write_json(out.with_suffix(".json"), sidecar, indent=2)


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 of the state dict (names and bytes): the same weights give the same fingerprint,
    whether they were loaded from a checkpoint or from its export."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
