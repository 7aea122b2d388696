"""The values of a resolved config, checked before a command writes anything.

``load_config`` checks that every key exists and has the right kind; ``check_values`` checks what
the values mean: step counts, names of keypoint sets and datasets, devices, AMP modes, data roots
and whether ImageNet weights can be had. Every problem is one ``UserError`` line naming the key and
the fix, raised before a run folder or a benchmark exists, so the corrected command starts clean.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posealign.errors import UserError

KEYPOINT_SET_FROM_FILE = "from_file"  # data.keypoint_set: the COCO category of the files defines it
AMP_MODES = ("off", "bf16", "fp16")


def check_values(config: DictConfig, *, check_roots: bool = True, check_machine: bool = True) -> None:
    """Raise a one-line ``UserError`` for the first value the training cannot use.

    check_roots: also require each dataset root to be a folder (off while a benchmark that will be
    generated there does not exist yet).
    check_machine: also check what this machine must provide: a visible GPU for ``run.device=cuda``
    and the ImageNet weights (downloaded when absent). ``posealign config`` only shows a config.
    """
    _check_counts(config)
    _check_keypoint_set(config)
    _check_run_settings(config, check_machine)
    _check_method_choices(config)
    _check_combinations(config)
    for key, spec in dataset_entries(config):
        _check_dataset_entry(config, key, spec, check_roots)
    if check_roots:
        _check_init(config)
    if check_machine:
        _check_pretrained(config)


def dataset_entries(config: DictConfig) -> list[tuple[str, DictConfig]]:
    """(config key, entry) of every dataset a training reads: source, target, each data.eval split."""
    # A source-free run (train.supervised_on: none) reads no source split.
    entries = [("data.target", config.data.target)]
    if config.train.supervised_on != "none":
        entries.insert(0, ("data.source", config.data.source))
    evaluated = (config.data.get("eval") or {}).items()
    entries += [(f"data.eval.{name}", spec) for name, spec in evaluated if not _source_free_skips(config, name)]
    return [(key, spec) for key, spec in entries if spec is not None]


def _source_free_skips(config: DictConfig, eval_name: str) -> bool:
    """A source-free run evaluates no ``data.eval.source`` split (engine.data.evaluated_splits)."""
    return config.train.supervised_on == "none" and eval_name == "source"


def _check_counts(config: DictConfig) -> None:
    minimums = {
        "train.pretrain_steps": 0,
        "train.adapt_steps": 0,
        "train.batch_size": 1,
        "run.log_every": 1,
        "run.checkpoint_every": 1,
        "run.eval_every": 0,
        "run.num_workers": 0,
        "data.image_size": 8,
        "data.heatmap_size": 1,
    }
    for key, minimum in minimums.items():
        section, name = key.split(".")
        value = config[section][name]
        if int(value) < minimum:
            raise UserError(f"{key}={value}: must be at least {minimum}")
    for key in ("optim.lr", "data.sigma"):
        section, name = key.split(".")
        if float(config[section][name]) <= 0:
            raise UserError(f"{key}={config[section][name]}: must be positive")
    nullable_positive = (
        ("optim.adapt_lr", "learning rate"),
        ("align.feature.reversal_cap", "ratio"),
    )
    for key, what in nullable_positive:
        value = OmegaConf.select(config, key)
        number = _as_float(value)
        if value is not None and (number is None or number <= 0):
            raise UserError(f"{key}={value}: must be a positive {what} (or null)")
    if int(config.train.pretrain_steps) + int(config.train.adapt_steps) == 0:
        raise UserError("train.pretrain_steps and train.adapt_steps are both 0: nothing to train")


def _as_float(value) -> float | None:
    """``value`` as a number: YAML reads 1e-4 (no dot) as a string, which a nullable key keeps."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# The method's named choices (configs/default.yaml describes each).
