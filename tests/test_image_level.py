"""Image level (eq. 1-2): AdaIN, the encoders and their weight layouts, stylization, decoder training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from posealign.alignment.image_level import (
    StyleTransfer,
    adain,
    adain_with_statistics,
    build_style_transfer,
    feature_statistics,
    stylize_source_batch,
)
from posealign.cli import main
from posealign.errors import UserError
from posealign.models.style_decoder import AdaINDecoder, load_decoder_weights
from posealign.models.style_encoders import (
    CAFFE_BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InvertiblePatchEncoder,
    VGG19Relu41Encoder,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _channel_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)


def test_adain_output_has_the_style_statistics():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 8, 6, 7, generator=generator) * 3 + 1
    style = torch.randn(2, 8, 5, 9, generator=generator) * 0.5 - 2
    out = adain(content, style)
    out_mean, out_std = _channel_mean_std(out)
    style_mean, style_std = _channel_mean_std(style)
    torch.testing.assert_close(out_mean, style_mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_std, style_std, atol=1e-4, rtol=0)
    # The cached-statistics variant is the same function.
    torch.testing.assert_close(adain_with_statistics(content, *feature_statistics(style)), out)


@pytest.mark.parametrize("basis", ["dct", "random"])
def test_patch_encoder_round_trips_exactly(basis):
    encoder = InvertiblePatchEncoder(patch_size=4, basis=basis)
    images = torch.rand(3, 3, 32, 24)
    features = encoder(images)
    assert features.shape == (3, encoder.output_channels, 32 // encoder.downsample, 24 // encoder.downsample)
    torch.testing.assert_close(encoder.decoder()(features), images, atol=2e-6, rtol=0)
    torch.testing.assert_close(encoder.mixing @ encoder.mixing.T, torch.eye(48), atol=1e-6, rtol=0)


def _smooth_reddish_and_textured_bluish(batch: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, size)
    content = torch.stack([0.7 + 0.2 * ramp[None, :].expand(size, size), 0.3 + 0.1 * ramp[:, None].expand(size, size)])
    content = torch.cat([content, torch.full((1, size, size), 0.2)])[None].repeat(batch, 1, 1, 1)
    style = torch.tensor([0.2, 0.3, 0.7])[None, :, None, None] + 0.1 * torch.randn(
        batch, 3, size, size, generator=generator
    )
    return content, style.clamp(0, 1)


def test_patch_stylization_moves_colour_toward_the_style_and_alpha_zero_keeps_content():
    transfer = build_style_transfer({"encoder": "patch", "patch_size": 4})
    content, style = _smooth_reddish_and_textured_bluish()
    stylized = transfer.stylize(content, style=style, alpha=1.0)
    assert stylized.shape == content.shape and stylized.min() >= 0 and stylized.max() <= 1
    distance_before = (_channel_mean_std(content)[0] - _channel_mean_std(style)[0]).norm(dim=1)
    distance_after = (_channel_mean_std(stylized)[0] - _channel_mean_std(style)[0]).norm(dim=1)
    assert (distance_after < 0.5 * distance_before).all()
    # Texture moves too: the flat-ish content gains the style's high-frequency spread.
    assert (stylized.diff(dim=-1).abs().mean() > 3 * content.diff(dim=-1).abs().mean()).item()
    torch.testing.assert_close(transfer.stylize(content, style=style, alpha=0.0), content, atol=1e-5, rtol=0)
    # Per-sample alpha, and cached target statistics give the same images as target images.
    alpha = torch.tensor([0.0, 1.0])
    mixed = transfer.stylize(content, style_stats=transfer.style_statistics(style), alpha=alpha)
    torch.testing.assert_close(mixed[0], content[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], stylized[1], atol=1e-5, rtol=0)


def test_stylize_source_batch_draws_one_coin_and_one_alpha_per_batch():
    transfer = build_style_transfer({"encoder": "patch"})
    content, style = _smooth_reddish_and_textured_bluish(batch=4)
    images, stylized = stylize_source_batch(transfer, content, style, probability=0.0, generator=torch.Generator())
    assert stylized is False and images is content
    # The released code's draw: a coin, then one alpha for every image of the batch.
    generator = torch.Generator().manual_seed(1)
    images, stylized = stylize_source_batch(transfer, content, style, probability=1.0, generator=generator)
    coin, alpha = torch.rand(2, generator=torch.Generator().manual_seed(1))
    assert stylized is True and coin < 1.0
    by_hand = transfer.stylize(content, style=style, alpha=alpha.expand(4))
    torch.testing.assert_close(images, by_hand)
    # Cached target statistics give the same images as the target images.
    stats = transfer.style_statistics(style)
    cached, _ = stylize_source_batch(transfer, content, stats, 1.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(cached, images)
    with torch.enable_grad():
        assert not stylize_source_batch(transfer, content.requires_grad_(), style, 1.0)[0].requires_grad


# --- VGG-19: torchvision layout vs the AdaIN release's vgg_normalised.pth layout ---------------------------


def _release_vgg_sequential() -> nn.Sequential:
    """The release's ``vgg`` (pytorch-AdaIN net.py, converted from Lua), written out independently."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    for stage, (channels_in, channels_out, convs) in enumerate(
        [(3, 64, 2), (64, 128, 2), (128, 256, 4), (256, 512, 4), (512, 512, 4)]
    ):
        for i in range(convs):
            layers += [
                nn.ReflectionPad2d((1, 1, 1, 1)),
                nn.Conv2d(channels_in if i == 0 else channels_out, channels_out, (3, 3)),
                nn.ReLU(),
            ]
        if stage < 4:
            layers.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
    return nn.Sequential(*layers)


