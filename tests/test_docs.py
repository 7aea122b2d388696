"""The documentation tells the truth about the code: every key of ``default.yaml`` is in the
configuration reference and the reference names no other; every command block of README.md and
docs/ runs or resolves as written; no text in the repository speaks of work periods or issue
numbers instead of what the project does."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from posealign.cli import build_parser
from posealign.config import CONFIG_ROOT, load_config
from posealign.config_checks import check_values

REPOSITORY = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
REFERENCE = REPOSITORY / "docs" / "configuration.md"


# --- the configuration reference ----------------------------------------------------------------


def default_paths(node, prefix: str = "") -> tuple[set[str], set[str]]:
    """(every path of the defaults, inner nodes included; the leaf paths)."""
    every, leaves = set(), set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        every.add(path)
        if isinstance(value, dict) and value:
            inner_every, inner_leaves = default_paths(value, f"{path}.")
            every |= inner_every
            leaves |= inner_leaves
        else:
            leaves.add(path)
    return every, leaves


def documented_keys(text: str) -> set[str]:
    """The keys in the first column of the reference's tables."""
    return set(re.findall(r"^\| `([a-z_][a-z0-9_.]*)` \|", text, re.M))


def test_configuration_reference_covers_every_key_and_no_other():
    defaults = OmegaConf.to_container(OmegaConf.load(str(CONFIG_ROOT / "default.yaml")))
    every, leaves = default_paths(defaults)
    documented = documented_keys(REFERENCE.read_text())
    assert documented, "no key found in the reference's tables"
    unknown = sorted(documented - every)
    assert not unknown, f"docs/configuration.md names keys default.yaml does not have: {unknown}"
    missing = sorted(leaf for leaf in leaves if not any(leaf == d or leaf.startswith(d + ".") for d in documented))
    assert not missing, f"keys of default.yaml missing from docs/configuration.md: {missing}"


def test_reference_check_fails_on_a_missing_or_unknown_key():
    defaults = {"run": {"seed": 0, "amp": "off"}, "data": {"source": {"dataset": "coco"}}}
    every, leaves = default_paths(defaults)
    assert every == {"run", "run.seed", "run.amp", "data", "data.source", "data.source.dataset"}
    assert leaves == {"run.seed", "run.amp", "data.source.dataset"}
    assert documented_keys("| `run.seed` | 0 | x |\n| `data.source` | coco | y |\nnot | `run.amp` |") == {
        "run.seed",
        "data.source",
    }


# --- the command blocks -------------------------------------------------------------------------

RECORDED = ("posealign", "make", "torchrun", "python", "python3")


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)


