"""Train the AdaIN decoder ``g`` for the VGG-19 encoder on source and target images.

Each step: content c and style s images (source/target, or swapped at random as the released
code does), ``t = AdaIN(f(c), f(s))``, and ``g`` learns to invert it:
``L = w_c * MSE(f(g(t)), t) + w_s * sum_{relu1_1..relu4_1} [MSE(mu(phi(g(t))), mu(phi(s)))
+ MSE(sigma(phi(g(t))), sigma(phi(s)))]``. Adam, lr / (1 + lr_decay * step) as in pytorch-AdaIN.

Outputs in ``out``: ``decoder_last.pt`` (everything to resume), ``decoder.pt`` (the decoder, to use
as ``decoder_weights``), ``stylizations.png`` (rows: content, style, stylized), ``style_config.yaml``
and ``style_metrics.jsonl``.
"""

from __future__ import annotations

import glob
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from tqdm import tqdm

from posealign.alignment.image_level import StyleTransfer, adain, feature_statistics
from posealign.errors import UserError
from posealign.files import atomic_replace, atomic_torch_save, load_torch_file
from posealign.image_crops import IMAGE_EXTENSIONS, read_rgb_image
from posealign.models.style_decoder import AdaINDecoder
from posealign.models.style_encoders import VGG19Relu41Encoder
from posealign.style_training_config import StyleTrainingConfig

LAST_CHECKPOINT = "decoder_last.pt"


def list_images(spec: str) -> list[Path]:
    """A directory (searched recursively) or a glob pattern -> sorted image paths."""
    if os.path.isdir(spec):
        paths = [p for p in Path(spec).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    else:
        paths = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise UserError(f"{spec}: no images found; pass a directory of images or a glob such as 'dir/**/*.jpg'")
    return sorted(paths)


def load_training_image(path: Path, size: int, crop_position: tuple[float, float]) -> torch.Tensor:
    """Read RGB, resize the shorter side to ``size``, crop a size x size square -> (3, size, size) in [0, 1]."""
    image = read_rgb_image(path, missing_fix="remove it from the list", broken_fix="remove or replace the file")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.BILINEAR)
    left = int(crop_position[0] * (width - size + 1))
    top = int(crop_position[1] * (height - size + 1))
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _load_batch(paths, indices, positions, size, pool) -> torch.Tensor:
    jobs = [(paths[i], size, (float(x), float(y))) for i, (x, y) in zip(indices.tolist(), positions, strict=True)]
    images = pool.map(lambda job: load_training_image(*job), jobs) if pool else (load_training_image(*j) for j in jobs)
    return torch.stack(list(images))


