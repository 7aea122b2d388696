"""The method in one place: student, teacher, discriminator and style transfer, and the one
``forward_backward`` that computes eq. 8 for a step. Source-only, oracle, the mean teacher, each
ablation and DAML are this class with levels switched on or off by the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.profiler import record_function

from posealign.alignment.feature_level import DomainDiscriminator, adversarial_loss, grl_coefficient
from posealign.alignment.image_level import StyleTransfer, build_style_transfer, stylize_source_batch
from posealign.alignment.pose_level import information_maximization_loss
from posealign.augmentation import BatchAugmenter, ViewAugmentation
from posealign.heatmaps import render_gaussian_heatmaps
from posealign.losses.consistency import consistency_loss
from posealign.losses.joints_mse import joints_mse_loss
from posealign.mean_teacher import confidence_gate, ema_update, make_teacher, occlude_keypoints, teacher_pseudo_labels
from posealign.models.simple_baseline import SimpleBaseline, build_pose_model
from posealign.warps import inverse_warp_heatmaps, transform_keypoints


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf; the message names the term and the step."""


@dataclass
class Batch:
    """A collated batch on the training device: images in [0, 1] (B, 3, S, S), keypoints (B, K, 2)
    in crop pixels, visible (B, K) bool, dataset indices (B,)."""

    images: torch.Tensor
    keypoints: torch.Tensor
    visible: torch.Tensor
    indices: torch.Tensor


def build_style_transfer_from_config(image_cfg: DictConfig) -> StyleTransfer:
    options = {"encoder": image_cfg.encoder, "patch_size": int(image_cfg.patch_size)}
    if image_cfg.encoder != "patch":
        options.update(encoder_weights=image_cfg.encoder_weights, decoder_weights=image_cfg.decoder_weights)
    return build_style_transfer(options)