METHOD_CHOICES = {
    "mean_teacher.bn_mode": ("train_teacher", "copy", "average"),
    "mean_teacher.student_batchnorm": ("per_domain", "joint", "frozen"),
    "train.supervised_on": ("source", "target", "none"),
    "mean_teacher.teacher_target": ("gaussian", "normalize"),
    "mean_teacher.gate": ("quantile", "random"),
    "mean_teacher.consistency_mask": ("valid_pixels", "none", "zero_outside"),
    "align.image.encoder": ("vgg19", "patch"),
    "align.feature.grl": ("constant", "dann"),
    "align.pose.variant": ("paper", "release"),
}


def _check_method_choices(config: DictConfig) -> None:
    from posealign.alignment.image_level import require_style_weights

    for key, choices in METHOD_CHOICES.items():
        value = OmegaConf.select(config, key)
        if value not in choices:
            raise UserError(f"{key}={value}: choose one of {list(choices)}")
    fraction = config.align.pose.get("calibrate_temperature_to")
    if fraction is not None and not (isinstance(fraction, int | float) and 0.0 < float(fraction) < 1.0):
        raise UserError(f"align.pose.calibrate_temperature_to={fraction}: must be a fraction between 0 and 1 (or null)")
    if float(config.align.pose.diversity_weight) < 0:
        raise UserError(f"align.pose.diversity_weight={config.align.pose.diversity_weight}: must be 0 or more")
    image = config.align.image
    if image.enabled:
        require_style_weights(OmegaConf.to_container(image, resolve=True))


def _check_keypoint_set(config: DictConfig) -> None:
    from posealign.keypoints import KEYPOINT_SETS

    name = config.data.keypoint_set
    if name not in KEYPOINT_SETS and name != KEYPOINT_SET_FROM_FILE:
        known = [*sorted(KEYPOINT_SETS), KEYPOINT_SET_FROM_FILE]
        raise UserError(
            f"data.keypoint_set={name}: unknown keypoint set; choose one of {known} "
            f"({KEYPOINT_SET_FROM_FILE}: the COCO file's category defines it)"
        )


def _check_run_settings(config: DictConfig, check_machine: bool) -> None:
    amp = config.run.amp
    if amp not in AMP_MODES:
        raise UserError(f"run.amp={amp}: must be off, bf16 or fp16")
    channels_last = config.run.channels_last
    if not (channels_last == "auto" or isinstance(channels_last, bool)):
        raise UserError(f"run.channels_last={channels_last}: must be auto, true or false")
    device = str(config.run.device)
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UserError(f"run.device={device}: must be auto, cpu, cuda or cuda:N")
    if check_machine and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"run.device={device}: no CUDA GPU is visible to torch here; use run.device=auto or cpu")


def _check_dataset_entry(config: DictConfig, key: str, spec: DictConfig, check_roots: bool) -> None:
    from posealign.data.registry import DATASET_LOADERS

    if spec.get("dataset") not in DATASET_LOADERS:
        raise UserError(
            f"{key}.dataset={spec.get('dataset')}: unknown dataset; choose one of {sorted(DATASET_LOADERS)}"
        )
    root_key = _root_key(config, key)
    if spec.get("root") is None:
        raise UserError(f"{key}: no data root; pass {root_key}=/path/to/{spec.dataset}")
    root = Path(str(spec.root))
    if check_roots and not root.is_dir():
        what = "not a folder" if root.exists() else "folder not found"
        raise UserError(f"{root}: {what} ({key}); pass {root_key}=/path/to/{spec.dataset}")


def _check_init(config: DictConfig) -> None:
    """``train.init`` names a file that exists (its contents are checked when the network is built)."""
    init = config.train.get("init")
    if init and not Path(str(init)).exists():
        raise UserError(
            f"train.init={init}: file not found; pass a posealign checkpoint, export or `posealign import` file"
        )


def _root_key(config: DictConfig, key: str) -> str:
    """The key a user sets for this entry's root: a task's ``data.source_root`` when it has one."""
    role = "target" if key.startswith("data.eval.") and key != "data.eval.source" else key.split(".")[-1]
    shared = f"{role}_root"
    return f"data.{shared}" if shared in config.data else f"{key}.root"


