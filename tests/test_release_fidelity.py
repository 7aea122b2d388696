"""``daml_release`` computes what the released DAML code computes.

Each reference below is the released formula written out by hand in NumPy, loop for loop, from
train_human.py, utils.py (``rectify``, ``get_max_preds_torch``), lib/models/loss.py (``ConsLoss``),
lib/datasets/util.py (``generate_target``), lib/keypoint_detection.py (``accuracy``) and
lib/meter.py (``AverageMeterList``), on small inputs; posealign's batched code must give the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posealign.keypoints import KeypointSet
from posealign.losses.consistency import consistency_loss
from posealign.mean_teacher import confidence_gate, occlude_keypoints, teacher_pseudo_labels
from posealign.metrics.pck import PCKAccumulator, legacy_target_locations, pck_legacy

# -- references: the released code's formulas ------------------------------------------------------


def released_get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    batch, joints, _, width = heatmaps.shape
    flat = heatmaps.reshape(batch, joints, -1)
    idx = np.argmax(flat, 2).reshape(batch, joints, 1)
    maxvals = np.amax(flat, 2).reshape(batch, joints, 1)
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % width
    preds[:, :, 1] = np.floor(preds[:, :, 1] / width)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return preds, maxvals


def released_rectify(hm: np.ndarray, sigma: float) -> np.ndarray:
    b_size, c_size, h, w = hm.shape
    out = np.zeros_like(hm)
    coords, _ = released_get_max_preds(hm)
    tmp = 3 * sigma
    for b in range(b_size):
        for c in range(c_size):
            mu_x, mu_y = coords[b, c]
            ul = [int(mu_x - tmp), int(mu_y - tmp)]
            br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
            if mu_x >= h or mu_y >= w or mu_x < 0 or mu_y < 0:
                continue
            size = 2 * tmp + 1
            x = np.arange(0, size, 1, np.float32)
            y = x[:, None]
            x0 = y0 = size // 2
            g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
            g_x = max(0, -ul[0]), min(br[0], h) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], w) - ul[1]
            img_x = max(0, ul[0]), min(br[0], h)
            img_y = max(0, ul[1]), min(br[1], w)
            out[b, c, img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return out


def released_cons_loss(stu: np.ndarray, tea: np.ndarray, valid_mask=None, tea_mask=None) -> float:
    diff = stu - tea
    if tea_mask is not None:
        diff = diff * tea_mask[:, :, None, None]
    loss_map = np.mean(diff**2, axis=1)
    if valid_mask is not None:
        loss_map = loss_map[valid_mask]
    return float(loss_map.mean())


def released_generate_target(joints, joints_vis, heatmap_size, sigma, image_size):
    """lib/datasets/util.py for one sample: (K, H, W) targets and (K,) weights."""
    num = joints.shape[0]
    weight = joints_vis.astype(np.float32).copy()
    target = np.zeros((num, heatmap_size, heatmap_size), np.float32)
    tmp = sigma * 3
    stride = image_size / heatmap_size
    for j in range(num):
        mu_x = int(joints[j][0] / stride + 0.5)
        mu_y = int(joints[j][1] / stride + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if mu_x >= heatmap_size or mu_y >= heatmap_size or mu_x < 0 or mu_y < 0:
            weight[j] = 0
            continue
        size = 2 * tmp + 1
        x = np.arange(0, size, 1, np.float32)
        y = x[:, None]
        g = np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / (2 * sigma**2))
        g_x = max(0, -ul[0]), min(br[0], heatmap_size) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], heatmap_size) - ul[1]
        img_x = max(0, ul[0]), min(br[0], heatmap_size)
        img_y = max(0, ul[1]), min(br[1], heatmap_size)
        if weight[j] > 0.5:
            target[j][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return target, weight


def released_accuracy(output: np.ndarray, target: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """lib/keypoint_detection.py ``accuracy``: per-keypoint accuracy of one batch, -1 where none valid."""
    pred, _ = released_get_max_preds(output)
    gt, _ = released_get_max_preds(target)
    h, w = output.shape[2:]
    norm = np.ones((pred.shape[0], 2)) * np.array([h, w]) / 10
    acc = np.zeros(pred.shape[1])
    for c in range(pred.shape[1]):
        dists = []
        for n in range(pred.shape[0]):
            if gt[n, c, 0] > 1 and gt[n, c, 1] > 1:
                dists.append(np.linalg.norm(pred[n, c] / norm[n] - gt[n, c] / norm[n]))
        acc[c] = (np.array(dists) < thr).mean() if dists else -1
    return acc


def released_validate_average(per_batch_acc: list[np.ndarray], batch_sizes: list[int]) -> np.ndarray:
    """lib/meter.py ``AverageMeterList(ignore_val=-1)`` updated with ``(acc, x.size(0))`` per batch."""
    total = np.zeros(len(per_batch_acc[0]))
    count = np.zeros(len(per_batch_acc[0]))
    avg = np.zeros(len(per_batch_acc[0]))
    for acc, n in zip(per_batch_acc, batch_sizes, strict=True):
        for k, value in enumerate(acc):
            if value != -1:
                total[k] += value * n
                count[k] += n
                avg[k] = total[k] / count[k]
    return avg


# -- the teacher's pseudo-label: rectify --------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_gaussian_pseudo_label_is_the_released_rectify(sigma):
    torch.manual_seed(0)
    heatmaps = torch.rand(3, 5, 16, 16) * 0.5
    heatmaps[0, 0, 1, 14] = 2.0  # a peak whose window is cut by the top and right edges
    heatmaps[0, 1, 8, 0] = 2.0  # cut by the left edge
    heatmaps[1, 2] = -torch.rand(16, 16)  # maximum <= 0: the Gaussian goes to pixel (0, 0)
    heatmaps[2, 3] = 0.0  # all zero: likewise
    ours = teacher_pseudo_labels(heatmaps, "gaussian", sigma)
    reference = released_rectify(heatmaps.numpy(), sigma)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-6)
    # The window is (6 sigma + 1)^2 and nothing outside it: far pixels are exactly zero.
    assert (ours[0, 2] > 0).sum() <= (6 * sigma + 1) ** 2
    assert ours[1, 2, 0, 0] == 1.0 and ours[2, 3, 0, 0] == 1.0


# -- the gate: kthvalue at int(q * B * K) ------------------------------------------------------------


@pytest.mark.parametrize(("shape", "quantile"), [((4, 17), 0.5), ((3, 17), 0.5), ((5, 16), 0.3), ((1, 3), 0.5)])
def test_quantile_gate_is_the_released_kthvalue(shape, quantile):
    torch.manual_seed(1)
    peaks = torch.rand(shape)
    ours = confidence_gate(peaks, "quantile", quantile=quantile)
    # train_human.py: mask_thresh = kthvalue(activates.view(-1), int(mask_ratio * numel)); keep >.
    k = int(quantile * peaks.numel())
    threshold = np.sort(peaks.flatten().numpy())[k - 1]
    expected = peaks.numpy() > threshold
    assert np.array_equal(ours.numpy(), expected)
    assert int(ours.sum()) == peaks.numel() - k  # e.g. 3 x 17 = 51 peaks: k = 25, 26 kept (round() kept 25)


# -- the occlusion square: [c - 10, c + 10) ----------------------------------------------------------


def test_occlusion_square_is_twenty_pixels_half_open_as_released():
    torch.manual_seed(2)
    batch, size, half = 6, 64, 10
    images = torch.arange(batch * 3 * size * size, dtype=torch.float32).view(batch, 3, size, size)
    centres = torch.tensor([[30, 30], [5, 40], [60, 2], [0, 0], [63, 63], [10.7, 20.2]])
    keypoints = centres.view(batch, 1, 2)
    out, chosen = occlude_keypoints(images, keypoints, torch.ones(batch, 1), 1.0, 0.9, half)
    assert (chosen == 0).all()
    for b in range(batch):
        x, y = (int(v) for v in centres[b])  # the released code's int() of the position
        # train_human.py: rows/columns max(c - size, 0) .. min(c + size, image_size), half-open.
        x0, x1, y0, y1 = max(x - half, 0), min(x + half, size), max(y - half, 0), min(y + half, size)
        square = torch.zeros(size, size, dtype=torch.bool)
        square[y0:y1, x0:x1] = True
        changed = (out[b] != images[b]).any(0)
        assert not changed[~square].any()
        assert changed[square].all() or torch.equal(out[b], images[b])  # a zero offset changes nothing
        # The patch is the same image's, of the cut square's size, wholly inside the image.
        first = int(out[b, 0, y0, x0]) - b * 3 * size * size
        sy, sx = divmod(first, size)
        assert 0 <= sy <= size - (y1 - y0) and 0 <= sx <= size - (x1 - x0)
        torch.testing.assert_close(out[b][:, y0:y1, x0:x1], images[b][:, sy : sy + y1 - y0, sx : sx + x1 - x0])


# -- consistency: valid pixels only (ConsLoss with a mask), or none (the released training) ----------


def test_consistency_masks_are_the_released_cons_loss():
    torch.manual_seed(3)
    student, teacher = torch.rand(2, 4, 6, 6), torch.rand(2, 4, 6, 6)
    gate = torch.rand(2, 4) > 0.4
    valid = torch.rand(2, 1, 6, 6) > 0.3
    s, t, m, v = student.numpy(), teacher.numpy(), gate.numpy().astype(np.float32), valid[:, 0].numpy()
    with_mask = consistency_loss(student, teacher, gate, valid, mask="valid_pixels")
    without = consistency_loss(student, teacher, gate, valid, mask="none")
    assert with_mask.item() == pytest.approx(released_cons_loss(s, t, valid_mask=v, tea_mask=m), rel=1e-6)
    assert without.item() == pytest.approx(released_cons_loss(s, t, tea_mask=m), rel=1e-6)


# -- legacy PCK: the released targets and accuracy, and validate()'s running mean -------------------


def _release_style_batch(seed: int, batch: int, joints: int = 4, image_size: int = 64, heatmap_size: int = 16):
    rng = np.random.default_rng(seed)
    stride = image_size / heatmap_size
    # Keypoints on exact half-pixels of the heatmap grid (where rounding matters), near the border
    # (x, y <= 1 excluded), off the map, and invisible.
    grid = rng.integers(0, heatmap_size, size=(batch, joints, 2)) + rng.choice(
        [0.0, 0.5, 0.25], size=(batch, joints, 2)
    )
    keypoints = grid * stride
    keypoints[0, 0] = (1.5 * stride, 5.5 * stride)  # rounds up to x = 2: counted by the release
    keypoints[0, 1] = (heatmap_size * stride + 3, 4 * stride)  # off the right edge
    visible = rng.random((batch, joints)) > 0.15
    preds = np.zeros((batch, joints, heatmap_size, heatmap_size), np.float32)
    for b in range(batch):
        for k in range(joints):
            px, py = rng.integers(0, heatmap_size, size=2)
            preds[b, k, py, px] = 1.0
    targets = np.stack(
        [
            released_generate_target(keypoints[b], visible[b][:, None], heatmap_size, 2, image_size)[0]
            for b in range(batch)
        ]
    )
    return keypoints, visible, preds, targets, stride


def test_legacy_pck_equals_the_released_accuracy_on_the_same_annotations():
    keypoints, visible, preds, targets, stride = _release_style_batch(4, batch=12)
    heatmap_size = preds.shape[-1]
    reference = released_accuracy(preds, targets)
    gt = legacy_target_locations(torch.from_numpy(keypoints), torch.from_numpy(visible), heatmap_size, stride)
    ours = pck_legacy(torch.from_numpy(preds), gt).per_keypoint.numpy()
    np.testing.assert_allclose(ours, reference)
    # The released target heatmaps, decoded by argmax, give the same locations.
    np.testing.assert_array_equal(gt.numpy(), released_get_max_preds(targets)[0])
    assert gt[0, 0].tolist() == [2.0, 6.0]  # 1.5 rounds half up to 2 (> 1: counted)


def test_released_batch_mean_is_the_released_validate_running_mean():
    toy = KeypointSet(
        name="toy", names=("a", "b", "c", "d"), flip_pairs=(), skeleton=(), groups={"AB": (0, 1), "CD": (2, 3)},
        all_group=(0, 1, 2, 3),
    )  # fmt: skip
    accumulator = PCKAccumulator(toy, "legacy")
    per_batch, sizes = [], []
    for seed, batch in ((5, 8), (6, 8), (7, 3)):
        keypoints, visible, preds, targets, stride = _release_style_batch(seed, batch)
        visible[:, 3] = seed == 6  # keypoint d is valid in one batch only
        targets = np.stack(
            [released_generate_target(keypoints[b], visible[b][:, None], 16, 2, 64)[0] for b in range(batch)]
        )
        gt = legacy_target_locations(torch.from_numpy(keypoints), torch.from_numpy(visible), 16, stride)
        accumulator.update(torch.from_numpy(preds), gt)
        per_batch.append(released_accuracy(preds, targets))
        sizes.append(batch)
    average = released_validate_average(per_batch, sizes)
    expected = {"AB": average[[0, 1]].mean(), "CD": average[[2, 3]].mean(), "All": average.mean()}
    released = accumulator.compute()["released_batch_mean"]
    for name, value in expected.items():
        assert released[name] == pytest.approx(100.0 * value)
