"""A pose network as ONNX: written by ``posealign export --format onnx``, run by onnxruntime.

The graph takes ``images`` (B, 3, S, S) float RGB in [0, 1] (the ImageNet normalisation is inside it,
as in the PyTorch model) and gives ``heatmaps`` (B, K, S/r, S/r); B is a dynamic axis. Its
``metadata_props`` hold the same JSON strings as a safetensors export's header (keypoint set with
names, skeleton and flip pairs, model config, image size, heatmap size, normalisation, origin and
the PyTorch weights' fingerprint), so a runtime outside Python needs no other file.

The graph is traced by the TorchScript exporter (``dynamo=False``): the network is a fixed stack of
convolutions, which tracing records exactly, and the torch.export-based exporter would add
``onnxscript`` to the dependencies for the same graph.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posealign.errors import UserError
from posealign.files import atomic_replace
from posealign.pose_model_files import PoseModel, export_metadata, load_pose_model, read_export_metadata

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "heatmaps"
_INSTALL = "install it with pip install 'posealign[onnx]'"


class _HeatmapsOnly(nn.Module):
    """The network with its heatmaps as the one output (the features serve training only)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[0]


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"ONNX needs the {module} package; {_INSTALL}") from None


def write_onnx_model(model: PoseModel, out: Path) -> None:
    """``model``'s network as ONNX at ``out`` (dynamic batch axis, metadata in ``metadata_props``);
    the file replaces an earlier one only once it is complete."""
    onnx = _require("onnx")
    size = model.preprocessing.image_size
    network = _HeatmapsOnly(model.network).cpu().eval()  # eval: BatchNorm with running statistics
    example = torch.zeros(2, 3, size, size)
    with atomic_replace(out) as temporary, warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (example,),
            str(temporary),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
        graph = onnx.load(str(temporary))
        for key, value in export_metadata(model).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(temporary))


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, as a dict of strings."""
    onnx = _require("onnx")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's decode errors have no common public base
        raise UserError(f"{path}: cannot read ONNX file ({type(error).__name__}); export it again") from None
    return {entry.key: entry.value for entry in graph.metadata_props}


class OnnxNetwork(nn.Module):
    """An onnxruntime session behind the network's call: images (B, 3, S, S) in [0, 1] ->
    (heatmaps, None), on the CPU (the buffer tells callers where inputs go)."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.register_buffer("input_device", torch.zeros(0), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (heatmaps,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(heatmaps), None


@dataclass
class OnnxPoseModel(PoseModel):
    """A ``PoseModel`` whose network is an onnxruntime session; its fingerprint is the one of the
    PyTorch weights it was exported from, so predictions from either count as the same weights."""

    weights_sha256: str = ""

    def fingerprint(self) -> str:
        return self.weights_sha256


def load_onnx_model(path: str | Path) -> OnnxPoseModel:
    """An ONNX file written by ``posealign export --format onnx``, ready to run on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX model not found; write one with posealign export CKPT --format onnx")
    ort = _require("onnxruntime")
    header = read_onnx_metadata(path)
    keypoint_set, model_config, preprocessing, origin, training_config = read_export_metadata(header, path, "ONNX")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own unexported exception types
        raise UserError(
            f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0][:200]}); export it again"
        ) from None
    inputs = [entry.name for entry in session.get_inputs()]
    if inputs != [INPUT_NAME]:
        raise UserError(
            f"{path}: ONNX inputs are {inputs}, not [{INPUT_NAME!r}]; export it again with posealign export"
        )
    return OnnxPoseModel(
        network=OnnxNetwork(session),
        keypoint_set=keypoint_set,
        preprocessing=preprocessing,
        model_config=model_config,
        origin=origin,
        training_config=training_config,
        weights_sha256=json.loads(header.get("weights_sha256", '""')),
    )


def load_model_for_prediction(path: str | Path, device: torch.device | str = "cpu") -> PoseModel:
    """What ``posealign predict`` runs: an ``.onnx`` file through onnxruntime (on the CPU),
    anything else through :func:`~posealign.pose_model_files.load_pose_model` on ``device``."""
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_model(path)
    return load_pose_model(path, device=device)
