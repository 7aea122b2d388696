import math

import pytest
import torch

from posealign.keypoints import KeypointSet
from posealign.metrics import PCKAccumulator, pck_bbox, pck_curve, pck_legacy

TOY = KeypointSet(
    name="toy",
    names=("a_left", "a_right", "b", "c"),
    flip_pairs=((0, 1),),
    skeleton=((0, 1),),
    groups={"A": (0, 1), "B": (2,)},
    all_group=(0, 1, 2),  # "c" is not in All
)


def one_hot(points, size=64):
    """points: [[(x, y) or None per keypoint] per sample] -> (B, K, size, size) maps, None = all zero."""
    maps = torch.zeros(len(points), len(points[0]), size, size)
    for b, row in enumerate(points):
        for k, p in enumerate(row):
            if p is not None:
                maps[b, k, p[1], p[0]] = 1.0
    return maps


def test_legacy_hit_near_and_far_on_64_grid():
    # 64 grid: norm 6.4, hit iff pixel distance < 3.2
    gt = one_hot([[(20, 20)] * 5])
    pred = one_hot([[(20, 20), (23, 21), (23, 22), (20, 23), (20, 24)]])
    r = pck_legacy(pred, gt)
    assert r.valid.all()
    assert r.hits()[0].tolist() == [True, True, False, True, False]  # sqrt(10)=3.16 hit, sqrt(13) miss
    assert math.isclose(r.distances[0, 1].item(), math.sqrt(10) / 6.4)


def test_legacy_exactly_at_threshold_is_a_miss():
    # 40 grid: norm 4, threshold 0.05 -> 0.5 -> 2 heatmap px exactly
    gt = one_hot([[(10, 10), (10, 10)]], size=40)
    pred = one_hot([[(12, 10), (11, 11)]], size=40)
    r = pck_legacy(pred, gt, threshold=0.05)
    assert r.distances[0, 0].item() == 0.5
    assert r.hits()[0].tolist() == [False, True]


def test_legacy_exclusions_invisible_and_border():
    gt = one_hot([[None, (1, 10), (10, 1), (2, 2), (10, 10)]])
    gt[0, 0] = 0.0  # invisible: all-zero map decodes to (0, 0)
    pred = one_hot([[(5, 5), (1, 10), (10, 1), (2, 2), None]])  # all-zero prediction decodes to (0, 0)
    r = pck_legacy(pred, gt)
    assert r.valid[0].tolist() == [False, False, False, True, True]
    assert r.hits()[0].tolist() == [False, False, False, True, False]
    assert r.per_keypoint.tolist() == [-1.0, -1.0, -1.0, 1.0, 0.0]
    assert r.mean == 0.5


def test_legacy_pairs_x_with_height_as_the_released_code():
    # H=20, W=40: x is divided by H/10 = 2, y by W/10 = 4 (norm = [h, w] / 10 applied to (x, y))
    gt = torch.zeros(1, 2, 20, 40)
    pred = torch.zeros(1, 2, 20, 40)
    gt[0, :, 10, 10] = 1.0
    pred[0, 0, 10, 11] = 1.0  # dx = 1 -> 0.5: miss
    pred[0, 1, 11, 10] = 1.0  # dy = 1 -> 0.25: hit
    r = pck_legacy(pred, gt)
    assert r.distances[0].tolist() == [0.5, 0.25]
    assert r.hits()[0].tolist() == [False, True]


HIT, NEAR, MISS = (20, 20), (22, 21), (30, 30)
GT_ROWS = [
    [(20, 20), (20, 20), (20, 20), (20, 20)],
    [(20, 20), None, (20, 20), (20, 20)],
    [(20, 20), (20, 20), (20, 20), (20, 20)],
]
PRED_ROWS = [
    [HIT, NEAR, HIT, HIT],
    [NEAR, MISS, MISS, HIT],
    [MISS, MISS, HIT, HIT],
]
# per keypoint: a_left 2/3, a_right 1/2 (sample 1 invisible), b 2/3, c 3/3


def _accumulate(splits, kind="legacy"):
    acc = PCKAccumulator(TOY, kind=kind)
    gt, pred = one_hot(GT_ROWS), one_hot(PRED_ROWS)
    for lo, hi in splits:
        acc.update(pred[lo:hi], gt[lo:hi])
    return acc


def test_accumulator_groups_and_all_by_hand():
    out = _accumulate([(0, 3)]).compute()
    pk = out["per_keypoint"]
    assert pk["a_left"] == pytest.approx(200 / 3) and pk["a_right"] == pytest.approx(50.0)
    assert pk["b"] == pytest.approx(200 / 3) and pk["c"] == pytest.approx(100.0)
    assert out["groups"]["A"] == pytest.approx((200 / 3 + 50) / 2)
    assert out["groups"]["B"] == pytest.approx(200 / 3)
    # All = mean of per-keypoint accuracies over all_group (61.11), not pooled hits (5/8 = 62.5)
    assert out["All"] == pytest.approx((200 / 3 + 50 + 200 / 3) / 3)
    assert out["counts"]["valid"] == {"a_left": 3, "a_right": 2, "b": 3, "c": 3}
    assert out["counts"]["hits"] == {"a_left": 2, "a_right": 1, "b": 2, "c": 3}
    assert out["counts"]["samples"] == 3


