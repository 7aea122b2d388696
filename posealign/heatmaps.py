"""The heatmap codec: Gaussian targets, argmax decoding, and the map back to image pixels.

Coordinate convention (used by every function here and everywhere else in posealign):

* ``heatmap coordinate = input-pixel coordinate / stride`` with ``stride = input_size / heatmap_size``
  (4 for 256 -> 64), per axis.
* Heatmap pixel ``(i, j)`` (row ``i``, column ``j``) has its centre at the integer coordinate
  ``(x=j, y=i)``; a map of width ``W`` covers ``x`` in ``[-0.5, W - 0.5)``.
* Input pixels follow the same rule, so a keypoint at input pixel ``(x, y)`` renders its peak at
  heatmap ``(x / stride, y / stride)``. This is the plain scaling SimpleBaseline and UDAPE use (it is
  not the half-pixel-centred mapping ``(x + 0.5) / stride - 0.5``); encoding and decoding both use it,
  so a render/decode round trip is unbiased.
* ``crop_to_image`` maps the network-input frame back to the original image through the square crop
  box the protocol resized to ``input_size``: ``image = box_xy + input * box_wh / input_size``.

All functions are batched over leading dimensions (no per-sample Python loops). Shapes: keypoints
``(B, K, 2)`` as ``(x, y)``, heatmaps ``(B, K, H, W)``.
"""

from __future__ import annotations

import torch

Size2 = int | tuple[int, int]
Scale2 = float | tuple[float, float]


def _pair(value: int | float | tuple) -> tuple:
    """``v`` -> ``(v, v)``; a pair is returned as is. Pairs are ``(x, y)`` / ``(W, H)`` order."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"expected a number or a pair, got {value!r}")
        return tuple(value)
    return (value, value)


def _gaussian_maps(centres: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Unit-peak Gaussians ``exp(-|p - c|^2 / (2 sigma^2))`` at centres ``(..., 2)`` -> ``(..., H, W)``.

    Evaluated at the integer pixel centres for the exact (sub-pixel) centre: the centre is not rounded,
    so the brightest pixel is below 1 unless the centre lies on a pixel centre.
    """
    xs = torch.arange(width, device=centres.device, dtype=centres.dtype)
    ys = torch.arange(height, device=centres.device, dtype=centres.dtype)
    dx2 = (xs - centres[..., 0:1]) ** 2  # (..., W)
    dy2 = (ys - centres[..., 1:2]) ** 2  # (..., H)
    return torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * sigma**2))


def render_gaussian_heatmaps(
    keypoints: torch.Tensor,
    visible: torch.Tensor,
    heatmap_size: Size2,
    sigma: float,
    stride: Scale2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets: one unit-peak Gaussian per keypoint (METHOD.md "Targets").

    keypoints: (B, K, 2) x, y in input pixels; visible: (B, K) bool.
    heatmap_size: ``W`` or ``(W, H)``; sigma in heatmap pixels; stride: ``s`` or ``(s_x, s_y)``,
    input pixels per heatmap pixel.

    The Gaussian ``exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2))`` with ``(x0, y0) = keypoint / stride``
    is evaluated at the integer pixel centres without rounding ``(x0, y0)`` (sub-pixel targets; the
    legacy code rounds the centre and truncates at 3 sigma, this does neither).
    A keypoint that is invisible, or whose centre falls outside the map (outside
    ``[-0.5, W - 0.5) x [-0.5, H - 0.5)``), gets an all-zero map and weight 0.

    Returns heatmaps (B, K, H, W) and weights (B, K), both in the keypoints' float dtype.
    """
    width, height = _pair(heatmap_size)
    stride_x, stride_y = _pair(stride)
    dtype = keypoints.dtype if keypoints.is_floating_point() else torch.float32
    # Filled on the device: a tensor made from a host list is a blocking copy that waits for the GPU.
    divisor = torch.empty(2, dtype=dtype, device=keypoints.device)
    divisor[0], divisor[1] = stride_x, stride_y
    centres = keypoints.to(dtype) / divisor
    inside = (
        (centres[..., 0] >= -0.5) & (centres[..., 0] < width - 0.5)
        & (centres[..., 1] >= -0.5) & (centres[..., 1] < height - 0.5)
    )  # fmt: skip
    weights = (visible.to(torch.bool) & inside).to(dtype)
    heatmaps = _gaussian_maps(centres, height, width, sigma) * weights[..., None, None]
    return heatmaps, weights


def heatmap_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer argmax of each map and the value there: (..., H, W) -> xy (..., 2) long, peak (...).

    posealign's one argmax decoding: the teacher's gate and occlusion sites, :func:`decode_heatmaps`,
    the released pseudo-labels and legacy PCK all read it. Ties go to the first pixel in row-major
    order (as ``np.argmax`` in the legacy ``get_max_preds``).
    """
    width = heatmaps.shape[-1]
    peak, index = heatmaps.flatten(-2).max(dim=-1)
    return torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=-1), peak