def _torchvision_vgg_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    features = make_layers(cfgs["E"])  # == torchvision.models.vgg19().features, without the classifier
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(module.bias, std=0.1)
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def _release_state_from_torchvision(tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights in the release layout computing the same function as the torchvision weights.

    Release: y = 255 * BGR(x) - caffe_mean (the 1x1 conv), then conv1_1 on y. Torchvision: conv1_1 on
    z_c = (x_c - m_c) / s_c. With x_c = (y_{2-c} + M_{2-c}) / 255, conv1_1 on z equals a conv on y with
    W'[:, 2-c] = W[:, c] / (255 s_c) and b' = b + sum_c sum_kernel W[:, c] (M_{2-c} - 255 m_c) / (255 s_c).
    Reflection padding commutes with this per-pixel affine map, so the features agree everywhere.
    """
    net = _release_vgg_sequential()
    state = net.state_dict()
    release_convs = [i for i, m in enumerate(net) if isinstance(m, nn.Conv2d)][1:]
    tv_convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    for release_index, tv_index in zip(release_convs, tv_convs, strict=True):
        state[f"{release_index}.weight"] = tv_state[f"features.{tv_index}.weight"].clone()
        state[f"{release_index}.bias"] = tv_state[f"features.{tv_index}.bias"].clone()
    preprocessing = torch.zeros(3, 3, 1, 1)
    for c in range(3):
        preprocessing[2 - c, c] = 255.0
    state["0.weight"], state["0.bias"] = preprocessing, -torch.tensor(CAFFE_BGR_MEAN)
    weight, bias = tv_state["features.0.weight"], tv_state["features.0.bias"]
    new_weight, new_bias = torch.empty_like(weight), bias.clone()
    for c in range(3):
        scale = 255.0 * IMAGENET_STD[c]
        new_weight[:, 2 - c] = weight[:, c] / scale
        new_bias += weight[:, c].sum(dim=(1, 2)) * (CAFFE_BGR_MEAN[2 - c] - 255.0 * IMAGENET_MEAN[c]) / scale
    state["2.weight"], state["2.bias"] = new_weight, new_bias
    net.load_state_dict(state, strict=True)  # the file we write is exactly the release's structure
    return net.state_dict()


def test_torchvision_and_release_layouts_load_strictly_and_agree(tmp_path):
    tv_state = _torchvision_vgg_state()
    tv_path, release_path, cut_path = tmp_path / "vgg19_tv.pth", tmp_path / "vgg_normalised.pth", tmp_path / "cut.pth"
    torch.save(tv_state, tv_path)
    release_state = _release_state_from_torchvision(tv_state)
    torch.save(release_state, release_path)
    torch.save({k: v for k, v in release_state.items() if int(k.split(".")[0]) < 31}, cut_path)

    from_tv = VGG19Relu41Encoder(str(tv_path))
    from_release = VGG19Relu41Encoder(str(release_path))
    assert (from_tv.weights_layout, from_release.weights_layout) == ("torchvision", "release")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    features_tv, features_release = from_tv(images), from_release(images)
    assert features_tv.shape == (2, 512, 4, 4) and features_tv.std() > 1e-3
    torch.testing.assert_close(features_release, features_tv, rtol=1e-4, atol=1e-4 * features_tv.abs().max().item())
    torch.testing.assert_close(VGG19Relu41Encoder(str(cut_path))(images), features_release)
    # With zero padding the encoder is torchvision's own VGG-19 on ImageNet-normalised input, to relu4_1.
    torchvision_features = make_layers(cfgs["E"])
    torchvision_features.load_state_dict({k.removeprefix("features."): v for k, v in tv_state.items()})
    normalised = (images - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    zero_padded = VGG19Relu41Encoder(str(tv_path), padding_mode="zeros")
    torch.testing.assert_close(zero_padded(images), torchvision_features[:21](normalised), rtol=1e-4, atol=1e-5)
    levels = from_tv.encode_levels(images)
    assert [level.shape[1] for level in levels] == [64, 128, 256, 512]
    torch.testing.assert_close(levels[-1], features_tv)
    assert not any(p.requires_grad for p in from_tv.parameters())


def test_wrong_weight_files_raise_user_error_naming_the_file(tmp_path):
    not_vgg = tmp_path / "not_vgg.pth"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, not_vgg)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    truncated = tmp_path / "tv_missing.pth"
    tv_state = {k: torch.zeros(v.shape) for k, v in make_layers(cfgs["E"]).state_dict().items()}
    tv_state.pop("34.bias")
    torch.save(tv_state, truncated)
    for path in (not_vgg, text, truncated, tmp_path / "absent.pth"):
        with pytest.raises(UserError, match=path.name):
            VGG19Relu41Encoder(str(path))
    with pytest.raises(UserError, match="not_vgg.pth"):
        load_decoder_weights(AdaINDecoder(), not_vgg)


def test_decoder_matches_the_release_layout_and_builds_from_config(tmp_path):
    release_decoder = nn.Sequential(
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(512, 256, (3, 3)), nn.ReLU(), nn.Upsample(scale_factor=2)],
        *[m for _ in range(3) for m in (nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU())],
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 128, (3, 3)), nn.ReLU(), nn.Upsample(scale_factor=2)],
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 128, (3, 3)), nn.ReLU()],
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 64, (3, 3)), nn.ReLU(), nn.Upsample(scale_factor=2)],
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 64, (3, 3)), nn.ReLU()],
        *[nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 3, (3, 3))],
    )
    path = tmp_path / "decoder.pth"
    torch.save(release_decoder.state_dict(), path)
    # The encoder stays random here (opted in): this test is about the decoder's layout.
    transfer = build_style_transfer({"encoder": "vgg19", "decoder_weights": str(path), "allow_random_weights": True})
    assert isinstance(transfer, StyleTransfer)
    torch.testing.assert_close(transfer.decoder[1].weight, release_decoder[1].weight)
    content, style = torch.rand(2, 3, 36, 28), torch.rand(2, 3, 32, 32)  # sides not multiples of 8: cropped back
    assert transfer.stylize(content, style=style, alpha=torch.rand(2)).shape == content.shape
    with pytest.raises(UserError, match="unknown key"):
        build_style_transfer({"encoder": "patch", "patchsize": 4})


def test_vgg19_without_weight_files_refuses_unless_opted_in(tmp_path, capsys):
    from posealign.cli import main

    for missing in ({}, {"encoder_weights": "vgg.pth"}, {"decoder_weights": "decoder.pth"}):
        with pytest.raises(UserError, match="random networks") as error:
            build_style_transfer({"encoder": "vgg19", **missing})
        assert "posealign style train" in str(error.value) and "allow_random_weights" in str(error.value)
    assert isinstance(build_style_transfer({"encoder": "vgg19", "allow_random_weights": True}), StyleTransfer)
    # A paper task with the default image level: one line, exit 2, before any folder is written.
    roots = [f"data.source_root={tmp_path}", f"data.target_root={tmp_path}"]
    out = tmp_path / "run"
    assert main(["train", "--preset", "daml", "--task", "surreal2lsp", "--out", str(out), *roots]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "align.image.encoder_weights and align.image.decoder_weights unset" in err[0]
    assert not out.exists()


# --- posealign style train -------------------------------------------------------------------------------


def _write_images(folder, count, colour, seed):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(np.array(colour) + rng.normal(0, 30, (40, 36, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")


def test_style_train_writes_outputs_and_resumes(tmp_path, capsys):
    _write_images(tmp_path / "source", 3, (200, 80, 60), seed=0)
    _write_images(tmp_path / "target", 3, (60, 90, 200), seed=1)
    out = tmp_path / "run"
    common = ["style", "train", "--source", str(tmp_path / "source"), "--target", str(tmp_path / "target" / "*.png")]
    common += ["--out", str(out), "--batch-size", "2", "--image-size", "32", "--workers", "0", "--device", "cpu"]
    with pytest.warns(UserWarning, match="random VGG"):
        assert main([*common, "--steps", "3"]) == 0
    assert (out / "decoder.pt").is_file() and (out / "stylizations.png").is_file()
    assert Image.open(out / "stylizations.png").size[1] == 3 * 32 + 4 * 2  # rows: content, style, stylized
    assert torch.load(out / "decoder_last.pt", weights_only=True)["step"] == 3
    load_decoder_weights(AdaINDecoder(), out / "decoder.pt")

    assert main([*common, "--steps", "4"]) == 2  # the directory holds a run: --resume or another --out
    assert "--resume" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert main([*common, "--steps", "5", "--resume"]) == 0
    assert torch.load(out / "decoder_last.pt", weights_only=True)["step"] == 5
    steps = [json.loads(line)["step"] for line in (out / "style_metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 5]


def test_style_train_names_a_corrupt_image(tmp_path, capsys):
    _write_images(tmp_path / "source", 1, (200, 80, 60), seed=0)
    _write_images(tmp_path / "target", 1, (60, 90, 200), seed=1)
    (tmp_path / "target" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    arguments = ["style", "train", "--source", str(tmp_path / "source"), "--target", str(tmp_path / "target")]
    arguments += ["--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4", "--image-size", "32"]
    with pytest.warns(UserWarning):
        assert main([*arguments, "--workers", "0", "--device", "cpu"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