def test_accumulator_batching_does_not_change_numbers():
    whole = _accumulate([(0, 3)]).compute()
    for splits in ([(0, 2), (2, 3)], [(0, 1), (1, 2), (2, 3)]):
        parts = _accumulate(splits).compute()
        assert {k: parts[k] for k in ("All", "groups", "per_keypoint", "counts")} == {
            k: whole[k] for k in ("All", "groups", "per_keypoint", "counts")
        }


def test_released_batch_mean_by_hand():
    # DAML's validate(): per keypoint, batch accuracies averaged with weight = batch size, skipping a
    # batch without a valid sample of the keypoint; a group is the plain mean of its keypoints.
    # Batches [0, 1] and [2]: a_left (2 * 1 + 1 * 0) / 3, a_right (2 * 1 + 1 * 0) / 3 (sample 1
    # invisible), b (2 * 0.5 + 1 * 1) / 3: each 2/3.
    out = _accumulate([(0, 2), (2, 3)]).compute()["released_batch_mean"]
    assert out["A"] == pytest.approx(100 * 2 / 3)
    assert out["All"] == pytest.approx(100 * 2 / 3)
    # One sample per batch: a_right skips batch 1, (1 + 0) / 2; a_left and b (1 + 1 + 0) / 3.
    out = _accumulate([(0, 1), (1, 2), (2, 3)]).compute()["released_batch_mean"]
    assert out["A"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert out["All"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_bbox_pck_by_hand():
    gt = torch.tensor([[[50.0, 20.0], [50.0, 20.0], [50.0, 20.0], [50.0, 20.0]], [[5.0, 5.0]] * 4])
    pred = gt.clone()
    pred[0, 1] += torch.tensor([3.0, 3.9])  # 4.95 px < 5 (max(100, 40) * 0.05): hit
    pred[0, 2] += torch.tensor([3.0, 4.0])  # exactly 5 px: miss
    visible = torch.tensor([[True, True, True, False], [True] * 4])
    bboxes = torch.tensor([[0.0, 0.0, 100.0, 40.0], [0.0, 0.0, 0.0, 0.0]])  # second: zero size, ignored
    r = pck_bbox(pred, gt, visible, bboxes, threshold=0.05)
    assert r.valid.tolist() == [[True, True, True, False], [False] * 4]
    assert r.hits().tolist() == [[True, True, False, False], [False] * 4]
    assert r.distances[0, 2].item() == 0.05
    acc = PCKAccumulator(TOY, kind="bbox")
    acc.update(pred, gt, visible, bboxes)
    out = acc.compute()
    assert out["per_keypoint"] == {"a_left": 100.0, "a_right": 100.0, "b": 0.0, "c": None}
    assert out["All"] == pytest.approx(200 / 3) and "released_batch_mean" not in out
    curve = pck_curve(acc, [0.05, 0.06])
    assert curve["per_keypoint"]["b"] == [0.0, 100.0] and curve["All"][1] == 100.0


def test_curve_matches_compute_and_is_monotone():
    acc = _accumulate([(0, 2), (2, 3)])
    curve = acc.curve()
    assert len(curve["thresholds"]) == 20 and curve["thresholds"][4] == 0.05
    assert curve["All"][4] == acc.compute()["All"]
    assert all(a <= b for a, b in zip(curve["All"], curve["All"][1:], strict=False))


def test_hand21_groups_follow_the_anchors_order():
    from posealign.keypoints import HAND21, get_keypoint_set

    assert get_keypoint_set("hand21") is HAND21 and HAND21.num_keypoints == 21
    # 0 wrist; then per finger (thumb .. little) MCP, PIP, DIP, tip, as UDAPE's hand classes order them
    assert HAND21.groups == {
        "MCP": (1, 5, 9, 13, 17),
        "PIP": (2, 6, 10, 14, 18),
        "DIP": (3, 7, 11, 15, 19),
        "Fingertip": (4, 8, 12, 16, 20),
    }
    assert [HAND21.names[i] for i in (0, 4, 8, 20)] == ["wrist", "thumb_tip", "index_tip", "little_tip"]
    assert HAND21.all_group == tuple(range(21))
    # each finger is a chain from the wrist: 20 links, the wrist touching the five MCPs
    assert len(HAND21.skeleton) == 20 and {j for i, j in HAND21.skeleton if i == 0} == {1, 5, 9, 13, 17}