class MultiLevelAlignment(nn.Module):
    """Owns the networks of a run; ``forward_backward`` runs one training step's losses and backward.

    Stage ``pretrain`` (and the whole of source_only / oracle): L_sup on the labeled domain, with the
    image level when ``train.pretrain_image_level``. Stage ``adapt``: eq. 8,
    L = L_sup + l_c L_cons + l_adv L_adv + l_im L_IM, with the levels the config enables.
    """

    def __init__(
        self, config: DictConfig, num_keypoints: int, on_any_rank: Callable[[bool], bool] = lambda flag: flag
    ) -> None:
        super().__init__()
        self.config = config
        # Under torchrun: true everywhere when true on one rank, so a NaN on one rank stops them all.
        self.on_any_rank = on_any_rank
        self.student: SimpleBaseline = build_pose_model(config.model, num_keypoints)
        self.teacher: SimpleBaseline | None = make_teacher(self.student) if config.mean_teacher.enabled else None
        self.discriminator: DomainDiscriminator | None = None
        if config.mean_teacher.enabled and config.align.feature.enabled:
            feature = config.align.feature
            self.discriminator = DomainDiscriminator(
                self.student.feature_channels, tuple(feature.channels), stride=int(feature.stride)
            )
        needs_style = config.align.image.enabled and (config.mean_teacher.enabled or config.train.pretrain_image_level)
        self.style_transfer: StyleTransfer | None = (
            build_style_transfer_from_config(config.align.image) if needs_style else None
        )
        self.style_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        size = int(config.data.image_size)
        self.image_size = size
        self.heatmap_size = int(config.data.heatmap_size)
        self.stride = size / self.heatmap_size
        self.sigma = float(config.data.sigma)
        self.augment = BatchAugmenter(ViewAugmentation.from_config(config.augment), size)
        self.weak_view = BatchAugmenter(ViewAugmentation.from_config(config.mean_teacher.weak_view), size)
        self.strong_view = BatchAugmenter(ViewAugmentation.from_config(config.mean_teacher.strong_view), size)
        self.occlusion_half_size = max(1, round(config.mean_teacher.occlusion.half_size * size / 256))

    # -- pieces of the step, each one equation ------------------------------------------------

    def stylize(self, source: Batch, target: Batch | None) -> torch.Tensor:
        """Image level (eq. 1): source images restyled as the paired target images with prob. p."""
        if self.style_transfer is None or target is None:
            return source.images
        image_cfg = self.config.align.image
        style = target.images
        if image_cfg.cache_target_stats:
            style = self.cached_style_statistics(target)
        stylized, _ = stylize_source_batch(
            self.style_transfer,
            source.images,
            style,
            float(image_cfg.probability),
            granularity="sample" if image_cfg.per_sample else "batch",
        )
        return stylized

    def cached_style_statistics(self, target: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Style statistics of each target image, computed the first time the image is seen.

        They are taken on the un-augmented crop: the style of an image, not of one view of it.
        """
        missing = [i for i, index in enumerate(target.indices.tolist()) if index not in self.style_cache]
        if missing:
            means, stds = self.style_transfer.style_statistics(target.images[missing])
            for row, i in enumerate(missing):
                self.style_cache[int(target.indices[i])] = (means[row], stds[row])
        entries = [self.style_cache[int(i)] for i in target.indices.tolist()]
        return torch.stack([m for m, _ in entries]), torch.stack([s for _, s in entries])

    def supervised_targets(self, keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return render_gaussian_heatmaps(keypoints, visible, self.heatmap_size, self.sigma, self.stride)

    # -- the step --------------------------------------------------------------------------------

    def forward_backward(
        self, labeled: Batch, target: Batch | None, stage: str, progress: float, step: int, scaler=None
    ) -> dict[str, float]:
        """One step's losses, summed as eq. 8 and back-propagated (through ``scaler`` under fp16).

        Returns the logged scalars.
        """
        config = self.config
        adapting = stage == "adapt" and self.teacher is not None
        use_style = adapting or config.train.pretrain_image_level
        with record_function("posealign.image_level"):
            images = self.stylize(labeled, target) if use_style else labeled.images
        with record_function("posealign.augmentation"):
            # A(x_s->t): the usual augmentation, keypoints moved with it.
            views, _, keypoints, visible = self.augment(images, labeled.keypoints, labeled.visible)
            heatmap_targets, weights = self.supervised_targets(keypoints, visible)
        logs: dict[str, float] = {}

        if not adapting:
            with record_function("posealign.student_forward"):
                heatmaps, _ = self.student(views)
            with record_function("posealign.losses"):
                loss_sup = joints_mse_loss(heatmaps, heatmap_targets, weights)
                self._check_finite({"loss_sup": loss_sup}, step)
            with record_function("posealign.backward"):
                _backward(loss_sup, scaler)
            return {"loss": loss_sup.item(), "loss_sup": loss_sup.item()}

        mt = config.mean_teacher
        # Teacher on the weak view A_w(x_t), no autograd; predictions back to the common frame.
        with record_function("posealign.augmentation"):
            weak_images, weak_matrices, _, _ = self.weak_view(target.images)
            strong_images, strong_matrices, _, _ = self.strong_view(target.images)
        with torch.no_grad(), record_function("posealign.teacher_forward"):
            teacher_heatmaps, _ = self.teacher(weak_images)
        with record_function("posealign.warps_occlusion_gating"):
            with torch.no_grad():
                teacher_common, teacher_valid = inverse_warp_heatmaps(
                    teacher_heatmaps.float(), weak_matrices, self.stride
                )
                teacher_peaks, teacher_argmax = _peaks_and_locations(teacher_common)
                pseudo_labels = teacher_pseudo_labels(teacher_common, mt.teacher_target, self.sigma)
                gate = confidence_gate(teacher_peaks, mt.gate, float(mt.gate_quantile), tuple(mt.gate_random_range))
            # Student on the strong, occluded view O(A_s(x_t)); occlusion at the teacher's keypoints.
            keypoints_in_strong = transform_keypoints(teacher_argmax * self.stride, strong_matrices)
            occluded, _ = occlude_keypoints(
                strong_images,
                keypoints_in_strong,
                teacher_peaks,
                float(mt.occlusion.probability),
                float(mt.occlusion.min_peak),
                self.occlusion_half_size,
            )
        # One student forward for both domains.
        batch = views.shape[0]
        with record_function("posealign.student_forward"):
            heatmaps, features = self.student(torch.cat([views, occluded]))
        source_heatmaps, target_heatmaps = heatmaps[:batch], heatmaps[batch:]
        with record_function("posealign.warps_occlusion_gating"):
            student_common, student_valid = inverse_warp_heatmaps(target_heatmaps.float(), strong_matrices, self.stride)
        with record_function("posealign.losses"):
            loss_sup = joints_mse_loss(source_heatmaps, heatmap_targets, weights)
            loss_cons = consistency_loss(student_common, pseudo_labels, gate, student_valid & teacher_valid)
            losses = {"loss_sup": loss_sup, "loss_cons": loss_cons}
            total = loss_sup + float(mt.consistency_weight) * loss_cons

        if self.discriminator is not None:
            feature = config.align.feature
            coefficient = grl_coefficient(feature.grl, progress, float(feature.grl_lambda))
            with record_function("posealign.discriminator_forward"):
                loss_adv, accuracy = adversarial_loss(
                    self.discriminator, features[:batch], features[batch:], coefficient
                )
            losses["loss_adv"] = loss_adv
            total = total + float(feature.weight) * loss_adv
        if config.align.pose.enabled:
            pose = config.align.pose
            with record_function("posealign.losses"):
                loss_im = information_maximization_loss(student_common, pose.variant, float(pose.gate_threshold))
            losses["loss_im"] = loss_im
            total = total + float(pose.weight) * loss_im

        with record_function("posealign.losses"):
            self._check_finite(losses, step)
        with record_function("posealign.backward"):
            _backward(total, scaler)
        # One transfer of all logged scalars (each .item() would be a device sync of its own).
        scalars = {name: value.detach() for name, value in losses.items()}
        scalars["loss"], scalars["gate_fraction"] = total.detach(), gate.float().mean()
        if self.discriminator is not None:
            scalars["discriminator_accuracy"] = accuracy
        values = torch.stack([v.float() for v in scalars.values()]).tolist()
        logs.update(zip(scalars, values, strict=True))
        return logs

    @torch.no_grad()
    def update_teacher(self) -> None:
        """Eq. 9, after the optimiser step."""
        if self.teacher is not None:
            with record_function("posealign.ema_update"):
                momentum = float(self.config.mean_teacher.momentum)
                ema_update(self.teacher, _unwrap(self.student), momentum, self.config.mean_teacher.bn_mode)

    def start_adaptation(self) -> None:
        """Stage 2 begins: the teacher starts as a copy of the pretrained student."""
        if self.teacher is not None:
            self.teacher.load_state_dict(_unwrap(self.student).state_dict())

    def set_train_mode(self) -> None:
        self.student.train()
        if self.discriminator is not None:
            self.discriminator.train()
        if self.teacher is not None:
            # The released code runs the teacher in train mode (BatchNorm on batch statistics).
            self.teacher.train(self.config.mean_teacher.bn_mode == "train_teacher")

    def evaluation_model(self) -> nn.Module:
        """Every reported number comes from the teacher when there is one (METHOD.md step 7)."""
        return self.teacher if self.teacher is not None else _unwrap(self.student)

    def _check_finite(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Raise before backward, on every rank together: the others would wait for this rank's gradients."""
        bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
        if self.on_any_rank(bool(bad)):
            if bad:
                raise NonFiniteLossError(f"{bad[0]} is {losses[bad[0]].item()} at step {step}")
            raise NonFiniteLossError(f"a loss is not finite on another rank at step {step}")


def _peaks_and_locations(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak value (B, K) and integer argmax (B, K, 2) x, y on the heatmap grid."""
    width = heatmaps.shape[-1]
    peaks, index = heatmaps.flatten(2).max(dim=2)
    locations = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return peaks, locations


def _backward(loss: torch.Tensor, scaler) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module