def recorded_commands(block: str, folder: Path) -> list[list[str]]:
    """Each command of the block as bash expands it (variables, continuations), without running it."""
    log = folder / "argv.txt"
    log.unlink(missing_ok=True)
    quoted = shlex.quote(str(log))
    recorders = "".join(
        f'{name}() {{ printf "%s\\0" {name} "$@" >> {quoted}; printf "\\n\\0" >> {quoted}; }}\n' for name in RECORDED
    )
    subprocess.run(["bash", "-euc", recorders + block], check=True, cwd=folder)
    commands, current = [], []
    for word in log.read_text().split("\0")[:-1] if log.exists() else []:
        if word == "\n":
            commands.append(current)
            current = []
        else:
            current.append(word)
    return commands


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z_-]*):", (REPOSITORY / "Makefile").read_text(), re.M))


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def resolve_runs(argv: list[str], tmp_path: Path) -> int:
    """Load and check the config of every run a ``train``, ``config``, ``demo`` or ``ablate`` line
    would start, as the command does before training; returns how many were checked."""
    swept = {argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--vary"}
    overrides = [word for word in argv if "=" in word and not word.startswith("-") and word not in swept]
    command = argv[0]
    if command == "train":
        runs = [(option(argv, "--preset", "source_only"), option(argv, "--task"))]
        if "--init" in argv:
            overrides.append(f"train.init={option(argv, '--init')}")
    elif command == "config":
        runs = [(argv[1], option(argv, "--task"))]
    elif command == "demo":
        from posealign.cli.demo_command import DEMO_METHODS

        runs = [(preset, "benchmark") for preset in (option_list(argv, "--methods") or DEMO_METHODS)]
    elif command == "ablate" and swept:
        from posealign.sensitivity import parse_vary

        preset, task = option(argv, "--preset", "daml"), option(argv, "--task", "benchmark")
        points = [f"{sweep.key}={value}" for sweep in parse_vary(sorted(swept)) for value in sweep.values]
        for point in points:  # each value of the sweep as its run loads it
            config = load_config(preset, task, [*overrides, point, f"run.out={tmp_path / 'run'}"])
            check_values(config, check_roots=False)
        return len(points)
    elif command == "ablate":
        from posealign.cli.ablate_command import ABLATION_ROWS

        rows = option_list(argv, "--rows") or ABLATION_ROWS
        runs = [(preset, option(argv, "--task", "benchmark")) for preset in rows if "=" not in preset]
        from posealign.cli.ablate_command import init_override

        # A source-free row starts from the seed's source_only run, as ablate passes it.
        runs = [(p, t, init_override(p, t, overrides, tmp_path / "seed0")) for p, t in runs]
    else:
        return 0
    for preset, task, *init in runs:
        # ImageNet weights would be downloaded on first use; data roots are the user's folders.
        extra = [*overrides, *(init[0] if init else []), f"run.out={tmp_path / 'run'}", "model.pretrained=none"]
        config = load_config(preset, task, extra)
        check_values(config, check_roots=False)
    return len(runs)


def option_list(argv: list[str], name: str) -> list[str]:
    if name not in argv:
        return []
    values = []
    for word in argv[argv.index(name) + 1 :]:
        if word.startswith("-") or "=" in word:
            break
        values.append(word)
    return values


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_command_block_runs_or_resolves_as_written(document, tmp_path, monkeypatch):
    blocks = bash_blocks(document)
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    for block in blocks:
        for argv in recorded_commands(block, tmp_path):
            program, arguments = argv[0], argv[1:]
            if program == "make":
                assert set(arguments) <= makefile_targets(), f"{document.name}: make {arguments}"
                continue
            if program in ("python", "python3"):
                assert (REPOSITORY / arguments[0]).is_file(), f"{document.name}: no {arguments[0]}"
                continue
            if program == "torchrun":
                arguments = arguments[arguments.index("posealign") + 1 :]
            try:
                parser.parse_args(arguments)
            except SystemExit as exit:
                pytest.fail(f"{document.name}: `posealign {' '.join(arguments)}` does not parse ({exit})")
            resolve_runs(arguments, tmp_path)


def test_command_check_catches_a_wrong_command(tmp_path):
    """The block checker is not a formality: a typo in a key, a flag or a make target is caught."""
    [argv] = recorded_commands("posealign train --preset daml --task benchmark train.batch_sise=4\n", tmp_path)
    assert argv == ["posealign", "train", "--preset", "daml", "--task", "benchmark", "train.batch_sise=4"]
    from posealign.errors import UserError

    with pytest.raises(UserError, match="batch_sise"):
        resolve_runs(argv[1:], tmp_path)
    [argv] = recorded_commands("posealign ablate --out s --vary align.pose.wieght=0.1,0.3\n", tmp_path)
    with pytest.raises(UserError, match="wieght"):
        resolve_runs(argv[1:], tmp_path)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--presets", "daml"])
    assert "demo" in makefile_targets() and "deploy" not in makefile_targets()


def test_the_documents_have_command_blocks():
    assert bash_blocks(REPOSITORY / "README.md")
    assert len(bash_blocks(REPOSITORY / "docs" / "reproducing.md")) == 1


def test_the_paper_table_commands_run_with_the_weights_they_name(tmp_path, monkeypatch):
    """docs/reproducing.md's block as a run checks it before training, with the data roots and
    weight files it names made here: the image level gets the weights, and without them is refused."""
    import torch

    from posealign.cli.train_command import prepared_config
    from posealign.errors import UserError

    [block] = bash_blocks(REPOSITORY / "docs" / "reproducing.md")
    commands = [argv[1:] for argv in recorded_commands(block, tmp_path)]
    assert [c[0] for c in commands] == ["style", "train", "train", "ablate"]
    assert "--encoder-weights" in commands[0]
    mapping = {"/data/surreal": tmp_path / "surreal", "/data/lsp": tmp_path / "lsp", "/weights": tmp_path / "weights"}
    for folder in mapping.values():
        folder.mkdir()
    torch.save({}, mapping["/weights"] / "vgg_normalised.pth")
    (tmp_path / "style").mkdir()
    torch.save({}, tmp_path / "style" / "decoder.pt")

    def local(word: str) -> str:
        for old, new in mapping.items():
            word = word.replace(old, str(new))
        return word

    monkeypatch.chdir(tmp_path)
    for command in commands[1:3]:  # the two train lines
        argv = [local(word) for word in command]
        overrides = [w for w in argv if "=" in w and not w.startswith("--")]
        overrides += [f"run.out={option(argv, '--out')}", "model.pretrained=none"]  # no ImageNet download
        preset, task = option(argv, "--preset"), option(argv, "--task")
        config = prepared_config(preset, task, overrides, resume=None)
        if config.align.image.enabled:
            assert config.align.image.decoder_weights.endswith("decoder.pt")
            bare = [w for w in overrides if not w.startswith("align.image.")]
            with pytest.raises(UserError, match="random networks"):
                prepared_config(preset, task, bare, resume=None)


# --- wording --------------------------------------------------------------------------------------

# Written in pieces so that this file does not match itself.
WORK_PERIOD_WORDING = re.compile(
    "|".join(
        [
            r"\bstop" + r"s? #?[0-9]+",
            r"\bissue" + r"s? #?[0-9]+",
            r"\b(before|since|until|after) (the )?(stop|issue)" + r"\b",
            r"\bthe instance " + r"of\b",
            r"\ble" + r"nt\b",
            r"\ble" + r"ase\b",
            r"the team's " + r"call",
            r"fresh clone " + r"of stop",
        ]
    ),
    re.I,
)


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout
    files = []
    for name in names.splitlines():
        path = REPOSITORY / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def work_period_lines(path: Path) -> list[str]:
    return [
        f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if WORK_PERIOD_WORDING.search(line)
    ]


def test_no_text_names_a_work_period_or_an_issue_number():
    files = tracked_text_files()
    assert any(path.name == "README.md" for path in files)
    found = [line for path in files for line in work_period_lines(path)]
    assert not found, "say what the code does, not when it was done:\n" + "\n".join(found[:20])


@pytest.mark.parametrize(
    "line, flagged",
    [
        ("chosen at st" + "op 23 on target_val", True),
        ("see iss" + "ue #11 for the bar", True),
        ("the default sin" + "ce stop changed", True),
        ("measured on the inst" + "ance of the H200 check", True),
        ("a GPU was le" + "nt for this", True),
        ("the release's decoder, stopped at 20 steps", False),
        ("please report it", False),
    ],
)
def test_wording_rule_on_examples(line, flagged):
    assert bool(WORK_PERIOD_WORDING.search(line)) is flagged
