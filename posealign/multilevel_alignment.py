"""The method in one place: student, teacher, discriminator and style transfer, and the one
``forward_backward`` that computes eq. 8 for a step. Source-only, oracle, the mean teacher, each
ablation and DAML are this class with levels switched on or off by the config.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.profiler import record_function

from posealign.alignment.feature_level import DomainDiscriminator, ReversalCap, grl_coefficient
from posealign.alignment.image_level import StyleTransfer, build_style_transfer, stylize_source_batch
from posealign.alignment.pose_level import calibrate_temperature
from posealign.alignment.pose_prior import plausible_poses
from posealign.augmentation import BatchAugmenter, ViewAugmentation, augment_together
from posealign.data.batch import Batch
from posealign.diagnostics import discriminator_accuracies, entropy_fractions, gradient_norms, shared_parameters
from posealign.heatmaps import heatmap_argmax, render_gaussian_heatmaps
from posealign.losses.adversarial import adversarial_loss
from posealign.losses.consistency import consistency_loss
from posealign.losses.information_maximization import information_maximization_loss
from posealign.losses.joints_mse import joints_mse_loss
from posealign.mean_teacher import confidence_gate, ema_update, make_teacher, occlude_keypoints, teacher_pseudo_labels
from posealign.models.simple_baseline import SimpleBaseline, build_pose_model
from posealign.models.unwrap import unwrap_model
from posealign.warps import inverse_warp_heatmaps, transform_keypoints


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf; the message names the term and the step."""


@dataclass
class TargetViews:
    """The target batch's part of an adaptation step (eq. 3). student_images: O(A_s(x_t))
    (B, 3, S, S) and student_matrices (B, 3, 3) their affine; pseudo_labels: N(A_w^-1 T(A_w x_t))
    (B, K, H, W) in the common frame, pseudo_label_valid (B, 1, H, W) where the weak view saw the
    pixel; gate (B, K) bool, the teacher's confident keypoints."""

    student_images: torch.Tensor
    student_matrices: torch.Tensor
    pseudo_labels: torch.Tensor
    pseudo_label_valid: torch.Tensor
    gate: torch.Tensor