def _check_pretrained(config: DictConfig) -> None:
    """``model.pretrained=imagenet`` needs torchvision's weights file: in its cache, or downloaded
    now (before anything is written), with a one-line error saying what to pass when offline."""
    if config.model.get("pretrained") != "imagenet":
        return
    ensure_imagenet_weights(str(config.model.backbone))


def imagenet_weights_url(backbone: str) -> str:
    from torchvision import models

    enum_name = {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50", "resnet101": "ResNet101"}
    enum_name.update({"resnet152": "ResNet152"})
    weights = getattr(models, f"{enum_name.get(backbone, backbone)}_Weights", None)
    if weights is None:
        raise UserError(f"model.backbone={backbone}: no ImageNet weights known; use model.pretrained=none")
    return weights.IMAGENET1K_V1.url


def ensure_imagenet_weights(backbone: str) -> Path:
    """The cached ImageNet weights of ``backbone`` (torchvision's cache), downloaded if absent."""
    import torch

    url = imagenet_weights_url(backbone)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return cached
    try:
        download_weights(url, cached)
    except Exception as error:  # noqa: BLE001 - URLError, timeouts, SSL, disk: all mean "not here"
        raise UserError(
            f"model.pretrained=imagenet: cannot download {url} ({type(error).__name__}); put the file at "
            f"{cached}, or pass model.pretrained=/path/to/{backbone}.pth (a torchvision state dict) or model.pretrained=none"
        ) from None
    return cached


def download_weights(url: str, destination: Path) -> None:
    """torch.hub's download (a progress bar on stderr, the file renamed into place when complete)."""
    import torch

    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(destination), progress=True)


def _check_combinations(config: DictConfig) -> None:
    """Settings each valid alone that cannot run together."""
    _check_source_free(config)
    quantile = config.mean_teacher.get("pose_prior_quantile")
    if quantile is not None and not (isinstance(quantile, int | float) and 0.0 < float(quantile) <= 1.0):
        raise UserError(f"mean_teacher.pose_prior_quantile={quantile}: must be a fraction in (0, 1] (or null)")
    feature = config.align.feature
    if feature.get("reversal_cap") is not None and feature.enabled and config.mean_teacher.enabled:
        # The cap measures the student's gradient at every stage-2 step with extra backward passes
        # through a retained graph, which neither DDP's reducer nor a compiled student allows (the
        # trainer's own gradient diagnostics are off there for the same reason).
        fix = "pass align.feature.reversal_cap=null"
        if config.run.compile:
            raise UserError(
                f"align.feature.reversal_cap={feature.reversal_cap} needs a gradient measurement at every step, "
                f"which a compiled student cannot give; {fix} or run.compile=false"
            )
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        if ranks > 1:
            raise UserError(
                f"align.feature.reversal_cap={feature.reversal_cap} needs a gradient measurement at every step, "
                f"which DDP ({ranks} ranks) cannot give; {fix} or train on one process"
            )


def _check_source_free(config: DictConfig) -> None:
    """``train.supervised_on: none`` is a stage 2 on target images from a given model: every part
    that reads labeled images must be off."""
    if config.train.supervised_on != "none":
        return
    needs = {
        "train.init": (config.train.get("init") is not None, "=CKPT (the pose model to adapt; --init CKPT)"),
        "train.pretrain_steps": (int(config.train.pretrain_steps) == 0, "=0 (there is no labeled stage 1)"),
        "mean_teacher.enabled": (bool(config.mean_teacher.enabled), "=true (stage 2 is the mean teacher)"),
        "train.adapt_steps": (int(config.train.adapt_steps) > 0, " above 0"),
        "align.image.enabled": (not config.align.image.enabled, "=false (it restyles source images)"),
        "align.feature.enabled": (not config.align.feature.enabled, "=false (it discriminates source features)"),
    }
    for key, (met, fix) in needs.items():
        if not met:
            raise UserError(f"train.supervised_on=none (source-free) needs {key}{fix}; use --preset source_free")


