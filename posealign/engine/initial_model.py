"""``train.init``: the pose model a run starts from instead of random weights, a posealign
checkpoint (the end of a stage 1, or any run's), a model file (``posealign export``, ``posealign
import``) or a plain state dict of the pose network.

A checkpoint also brings what a source-free stage 2 needs from the source and cannot read itself:
the source pose prior fitted at the end of stage 1 (:mod:`posealign.alignment.pose_prior`); the
source's BatchNorm statistics come with any state dict, as the network's running buffers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from posealign.errors import UserError
from posealign.files import load_torch_file
from posealign.keypoints import KeypointSet
from posealign.models.unwrap import unwrap_model
from posealign.multilevel_alignment import MultiLevelAlignment

_FIX = (
    "pass a posealign checkpoint (RUN/checkpoints/final.pt), model file (.safetensors) "
    "or a state dict of this run's model.* network"
)


def load_initial_model(method: MultiLevelAlignment, path: str, keypoint_set: KeypointSet) -> str:
    """Load ``path`` into the student (and the teacher, which stage 2 starts as a copy of it anyway);
    returns the line the run's log gets. Any mismatch is one ``UserError`` naming the file and what differs."""
    if Path(path).suffix == ".safetensors":  # `posealign export` or `posealign import`: the network alone
        from posealign.pose_model_files import initialise_from_model_file

        networks = [unwrap_model(method.student)] + ([method.teacher] if method.teacher is not None else [])
        initialise_from_model_file(networks, method.config.model, keypoint_set, path)
        method.source_pose_prior = None
        return f"started from {path} (model file, without a source pose prior)"
    state = load_torch_file(path, "train.init model", _FIX, missing_fix=f"train.init names no file; {_FIX}")
    if not isinstance(state, dict):
        raise UserError(f"{path}: train.init holds a {type(state).__name__}, not a state dict; {_FIX}")
    is_checkpoint = "student" in state
    if is_checkpoint:
        _check_keypoint_names(state, keypoint_set, path)
        # The network a run reports: the teacher where there is one, the student otherwise.
        weights = state.get("teacher") or state["student"]
    else:
        weights = state
    student = unwrap_model(method.student)
    _check_fits(student, weights, path)
    student.load_state_dict(weights)
    if method.teacher is not None:
        method.teacher.load_state_dict(weights)
    prior = state.get("source_pose_prior") if is_checkpoint else None
    method.source_pose_prior = prior
    kind = "posealign checkpoint" if is_checkpoint else "state dict"
    has_prior = "with" if prior is not None else "without"
    return f"started from {path} ({kind}, {has_prior} a source pose prior)"


def _check_keypoint_names(state: dict, keypoint_set: KeypointSet, path: str) -> None:
    saved = (state.get("keypoint_set") or {}).get("names")
    if saved is not None and len(saved) == keypoint_set.num_keypoints and list(saved) != list(keypoint_set.names):
        raise UserError(
            f"{path}: train.init is a model of keypoint set {state['keypoint_set'].get('name')!r}, "
            f"this run uses {keypoint_set.name!r} (same count, other keypoints); {_FIX}"
        )


def _check_fits(network: torch.nn.Module, weights: dict, path: str) -> None:
    """The first difference between ``weights`` and the run's network: keypoint count, then any other."""
    expected = network.state_dict()
    head = "head.weight"
    if head in weights and head in expected and weights[head].shape[0] != expected[head].shape[0]:
        raise UserError(
            f"{path}: train.init predicts {weights[head].shape[0]} keypoints, this run's keypoint set has "
            f"{expected[head].shape[0]}; {_FIX}"
        )
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        detail = f"lacks {missing[0]!r}" if missing else f"has {unexpected[0]!r}, which this network has not"
        raise UserError(
            f"{path}: train.init is another architecture ({detail}; {len(missing)} missing, {len(unexpected)} "
            f"unexpected entries); {_FIX}"
        )
    for key, tensor in expected.items():
        given = weights[key]
        if not isinstance(given, torch.Tensor) or given.shape != tensor.shape:
            shape = tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
            raise UserError(
                f"{path}: train.init is another architecture ({key!r} is {shape}, this run's is "
                f"{tuple(tensor.shape)}: compare model.backbone, model.backbone_stages, model.deconv_*); {_FIX}"
            )