def gaussian_at_argmax(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """The released code's teacher rectification ``N(T(.))`` (``rectify`` in its utils.py); shape kept.

    Each map (..., H, W) becomes a unit-peak Gaussian (sigma in heatmap pixels) at its integer argmax,
    cut to the window of columns ``[int(x - 3 sigma), int(x + 3 sigma + 1))`` (rows likewise), zero
    outside it, with values ``exp(-((j - u - c)^2 + (i - v - c)^2) / (2 sigma^2))``, ``(u, v)`` the
    window's corner and ``c = floor((6 sigma + 1) / 2)`` (= the argmax for integer sigma). A map whose
    maximum is <= 0 puts its Gaussian at pixel (0, 0) (``get_max_preds_torch`` masks it there).
    """
    height, width = heatmaps.shape[-2:]
    xy, peak = heatmap_argmax(heatmaps.detach())
    xy = xy * (peak > 0).unsqueeze(-1)
    x, y = xy[..., 0], xy[..., 1]
    dtype = heatmaps.dtype if heatmaps.is_floating_point() else torch.float32
    radius = 3.0 * sigma
    centre_offset = float(int((2.0 * radius + 1.0) // 2))

    def axis(position: torch.Tensor, length: int) -> torch.Tensor:
        # int() of the released code truncates; positions are >= 0, so floor is the same.
        first = torch.floor(position.to(torch.float64) - radius)
        stop = torch.floor(position.to(torch.float64) + radius + 1.0)
        grid = torch.arange(length, device=heatmaps.device, dtype=torch.float64)
        offset = grid - (first[..., None] + centre_offset)
        inside = (grid >= first[..., None]) & (grid < stop[..., None])
        return torch.where(inside, torch.exp(-(offset**2) / (2.0 * sigma**2)), torch.zeros_like(offset))

    # exp(-(a + b)) = exp(-a) exp(-b): the 2-D window is the outer product of the two 1-D ones.
    return (axis(y, height)[..., :, None] * axis(x, width)[..., None, :]).to(dtype)


def decode_heatmaps(
    heatmaps: torch.Tensor, stride: Scale2 = 1.0, refine: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax decoding with the usual quarter-pixel refinement.

    heatmaps: (B, K, H, W) -> coords (B, K, 2) x, y in input pixels (heatmap coordinate * stride),
    confidence (B, K) = the map's maximum value.

    Refinement, per axis: when both neighbours of the argmax along that axis lie inside the map, move
    0.25 heatmap pixels towards the higher one (no move on a tie). HRNet/SimpleBaseline's
    ``get_final_preds`` instead refines both axes only when ``1 < x < W - 1`` and ``1 < y < H - 1``; the
    two agree away from the two outermost rows and columns.
    Maps whose maximum is <= 0 keep their argmax (pixel 0 for an all-zero map); read ``confidence``.
    """
    height, width = heatmaps.shape[-2:]
    xy, confidence = heatmap_argmax(heatmaps)
    x, y = xy.unbind(-1)
    coords = xy.to(heatmaps.dtype if heatmaps.is_floating_point() else torch.float32)
    if refine:
        flat = heatmaps.flatten(-2)

        def value_at(xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
            index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).unsqueeze(-1)
            return flat.gather(-1, index).squeeze(-1)

        dx = torch.sign(value_at(x + 1, y) - value_at(x - 1, y))
        dy = torch.sign(value_at(x, y + 1) - value_at(x, y - 1))
        dx = torch.where((x > 0) & (x < width - 1), dx, torch.zeros_like(dx))
        dy = torch.where((y > 0) & (y < height - 1), dy, torch.zeros_like(dy))
        coords = coords + 0.25 * torch.stack((dx, dy), dim=-1).to(coords.dtype)
    stride_x, stride_y = _pair(stride)
    coords = coords * torch.tensor([stride_x, stride_y], dtype=coords.dtype, device=coords.device)
    return coords, confidence


def crop_to_image(coords: torch.Tensor, crop_boxes: torch.Tensor, input_size: Size2) -> torch.Tensor:
    """Network-input coordinates -> original-image coordinates.

    coords: (B, K, 2) x, y in the input frame; crop_boxes: (B, 4) x, y, w, h of the (square) image
    region that was resized to ``input_size`` (``S`` or ``(W_in, H_in)``).
    ``image_xy = box_xy + coords * box_wh / input_size`` (per axis).
    """
    in_w, in_h = _pair(input_size)
    boxes = crop_boxes.to(coords.dtype)
    scale = boxes[:, 2:4] / torch.tensor([in_w, in_h], dtype=coords.dtype, device=coords.device)
    return boxes[:, None, 0:2] + coords * scale[:, None, :]
