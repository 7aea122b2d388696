"""PCK, the two ways the field computes it, named apart (METHOD.md "Evaluation").

``legacy`` (:func:`pck_legacy`): the number the domain-adaptive pose papers report (RegDA, UDAPE,
DAML). It reproduces the Transfer-Learning-Library's ``tllib/utils/metric/keypoint_detection.py``
(``get_max_preds``, ``calc_dists``, ``dist_acc``, ``accuracy``, itself from HRNet's
``lib/core/evaluate.py``), read from the stored copy in ``qwedaq/MDAMA`` (a TLL fork):

* both the prediction and the target are decoded by the integer argmax of the heatmap (no
  quarter-pixel refinement); a map whose maximum is <= 0 decodes to ``(0, 0)`` (``get_max_preds``);
  the target heatmap is the released ``generate_target``'s, whose argmax is the keypoint rounded half
  up to the grid, ``int(x / stride + 0.5)`` (:func:`legacy_target_locations` computes it directly:
  decoding posealign's sub-pixel training targets instead would round exact halves down);
* ``norm = np.ones((B, 2)) * np.array([h, w]) / 10`` is applied to ``(x, y)``, so x is divided by
  ``H / 10`` and y by ``W / 10`` (the code pairs x with h; the same thing on the square 64x64 grid);
* a keypoint counts only when its target argmax has ``x > 1 and y > 1`` (else distance -1): all-zero
  (invisible) targets decode to (0, 0) and drop out, and so do keypoints on the first two rows or
  columns;
* distance ``||pred / norm - gt / norm||``; a hit when it is ``< thr`` (strict) with ``thr = 0.5``,
  i.e. ``threshold * 10`` for ``threshold = 0.05`` of the heatmap side;
* per-keypoint accuracy = hits / valid samples (-1 when none valid); the average runs over keypoints
  whose accuracy is >= 0.

``bbox`` (:func:`pck_bbox`): mmpose's ``PCKAccuracy(norm_item="bbox")`` / ``keypoint_pck_accuracy``:
coordinates in image pixels, distance ``||(pred - gt) / max(bbox_w, bbox_h)||`` (the same norm on both
axes), a hit when ``< threshold`` (strict), only visible GT keypoints, instances with a zero-size box
ignored.

Aggregation (:class:`PCKAccumulator`): hits and valid samples are summed per keypoint over the whole
evaluation set, so batch order and batch size do not change the numbers. A group is the mean of its
keypoints' accuracies and "All" the mean over ``keypoint_set.all_group``; both skip keypoints that
never had a valid sample (as ``accuracy``'s ``avg_acc`` and mmpose's average do). DAML's released
``validate`` aggregates otherwise, and that number is also returned, as ``released_batch_mean``, for
the legacy kind: per keypoint, a running mean of the per-batch accuracies weighted by batch size,
skipping the batches where the keypoint has no valid sample (``AverageMeterList(ignore_val=-1)`` in
its lib/meter.py; a keypoint never valid stays at 0), then a group is the plain mean of its
keypoints (``group_accuracy``). It depends on how the set is cut into batches (32 in the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from posealign.heatmaps import heatmap_argmax
from posealign.keypoints import KeypointSet

PCKKind = Literal["legacy", "bbox"]

# Legacy distances are measured in units of (heatmap side / 10), so threshold 0.05 -> 0.5.
_UNIT = {"legacy": 10.0, "bbox": 1.0}

DEFAULT_CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 21))


def _threshold_in_units(threshold: float, kind: str) -> float:
    # round() keeps e.g. 0.07 * 10 at 0.7, the literal the legacy code would be given
    return round(threshold * _UNIT[kind], 12)


@dataclass
class PCKResult:
    """Per-sample PCK of one batch.

    distances: (B, K) float64 normalised distances in the kind's own unit (legacy: heatmap side / 10,
        as ``calc_dists``; bbox: max(bbox w, h)); NaN where not valid.
    valid: (B, K) bool, the samples that count.
    pred_coords, gt_coords: (B, K, 2) the coordinates compared (legacy: integer argmax on the heatmap
        grid, (0, 0) for maps with max <= 0; bbox: as given).
    """

    kind: str
    threshold: float
    distances: torch.Tensor
    valid: torch.Tensor
    pred_coords: torch.Tensor
    gt_coords: torch.Tensor

    @property
    def normalized_distances(self) -> torch.Tensor:
        """(B, K) distances as a fraction of the normaliser (comparable with ``threshold``)."""
        return self.distances / _UNIT[self.kind]

    def hits(self, threshold: float | None = None) -> torch.Tensor:
        """(B, K) bool: valid and strictly below the threshold."""
        thr = _threshold_in_units(self.threshold if threshold is None else threshold, self.kind)
        return self.valid & (self.distances < thr)

    @property
    def per_keypoint(self) -> torch.Tensor:
        """(K,) accuracy as a fraction, -1 where no sample is valid (``dist_acc``)."""
        valid = self.valid.sum(0)
        acc = self.hits().sum(0).double() / valid.clamp(min=1)
        return torch.where(valid > 0, acc, torch.full_like(acc, -1.0))

    @property
    def mean(self) -> float:
        """Mean of the per-keypoint accuracies that are >= 0 (``accuracy``'s ``avg_acc``); 0 if none."""
        acc = self.per_keypoint
        acc = acc[acc >= 0]
        return float(acc.mean()) if acc.numel() else 0.0


def _legacy_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """``get_max_preds``: (B, K, H, W) -> (B, K, 2) float64 integer x, y; (0, 0) where max <= 0."""
    xy, peak = heatmap_argmax(heatmaps)
    return xy.double() * (peak > 0).unsqueeze(-1).double()


def legacy_target_locations(
    keypoints: torch.Tensor, visible: torch.Tensor, heatmap_size: int, stride: float
) -> torch.Tensor:
    """Where the released ``generate_target`` puts each ground-truth peak: (B, K, 2) float64 x, y.

    ``mu = int(keypoint / stride + 0.5)`` per axis (rounding half up); an invisible keypoint, or one
    whose ``mu`` falls outside ``[0, heatmap_size)``, has an all-zero target map and decodes to
    (0, 0). keypoints: (B, K, 2) input pixels; visible: (B, K).
    The released ``int()`` truncates toward zero, so a keypoint 0.5-1.5 heatmap pixels off the left
    or top edge lands on pixel 0 there; floor here drops it. Legacy PCK excludes x <= 1 anyway.
    """
    mu = torch.floor(torch.as_tensor(keypoints).double() / stride + 0.5)
    inside = ((mu >= 0) & (mu < heatmap_size)).all(dim=-1) & torch.as_tensor(visible).to(torch.bool)
    return mu * inside.unsqueeze(-1).double()


def pck_legacy(pred_heatmaps: torch.Tensor, gt: torch.Tensor, threshold: float = 0.05) -> PCKResult:
    """Legacy PCK of one batch (see the module docstring for the exact semantics and source).

    pred_heatmaps: (B, K, H, W). gt: the target heatmaps (B, K, H, W), decoded by argmax as the
    released ``accuracy`` does, or their peaks (B, K, 2) from :func:`legacy_target_locations`.
    threshold: a fraction of the heatmap side (0.05 -> the legacy ``thr=0.5`` in units of side / 10,
    3.2 heatmap px = 12.8 input px at 64 / 256).
    """
    pred_heatmaps = torch.as_tensor(pred_heatmaps)
    gt = torch.as_tensor(gt)
    expected = (*pred_heatmaps.shape[:2], 2) if gt.dim() == 3 else tuple(pred_heatmaps.shape)
    if pred_heatmaps.dim() != 4 or tuple(gt.shape) != expected:
        raise ValueError(f"expected (B, K, H, W) heatmaps and targets of shape {expected}, got "
                         f"{tuple(pred_heatmaps.shape)} and {tuple(gt.shape)}")  # fmt: skip
    height, width = pred_heatmaps.shape[-2:]
    pred = _legacy_argmax(pred_heatmaps.detach())
    gt = gt.detach().double().to(pred.device) if gt.dim() == 3 else _legacy_argmax(gt.detach())
    # As calc_dists: x / (h / 10), y / (w / 10), normalising each point before the difference.
    norm = torch.tensor([height / 10, width / 10], dtype=torch.float64, device=pred.device)
    diff = pred / norm - gt / norm
    distances = torch.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
    valid = (gt[..., 0] > 1) & (gt[..., 1] > 1)
    distances = torch.where(valid, distances, torch.full_like(distances, float("nan")))
    return PCKResult("legacy", threshold, distances, valid, pred, gt)


def pck_bbox(
    pred_coords: torch.Tensor,
    gt_coords: torch.Tensor,
    visible: torch.Tensor,
    bboxes: torch.Tensor,
    threshold: float = 0.05,
) -> PCKResult:
    """mmpose's bbox-normalised PCK of one batch.

    pred_coords, gt_coords: (B, K, 2) x, y in one frame (image pixels); visible: (B, K) bool;
    bboxes: (B, 4) x, y, w, h in that frame (mmpose's x1, y1, x2, y2 give the same w, h).
    Distance ``||(pred - gt) / max(w, h)||``; valid where visible and ``max(w, h) > 0``.
    """
    pred = torch.as_tensor(pred_coords).detach().double()
    gt = torch.as_tensor(gt_coords).detach().double().to(pred.device)
    boxes = torch.as_tensor(bboxes).detach().double().to(pred.device)
    size = boxes[:, 2:4].max(dim=-1).values  # (B,)
    valid = torch.as_tensor(visible).to(device=pred.device, dtype=torch.bool) & (size > 0)[:, None]
    safe = torch.where(size > 0, size, torch.ones_like(size))
    distances = torch.linalg.vector_norm((pred - gt) / safe[:, None, None], dim=-1)
    distances = torch.where(valid, distances, torch.full_like(distances, float("nan")))
    return PCKResult("bbox", threshold, distances, valid, pred, gt)


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


class PCKAccumulator:
    """PCK over an evaluation set, batch by batch; the totals equal one big batch's.

    ``update(pred, target)`` for ``kind="legacy"`` (two (B, K, H, W) heatmaps);
    ``update(pred_coords, gt_coords, visible, bboxes)`` for ``kind="bbox"``.
    ``compute()`` gives percentages (None where a keypoint or group never had a valid sample)::

        {"kind", "threshold", "All", "groups": {name: pct}, "per_keypoint": {name: pct},
         "counts": {"samples", "valid": {name: n}, "hits": {name: n}},
         "released_batch_mean": {group: pct, "All": pct}}   # legacy only

    The per-keypoint normalised distances are kept (CPU, float64) so curves over thresholds come
    from the same evaluation (:func:`pck_curve`).
    """

    def __init__(self, keypoint_set: KeypointSet, kind: PCKKind = "legacy", threshold: float = 0.05) -> None:
        if kind not in _UNIT:
            raise ValueError(f"unknown PCK kind {kind!r}; known: {sorted(_UNIT)}")
        self.keypoint_set = keypoint_set
        self.kind = kind
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._distances: list[torch.Tensor] = []
        self._valid: list[torch.Tensor] = []

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        visible: torch.Tensor | None = None,
        bboxes: torch.Tensor | None = None,
    ) -> PCKResult:
        """Add one batch; returns that batch's :class:`PCKResult`."""
        if self.kind == "legacy":
            result = pck_legacy(pred, target, self.threshold)
        else:
            if visible is None or bboxes is None:
                raise ValueError("bbox PCK needs update(pred_coords, gt_coords, visible, bboxes)")
            result = pck_bbox(pred, target, visible, bboxes, self.threshold)
        k = self.keypoint_set.num_keypoints
        if result.distances.shape[1] != k:
            raise ValueError(
                f"got {result.distances.shape[1]} keypoints, keypoint set {self.keypoint_set.name!r} has {k}"
            )
        self._distances.append(result.distances.cpu())
        self._valid.append(result.valid.cpu())
        return result

    @property
    def num_samples(self) -> int:
        return sum(d.shape[0] for d in self._distances)

    def _group_items(self) -> dict[str, tuple[int, ...]]:
        return {**self.keypoint_set.groups, "All": tuple(self.keypoint_set.all_group)}

    def compute(self, threshold: float | None = None) -> dict:
        """Percentages at ``threshold`` (default: the accumulator's)."""
        threshold = self.threshold if threshold is None else threshold
        names = self.keypoint_set.names
        k = len(names)
        thr = _threshold_in_units(threshold, self.kind)
        hits = torch.zeros(k, dtype=torch.long)
        valid = torch.zeros(k, dtype=torch.long)
        # DAML's validate(): per keypoint a batch-size-weighted running mean of per-batch accuracies,
        # skipping batches without a valid sample of that keypoint.
        released_sum = torch.zeros(k, dtype=torch.float64)
        released_count = torch.zeros(k, dtype=torch.float64)
        for dist, ok in zip(self._distances, self._valid, strict=True):
            batch_hits = (ok & (dist < thr)).sum(0)
            batch_valid = ok.sum(0)
            hits += batch_hits
            valid += batch_valid
            present = batch_valid > 0
            released_sum += torch.where(present, batch_hits.double() / batch_valid.clamp(min=1), 0.0) * dist.shape[0]
            released_count += present.double() * dist.shape[0]
        per_keypoint = [100.0 * int(h) / int(v) if v > 0 else None for h, v in zip(hits, valid, strict=True)]
        groups = {name: _mean_or_none([per_keypoint[i] for i in idx]) for name, idx in self.keypoint_set.groups.items()}
        result = {
            "kind": self.kind,
            "threshold": threshold,
            "All": _mean_or_none([per_keypoint[i] for i in self.keypoint_set.all_group]),
            "groups": groups,
            "per_keypoint": dict(zip(names, per_keypoint, strict=True)),
            "counts": {
                "samples": self.num_samples,
                "valid": {n: int(v) for n, v in zip(names, valid, strict=True)},
                "hits": {n: int(h) for n, h in zip(names, hits, strict=True)},
            },
        }
        if self.kind == "legacy":
            released = 100.0 * released_sum / released_count.clamp(min=1.0)  # a keypoint never valid stays 0
            result["released_batch_mean"] = {
                name: float(released[list(idx)].mean()) for name, idx in self._group_items().items()
            }
        return result

    def curve(self, thresholds: tuple[float, ...] | list[float] = DEFAULT_CURVE_THRESHOLDS) -> dict:
        return pck_curve(self, thresholds)


def pck_curve(
    accumulator: PCKAccumulator, thresholds: tuple[float, ...] | list[float] = DEFAULT_CURVE_THRESHOLDS
) -> dict:
    """PCK (percent) at each threshold from one accumulated evaluation, for either kind.

    Returns ``{"kind", "thresholds": [t], "All": [pct], "groups": {name: [pct]},
    "per_keypoint": {name: [pct]}}``; default thresholds 0.01, 0.02, ..., 0.20.
    """
    rows = [accumulator.compute(t) for t in thresholds]
    return {
        "kind": accumulator.kind,
        "thresholds": list(thresholds),
        "All": [r["All"] for r in rows],
        "groups": {g: [r["groups"][g] for r in rows] for g in accumulator.keypoint_set.groups},
        "per_keypoint": {n: [r["per_keypoint"][n] for r in rows] for n in accumulator.keypoint_set.names},
    }