def adain_decoder_losses(
    encoder: VGG19Relu41Encoder, decoder: torch.nn.Module, content: torch.Tensor, style: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Content loss MSE(f(g(t)), t) and style loss over relu1_1..relu4_1; returns (content, style, g(t))."""
    with torch.no_grad():
        style_levels = encoder.encode_levels(style)
        target = adain(encoder(content), style_levels[-1])
    decoded = decoder(target)
    decoded_levels = encoder.encode_levels(decoded)
    content_loss = F.mse_loss(decoded_levels[-1], target)
    style_loss = decoded.new_zeros(())
    for decoded_level, style_level in zip(decoded_levels, style_levels, strict=True):
        decoded_mean, decoded_std = feature_statistics(decoded_level)
        style_mean, style_std = feature_statistics(style_level)
        style_loss = style_loss + F.mse_loss(decoded_mean, style_mean) + F.mse_loss(decoded_std, style_std)
    return content_loss, style_loss, decoded


def save_stylization_grid(transfer: StyleTransfer, content: torch.Tensor, style: torch.Tensor, path: Path) -> None:
    """One PNG, rows: content, style, stylized (alpha = 1), each row named in a left margin."""
    from PIL import ImageDraw
    from torchvision.utils import make_grid

    stylized = transfer.stylize(content, style=style, alpha=1.0)
    grid = make_grid(torch.cat([content, style, stylized]).cpu(), nrow=content.shape[0], padding=2, pad_value=1.0)
    array = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    margin = 64
    sheet = Image.new("RGB", (array.shape[1] + margin, array.shape[0]), "white")
    sheet.paste(Image.fromarray(array), (margin, 0))
    draw = ImageDraw.Draw(sheet)
    row_height = array.shape[0] / 3
    for row, label in enumerate(("content", "style", "stylized")):
        draw.text((4, round((row + 0.5) * row_height) - 5), label, fill="black")
    with atomic_replace(path) as temporary:
        sheet.save(temporary, format="PNG")


def train_decoder(config: StyleTrainingConfig) -> Path:
    """Train (or resume) the decoder; returns the path of ``decoder.pt``."""
    if config.image_size % VGG19Relu41Encoder.downsample:
        raise UserError(f"--image-size {config.image_size}: must be a multiple of 8 for the VGG encoder")
    out = Path(config.out)
    last_path = out / LAST_CHECKPOINT
    if last_path.exists() and not config.resume:
        raise UserError(f"{last_path}: this directory already holds a run; pass --resume or choose another --out")
    if config.resume and not last_path.exists():
        raise UserError(f"{last_path}: nothing to resume; drop --resume or point --out at an earlier run")
    source_paths, target_paths = list_images(config.source), list_images(config.target)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    )

    torch.manual_seed(config.seed)
    if config.encoder_weights is None:
        warnings.warn(
            "style train with a random VGG encoder: pass --encoder-weights for a useful decoder", stacklevel=2
        )
    encoder = VGG19Relu41Encoder(config.encoder_weights).to(device)
    decoder = AdaINDecoder(encoder.output_channels).to(device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    sampler = torch.Generator().manual_seed(config.seed)
    start_step = 0
    if config.resume:
        checkpoint = load_torch_file(last_path, "style checkpoint", "start a new --out")
        try:
            decoder.load_state_dict(checkpoint["decoder"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            sampler.set_state(checkpoint["sampler_state"])
            start_step = int(checkpoint["step"])
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as error:
            raise UserError(f"{last_path}: cannot resume from it ({type(error).__name__}); start a new --out") from None
        if checkpoint["config"].get("encoder_weights") != config.encoder_weights:
            raise UserError(
                f"{last_path}: was trained with --encoder-weights {checkpoint['config'].get('encoder_weights')}; "
                "resume with the same encoder weights"
            )
    OmegaConf.save(OmegaConf.create(asdict(config)), out / "style_config.yaml")

    def state(step: int) -> dict:
        return {
            "decoder": decoder.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sampler_state": sampler.get_state(),
            "step": step,
            "config": asdict(config),
        }

    pool = ThreadPoolExecutor(config.workers) if config.workers > 0 else None
    step = start_step
    try:
        with open(out / "style_metrics.jsonl", "a") as metrics:
            progress = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="style train")
            for step in progress:
                for group in optimizer.param_groups:
                    group["lr"] = config.lr / (1.0 + config.lr_decay * step)
                batch = config.batch_size
                content_index = torch.randint(len(source_paths), (batch,), generator=sampler)
                style_index = torch.randint(len(target_paths), (batch,), generator=sampler)
                positions = torch.rand(2, batch, 2, generator=sampler)
                swap = bool(torch.rand((), generator=sampler) < 0.5) and config.bidirectional
                content = _load_batch(source_paths, content_index, positions[0], config.image_size, pool)
                style = _load_batch(target_paths, style_index, positions[1], config.image_size, pool)
                if swap:
                    content, style = style, content
                decoder.train()
                content_loss, style_loss, _ = adain_decoder_losses(
                    encoder, decoder, content.to(device), style.to(device)
                )
                loss = config.content_weight * content_loss + config.style_weight * style_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done = step + 1
                if done % config.log_every == 0 or done == config.steps:
                    record = {"step": done, "loss": loss.item(), "content": content_loss.item()}
                    record |= {"style": style_loss.item(), "lr": optimizer.param_groups[0]["lr"], "time": time.time()}
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    progress.set_postfix(loss=f"{record['loss']:.3f}")
                if done % config.save_every == 0:
                    atomic_torch_save(state(done), last_path)
            step = max(start_step, config.steps)
        atomic_torch_save(state(step), last_path)
    finally:
        if pool is not None:
            pool.shutdown()

    atomic_torch_save({"decoder": decoder.state_dict(), "step": step, "config": asdict(config)}, out / "decoder.pt")
    examples = min(config.grid_examples, len(source_paths), len(target_paths))
    centre = torch.full((examples, 2), 0.5)
    index = torch.arange(examples)
    transfer = StyleTransfer(encoder, decoder)
    save_stylization_grid(
        transfer,
        _load_batch(source_paths, index, centre, config.image_size, None).to(device),
        _load_batch(target_paths, index, centre, config.image_size, None).to(device),
        out / "stylizations.png",
    )
    return out / "decoder.pt"