# Each level's settings (a key prefix) and the switches that must all be on for them to act: the
# feature and pose levels run only in stage 2, which the mean teacher makes.
LEVEL_SWITCHES = (
    ("mean_teacher", ("mean_teacher.enabled",)),
    ("align.image", ("align.image.enabled",)),
    ("align.feature", ("mean_teacher.enabled", "align.feature.enabled")),
    ("align.pose", ("mean_teacher.enabled", "align.pose.enabled")),
)


def inactive_settings(config: DictConfig) -> dict[str, str]:
    """Every setting of a level this run leaves off -> the switches that are off
    (``mean_teacher.enabled=false, align.feature.enabled=false``).

    Their values change nothing in the run (whatever they are); the switches themselves are not listed.
    """
    plain = OmegaConf.to_container(config, resolve=True)
    inactive: dict[str, str] = {}
    for prefix, switches in LEVEL_SWITCHES:
        off = [switch for switch in switches if not OmegaConf.select(config, switch)]
        if not off:
            continue
        section = plain
        for part in prefix.split("."):
            section = section.get(part) or {}
        for name in section:
            key = f"{prefix}.{name}"
            if key not in (switch for _, group in LEVEL_SWITCHES for switch in group):
                inactive[key] = ", ".join(f"{switch}=false" for switch in off)
    return inactive


def inactive_changes(config: DictConfig) -> dict[str, str]:
    """The settings of :func:`inactive_settings` whose value differs from ``configs/default.yaml``: a
    task or preset that sets them for every method (the benchmark task's discriminator channels) is
    not wrong, but the run's log says they did nothing."""
    from posealign.config import CONFIG_ROOT

    defaults = OmegaConf.load(str(CONFIG_ROOT / "default.yaml"))
    return {
        key: switch
        for key, switch in inactive_settings(config).items()
        if _plain(OmegaConf.select(config, key)) != _plain(OmegaConf.select(defaults, key))
    }


def describe_inactive(changes: dict[str, str]) -> str:
    """One line for the run's log: the settings that did nothing, grouped by the switch that is off."""
    by_switch: dict[str, list[str]] = {}
    for key, switch in changes.items():
        by_switch.setdefault(switch, []).append(key)
    groups = "; ".join(f"{', '.join(keys)} ({switches})" for switches, keys in by_switch.items())
    return f"warning: settings of levels that are off change nothing in this run: {groups}"


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def override_keys(overrides: list[str]) -> list[str]:
    """The keys of ``key=value`` overrides, as given."""
    return [item.partition("=")[0].strip() for item in overrides if "=" in item]


def _settings_under(key: str, inactive: dict[str, str]) -> list[str]:
    """The inactive settings an override of ``key`` sets: the key itself, those below a section it
    names, or the section it is inside (``mean_teacher.occlusion.probability``)."""
    return [name for name in inactive if name == key or name.startswith(key + ".") or key.startswith(name + ".")]


def check_overrides_act(configs: dict[str, DictConfig], overrides: list[str]) -> None:
    """A ``key=value`` the user typed for a level that is off in every run it applies to is an error:
    the user asked for something the run(s) would not do. ``configs``: run name -> its config."""
    names = list(configs)
    inactive = {name: inactive_settings(config) for name, config in configs.items()}
    for key in override_keys(overrides):
        per_run = [_settings_under(key, inactive[name]) for name in names]
        if not all(per_run):
            continue  # some run uses it (a section override counts when any of its keys is used)
        if len(names) == 1:
            switches = inactive[names[0]][per_run[0][0]]
            raise UserError(
                f"{key}: does nothing in preset {configs[names[0]].preset!r} ({switches}); drop it, or choose "
                "a preset that turns its level on"
            )
        raise UserError(f"{key}: does nothing in any of the runs {names} (its level is off in each); drop it")
