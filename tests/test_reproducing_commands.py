"""The per-table commands of docs/reproducing.md resolve to runnable configs as written: the shell block is run
by bash with ``posealign`` recording its arguments, then each ``train`` / ``ablate`` line is loaded
and checked as the command would before training (data and weight paths point at files made here).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from posealign.cli.train_command import prepared_config
from posealign.errors import UserError

REPRODUCING = Path(__file__).resolve().parents[1] / "docs" / "reproducing.md"


def table_block() -> str:
    body = REPRODUCING.read_text()
    return re.search(r"```bash\n(.*?)```", body, re.S).group(1)


def recorded_commands(tmp_path: Path) -> list[list[str]]:
    """Each ``posealign ...`` line of the block as bash expands it (variables, continuations)."""
    log = tmp_path / "argv.txt"
    recorder = f'posealign() {{ printf "%s\\0" "$@" >> {shlex.quote(str(log))}; printf "\\n\\0" >> {shlex.quote(str(log))}; }}\n'
    subprocess.run(["bash", "-c", recorder + table_block()], check=True, cwd=tmp_path)
    commands, current = [], []
    for word in log.read_text().split("\0")[:-1]:
        if word == "\n":
            commands.append(current)
            current = []
        else:
            current.append(word)
    return commands


def test_table_commands_resolve_with_the_weights_they_name(tmp_path, monkeypatch):
    commands = recorded_commands(tmp_path)
    assert [c[0] for c in commands] == ["style", "train", "train", "ablate"]
    # The block's absolute paths, made here: data roots as folders, weights as files.
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
        argv = [local(w) for w in command]
        preset, task = argv[argv.index("--preset") + 1], argv[argv.index("--task") + 1]
        out = argv[argv.index("--out") + 1]
        overrides = [w for w in argv if "=" in w and not w.startswith("--")] + [f"run.out={out}"]
        overrides.append("model.pretrained=none")  # the ImageNet check would look for a download
        config = prepared_config(preset, task, overrides, resume=None)
        if config.align.image.enabled:
            assert config.align.image.decoder_weights.endswith("decoder.pt")
            # Without the weight keys the same line is refused.
            bare = [w for w in overrides if not w.startswith("align.image.")]
            with pytest.raises(UserError, match="random networks"):
                prepared_config(preset, task, bare, resume=None)
    assert "--encoder-weights" in commands[0]