def _style_transfer(image_cfg: DictConfig) -> StyleTransfer:
    """The image level's encoder and decoder as ``align.image`` names them."""
    options = {"encoder": image_cfg.encoder}
    if image_cfg.encoder != "patch":
        options.update(
            encoder_weights=image_cfg.encoder_weights,
            decoder_weights=image_cfg.decoder_weights,
            allow_random_weights=bool(image_cfg.allow_random_weights),
        )
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
        self.reversal_cap: ReversalCap | None = None
        if config.mean_teacher.enabled and config.align.feature.enabled:
            feature = config.align.feature
            self.discriminator = DomainDiscriminator(
                self.student.feature_channels, tuple(feature.channels), stride=int(feature.stride)
            )
            if feature.get("reversal_cap") is not None:
                self.reversal_cap = ReversalCap(float(feature.reversal_cap))
        needs_style = config.align.image.enabled and (config.mean_teacher.enabled or config.train.pretrain_image_level)
        self.style_transfer: StyleTransfer | None = _style_transfer(config.align.image) if needs_style else None
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
        # tau of the pose level: 1 (the paper's softmax), or set when stage 2 begins with
        # ``align.pose.calibrate_temperature_to`` (and then saved in checkpoints).
        self.pose_temperature = 1.0
        # The source's pose prior, fitted from its labels when stage 1 ends (and kept in checkpoints):
        # the source-free stage 2 gates pseudo-poses with it (``mean_teacher.pose_prior_quantile``).
        self.source_pose_prior: dict[str, torch.Tensor] | None = None

    # -- pieces of the step, each one equation ------------------------------------------------

    def stylize(self, source: Batch, target: Batch | None) -> torch.Tensor:
        """Image level (eq. 1): source images restyled as the paired target images with prob. p."""
        if self.style_transfer is None or target is None:
            return source.images
        image_cfg = self.config.align.image
        style = target.images
        if image_cfg.cache_target_stats:
            style = self.cached_style_statistics(target)
        stylized, _ = stylize_source_batch(self.style_transfer, source.images, style, float(image_cfg.probability))
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

    def target_views(self, target: Batch, augmented: list[tuple] | None = None) -> TargetViews:
        """Eq. 3's two views of the target batch: the teacher's pseudo-labels from the weak view
        A_w(x_t), in the common frame, and the student's strong view O(A_s(x_t)), occluded at the
        teacher's keypoints. ``augmented``: the weak and the strong view's ``BatchAugmenter``
        results when the step has made them already (warped with the source's views)."""
        mean_teacher = self.config.mean_teacher
        if augmented is None:
            with _region("augmentation"):
                augmented = augment_together(
                    [(self.weak_view, target.images, None, None), (self.strong_view, target.images, None, None)]
                )
        (weak_images, weak_matrices, _, _), (strong_images, strong_matrices, _, _) = augmented
        # Inference mode: no autograd bookkeeping at all. Its outputs are only read by the
        # functional ops below (never saved for a backward), which give ordinary tensors.
        with torch.inference_mode(), _region("teacher_forward"):
            teacher_heatmaps, _ = self.teacher(weak_images)
        with _region("warps_occlusion_gating"):
            with torch.no_grad():
                teacher_common, teacher_valid = inverse_warp_heatmaps(
                    teacher_heatmaps.float(), weak_matrices, self.stride
                )
                teacher_argmax, teacher_peaks = heatmap_argmax(teacher_common)
                pseudo_labels = teacher_pseudo_labels(teacher_common, mean_teacher.teacher_target, self.sigma)
                gate = confidence_gate(
                    teacher_peaks,
                    mean_teacher.gate,
                    float(mean_teacher.gate_quantile),
                    tuple(mean_teacher.gate_random_range),
                )
                quantile = mean_teacher.get("pose_prior_quantile")
                if quantile is not None and self.source_pose_prior is not None:
                    gate = (
                        gate & plausible_poses(self.source_pose_prior, teacher_argmax.float(), float(quantile))[:, None]
                    )
            keypoints_in_strong = transform_keypoints(
                teacher_argmax.to(teacher_common.dtype) * self.stride, strong_matrices
            )
            occluded, _ = occlude_keypoints(
                strong_images,
                keypoints_in_strong,
                teacher_peaks,
                float(mean_teacher.occlusion.probability),
                float(mean_teacher.occlusion.min_peak),
                self.occlusion_half_size,
            )
        return TargetViews(occluded, strong_matrices, pseudo_labels, teacher_valid, gate)

    def grl_coefficient(self, progress: float) -> float:
        """lambda of the gradient reversal at ``progress`` (0 -> 1) through stage 2."""
        feature = self.config.align.feature
        return grl_coefficient(feature.grl, progress, float(feature.grl_lambda))

    def pose_level_loss(self, student_common: torch.Tensor) -> torch.Tensor:
        """L_IM of eq. 6-7 on the student's target heatmaps in the common frame."""
        pose = self.config.align.pose
        return information_maximization_loss(
            student_common,
            pose.variant,
            float(pose.gate_threshold),
            self.pose_temperature,
            float(pose.diversity_weight),
        )

    def loss_weights(self) -> dict[str, float]:
        """l_c, l_adv and l_im of eq. 8, read from the config at each step."""
        config = self.config
        return {
            "loss_cons": float(config.mean_teacher.consistency_weight),
            "loss_adv": float(config.align.feature.weight),
            "loss_im": float(config.align.pose.weight),
        }

    # -- the step --------------------------------------------------------------------------------

    def forward_backward(
        self,
        labeled: Batch,
        target: Batch | None,
        stage: str,
        progress: float,
        step: int,
        scaler=None,
        autocast: AbstractContextManager | None = None,
        diagnose: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One step: the losses of eq. 8 under ``autocast`` (mixed precision), then backward outside
        it, as torchvision's references and timm do (through ``scaler`` under fp16).

        Returns the scalars to log as detached tensors; with ``diagnose`` in stage 2, also the gradient norm each
        weighted term sends into the student's shared parameters (:mod:`posealign.diagnostics`).
        """
        with autocast or nullcontext():
            total, logged = self.forward_losses(labeled, target, stage, progress, step)
        weights = {"loss_sup": 1.0, **self.loss_weights()}
        if self.reversal_cap is not None and "loss_adv" in logged:
            # Under torchrun each rank caps its own reversed gradient against its own L_sup's.
            scaled = scaler.scale if scaler is not None else (lambda term: term)
            with _region("reversal_cap"):
                logged.update(
                    self.reversal_cap.measure(
                        scaled(logged["loss_sup"]),
                        scaled(weights["loss_adv"] * logged["loss_adv"]),
                        shared_parameters(unwrap_model(self.student)),
                    )
                )
        if diagnose and stage == "adapt" and self.teacher is not None:
            with _region("diagnostics"):
                terms = {name: weights[name] * logged[name] for name in _TERMS if name in logged}
                # Absolute norms, so the fp16 scale is read (a host sync, on these logged steps only).
                scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
                logged.update(gradient_norms(terms, shared_parameters(unwrap_model(self.student)), scale))
        with _region("backward"):
            (scaler.scale(total) if scaler is not None else total).backward()
        # Detached tensors, read on the host only for the steps that are logged (:func:`to_floats`):
        # a read every step would make the host wait for the device at every step.
        return {name: value.detach() for name, value in logged.items()}

    def forward_losses(
        self, labeled: Batch, target: Batch | None, stage: str, progress: float, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's total loss (eq. 8 in stage 2, L_sup alone in stage 1) and the scalars to log."""
        config = self.config
        adapting = stage == "adapt" and self.teacher is not None
        if labeled is None:  # source-free: stage 2 on target images alone
            return self.target_losses(target, progress, step)
        with _region("image_level"):
            use_style = adapting or config.train.pretrain_image_level
            images = self.stylize(labeled, target) if use_style else labeled.images
        with _region("augmentation"):
            # A(x_s->t): the usual augmentation, keypoints moved with it; in stage 2 warped together
            # with the target's weak and strong views (eq. 3), drawn in that order.
            parts = [(self.augment, images, labeled.keypoints, labeled.visible)]
            if adapting:
                parts += [(self.weak_view, target.images, None, None), (self.strong_view, target.images, None, None)]
            augmented = augment_together(parts)
            views, _, keypoints, visible = augmented[0]
            heatmap_targets, weights = self.supervised_targets(keypoints, visible)

        if not adapting:
            with _region("student_forward"):
                heatmaps, _ = self.student(views)
            with _region("losses"):
                loss_sup = joints_mse_loss(heatmaps, heatmap_targets, weights)
                self._check_finite({"loss_sup": loss_sup}, step)
            return loss_sup, {"loss": loss_sup, "loss_sup": loss_sup}

        mean_teacher = config.mean_teacher
        views_t = self.target_views(target, augmented[1:])
        batch = views.shape[0]
        with _region("student_forward"):  # one call; per domain, each domain's own BatchNorm statistics
            domains = 2 if mean_teacher.student_batchnorm == "per_domain" else 1
            heatmaps, features = self.student(torch.cat([views, views_t.student_images]), domains=domains)
        student_common, loss_cons = self.consistency_term(heatmaps[batch:], views_t)
        # Eq. 8: L = L_sup + l_c L_cons + l_adv L_adv + l_im L_IM, the terms of the levels switched on.
        with _region("losses"):
            losses = {"loss_sup": joints_mse_loss(heatmaps[:batch], heatmap_targets, weights), "loss_cons": loss_cons}
        if self.discriminator is not None:
            with _region("discriminator_forward"):
                losses["loss_adv"], logits = adversarial_loss(
                    self.discriminator,
                    features[:batch],
                    features[batch:],
                    self.grl_coefficient(progress),
                    self.reversal_cap,
                )
        total, logged = self.stage2_total(losses, student_common, views_t, step)
        if self.discriminator is not None:
            logged.update(discriminator_accuracies(logits, batch))
        return total, logged

    def target_losses(self, target: Batch, progress: float, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 8 without a labeled batch (``train.supervised_on: none``): L = l_c L_cons + l_im L_IM,
        the levels that read target images only."""
        views_t = self.target_views(target)
        with _region("student_forward"):
            heatmaps, _ = self.student(views_t.student_images)
        student_common, loss_cons = self.consistency_term(heatmaps, views_t)
        return self.stage2_total({"loss_cons": loss_cons}, student_common, views_t, step)

    def consistency_term(self, heatmaps: torch.Tensor, views_t: TargetViews) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's strong-view target heatmaps in the common frame, and L_cons of eq. 3 there."""
        with _region("warps_occlusion_gating"):
            student_common, student_valid = inverse_warp_heatmaps(
                heatmaps.float(), views_t.student_matrices, self.stride
            )
        with _region("losses"):
            valid = student_valid & views_t.pseudo_label_valid
            loss_cons = consistency_loss(
                student_common,
                views_t.pseudo_labels,
                views_t.gate,
                valid,
                self.config.mean_teacher.consistency_mask,
            )
        return student_common, loss_cons

    def stage2_total(
        self, losses: dict[str, torch.Tensor], student_common: torch.Tensor, views_t: TargetViews, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adds the pose level's L_IM where it is on, weighs the terms (eq. 8), checks them, and the
        scalars to log."""
        if self.config.align.pose.enabled:
            with _region("losses"):
                losses["loss_im"] = self.pose_level_loss(student_common)
        with _region("losses"):
            total = _weighted_sum(losses, self.loss_weights())
            self._check_finite(losses, step)
        logged = {**losses, "loss": total, "gate_fraction": views_t.gate.float().mean()}
        # The pose level's entropies are logged for every mean-teacher row, on or off, to compare.
        logged.update(entropy_fractions(student_common, self.pose_temperature))
        return total, logged

    @torch.no_grad()
    def update_teacher(self) -> None:
        """Eq. 9, after the optimiser step."""
        if self.teacher is not None:
            with _region("ema_update"):
                momentum = float(self.config.mean_teacher.momentum)
                ema_update(self.teacher, unwrap_model(self.student), momentum, self.config.mean_teacher.bn_mode)

    def start_adaptation(self, source_images: torch.Tensor | None = None) -> None:
        """Stage 2 begins: the teacher starts as a copy of the pretrained student, and with
        ``align.pose.calibrate_temperature_to`` the pose level's tau is calibrated on its maps of
        ``source_images`` (no target image, no label)."""
        if self.teacher is not None:
            self.teacher.load_state_dict(unwrap_model(self.student).state_dict())
        if self.needs_temperature_calibration:
            if source_images is None:
                raise ValueError("align.pose.calibrate_temperature_to needs source images to calibrate on")
            self.pose_temperature = self.calibrate_pose_temperature(source_images)

    @property
    def needs_temperature_calibration(self) -> bool:
        pose = self.config.align.pose
        return bool(pose.enabled) and pose.get("calibrate_temperature_to") is not None

    @torch.no_grad()
    def calibrate_pose_temperature(self, source_images: torch.Tensor) -> float:
        """tau at which the pretrained network's maps of source images (eval mode: BatchNorm on its
        running statistics, nothing updated) have ``align.pose.calibrate_temperature_to`` of the
        maximum entropy of eq. 6's axis distributions."""
        network = self.teacher if self.teacher is not None else unwrap_model(self.student)
        was_training = network.training
        network.eval()
        heatmaps = torch.cat([network(chunk)[0].float() for chunk in source_images.split(32)])
        network.train(was_training)
        pose = self.config.align.pose
        return calibrate_temperature(heatmaps, float(pose.calibrate_temperature_to))

    def set_train_mode(self, adapting: bool = False) -> None:
        """Train mode for the step; with ``mean_teacher.student_batchnorm: frozen``, stage 2's student
        keeps normalising with the running statistics it was pretrained with (the source's)."""
        self.student.train()
        if adapting and self.config.mean_teacher.student_batchnorm == "frozen":
            for module in self.student.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        if self.discriminator is not None:
            self.discriminator.train()
        if self.teacher is not None:
            # The released code runs the teacher in train mode (BatchNorm on batch statistics).
            self.teacher.train(self.config.mean_teacher.bn_mode == "train_teacher")

    def evaluation_model(self) -> nn.Module:
        """Every reported number comes from the teacher when there is one (METHOD.md step 7)."""
        return self.teacher if self.teacher is not None else unwrap_model(self.student)

    def _check_finite(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Raise before backward, on every rank together: the others would wait for this rank's gradients."""
        # One read of the device for all terms; which term it was is looked up only when one is bad.
        all_finite = bool(torch.stack([value.detach().float() for value in losses.values()]).isfinite().all())
        bad = [] if all_finite else [name for name, value in losses.items() if not torch.isfinite(value).all()]
        if self.on_any_rank(bool(bad)):
            if bad:
                raise NonFiniteLossError(f"{bad[0]} is {losses[bad[0]].item()} at step {step}")
            raise NonFiniteLossError(f"a loss is not finite on another rank at step {step}")


# The weighted terms of eq. 8 whose gradients the diagnostics measure, in the order they are logged.
_TERMS = ("loss_sup", "loss_cons", "loss_adv", "loss_im")


def _region(name: str) -> record_function:
    """A named profiler region, ``posealign.<name>`` (benchmarks/step_cost.py adds them up)."""
    return record_function(f"posealign.{name}")


def _weighted_sum(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``loss_sup`` (when there is one) plus each other term times its weight, in the order of ``losses``."""
    total = None
    for name, value in losses.items():
        term = value if name == "loss_sup" else weights[name] * value
        total = term if total is None else total + term
    return total


def to_floats(scalars: dict[str, torch.Tensor]) -> dict[str, float]:
    """The logged scalars in one device transfer (each ``.item()`` would be a sync of its own)."""
    values = torch.stack([value.detach().float() for value in scalars.values()]).tolist()
    return dict(zip(scalars, values, strict=True))
