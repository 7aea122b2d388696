"""The GPU speed figures in one short run (about 12 minutes with the machine's start) at the
paper's settings (ResNet-101, 256 px, heatmaps 64, 32 + 32, bf16), then one compact table.

    python benchmarks/gpu_check.py --out OUT [--budget 540] [--only daml "levers daml nchw"]

Order: end_to_end.py for ``daml``, ``daml_release`` and ``fast`` (the step alone, the trainer's
step and the paper's 20k + 15k schedule projected at the trainer's rates); step_levers.py for
``daml`` in the default channels-last layout and in NCHW, where the student's two domains take one
pass (with the step under torch.compile's reduce-overhead mode, CUDA graphs, beside it); the
loader's start timed apart (loader_start.py); the student under torch.compile; step_cost.py's
breakdowns.

On a GPU machine without the network whose Python lacks kornia, kornia_rs or omegaconf, fetch the
wheels where pip has the network (here for Python 3.12):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl kornia==0.9.0 kornia_rs==0.2.0 omegaconf==2.4.0

(omegaconf 2.4 needs only PyYAML; omegaconf 2.3 would also need antlr4-python3-runtime==4.9.3, an
sdist: ``pip wheel --no-deps antlr4-python3-runtime==4.9.3 -w .whl``.) Copy the repository with
``.whl`` to the GPU machine, and there:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \\
      && PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

It runs from the source tree (no ``pip install -e .``). Each measurement is a subprocess in
priority order; once ``--budget`` seconds have passed no new one starts and the one running is
stopped, so the table (printed, and in ``$OUT/gpu_check.md`` with each log beside it) always
comes back. The benchmark is generated once, smaller than the task's (1024 + 1024 training images,
at 256 px): the loader's rate does not depend on the dataset's length.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = ["--task", "benchmark_paper_scale", "--amp", "bf16"]
SIZES = (
    "data.benchmark_sizes={source_train: 1024, source_test: 128, target_train: 1024, target_test: 128, target_val: 128}"
)


def measurements(steps: int, work: Path) -> list[tuple[str, list[str]]]:
    """(name, command) in priority order: each preset's step alone, trainer's step and projected
    paper schedule first, then what each lever of the step pays, then the compiled steps."""
    end_to_end = [sys.executable, str(HERE / "end_to_end.py"), *PAPER, "--steps", str(steps), "--out", str(work)]
    step_cost = [sys.executable, str(HERE / "step_cost.py"), "--task", "benchmark_paper_scale", "--batch-size", "32"]
    levers = [sys.executable, str(HERE / "step_levers.py"), "--task", "benchmark_paper_scale", "--rounds", "10"]
    return [
        ("daml", [*end_to_end, "--preset", "daml", "--json", str(work / "daml.json"), SIZES]),
        ("daml_release", [*end_to_end, "--preset", "daml_release", "--json", str(work / "daml_release.json"), SIZES]),
        ("fast", [*end_to_end, "--preset", "fast", "--json", str(work / "fast.json"), SIZES]),
        # Channels-last (the paper-scale task's layout) keeps one pass per domain; NCHW takes the one pass.
        ("levers daml", [*levers, "run.amp=bf16", "--only", "every lever"]),
        ("levers daml nchw", [*levers, "--compile-mode", "reduce-overhead", "run.amp=bf16", "run.channels_last=false"]),
        ("loader start", [sys.executable, str(HERE / "loader_start.py")]),
        ("daml compile", [*end_to_end, "--preset", "daml", "--compile", "--phases", "step"]
         + ["--json", str(work / "daml_compile.json"), SIZES]),
        ("fast compile", [*end_to_end, "--preset", "fast", "--compile", "--phases", "step"]
         + ["--json", str(work / "fast_compile.json"), SIZES]),
        ("step_cost daml", [*step_cost, "--preset", "daml", "run.amp=bf16"]),
        ("step_cost fast", [*step_cost, "--preset", "fast", "run.amp=bf16"]),
    ]  # fmt: skip


def run_all(out: Path, budget: float, steps: int, only: list[str] | None = None) -> list[dict]:
    work = Path("/tmp/posealign-gpu-check")
    planned = dict(measurements(steps, work))
    unknown = sorted(set(only or []) - set(planned))
    if unknown:
        raise SystemExit(f"gpu_check: no measurement named {unknown}; the names are {list(planned)}")
    started = time.monotonic()
    rows = []
    for name in only or planned:
        command = planned[name]
        left = budget - (time.monotonic() - started)
        if left < 30:
            rows.append({"name": name, "status": "not run (budget)"})
            continue
        log = out / f"{name.replace(' ', '_')}.log"
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        began = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=left, cwd=HERE.parent)
            text, status = done.stdout + done.stderr, "ok" if done.returncode == 0 else f"exit {done.returncode}"
        except subprocess.TimeoutExpired as error:
            text = (error.stdout or b"").decode(errors="replace") + (error.stderr or b"").decode(errors="replace")
            status = "stopped (budget)"
        log.write_text(text)
        print(text[-3000:], flush=True)
        rows.append({"name": name, "status": status, "seconds": time.monotonic() - began, "text": text})
    for row in rows:
        figures = work / f"{row['name'].replace(' ', '_')}.json"
        if row.get("status") == "ok" and figures.is_file():
            row["figures"] = json.loads(figures.read_text())
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| measurement | status | loader im/s | first batches s | step ms pretrain / adapt | peak GiB "
        "| trainer ms pretrain / adapt | trainer start s | paper schedule min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        figures = row.get("figures", {})
        loader, step, trainer = figures.get("loader"), figures.get("step"), figures.get("trainer")
        projection = figures.get("projection")
        cells = [
            f"{loader['images_per_s']:.0f}" if loader else "",
            f"{loader['first_batch_s']:.1f}" if loader else "",
            f"{step['pretrain']:.1f} / {step['adapt']:.1f}" if step else "",
            f"{step['peak_gib']:.1f}" if step and "peak_gib" in step else "",
            f"{trainer['pretrain']:.1f} / {trainer['adapt']:.1f}" if trainer else "",
            f"{trainer['startup_s']:.0f}" if trainer else "",
            f"{projection['seconds'] / 60:.1f}" if projection else "",
        ]
        if row["name"].startswith("levers") and row.get("status") == "ok":
            # step_levers prints "<variant>  <median ms>  <ratio to no lever>", one line a variant.
            found = re.findall(r"^(every lever.*?|no lever|without \S+)\s+([\d.]+)\s+([\d.]+)$",
                               row["text"], flags=re.M)  # fmt: skip
            cells[2] = "; ".join(f"{name} {ms} ({ratio} x)" for name, ms, ratio in found)
        if row["name"].startswith("step_cost") and row.get("status") == "ok":
            # step_cost prints "<preset> step:  123.4 ms": the adaptation step on random batches.
            found = re.findall(r"^(\S+) step:\s+([\d.]+) ms", row["text"], flags=re.M)
            cells[2] = " / ".join(f"{name} {ms}" for name, ms in found)
        lines.append(f"| {row['name']} | {row['status']} | " + " | ".join(cells) + " |")
    machine = next((r["figures"]["machine"] for r in rows if "figures" in r), None)
    return (f"machine: {machine}\n\n" if machine else "") + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/posealign-gpu-check-out")))
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for every measurement together")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per stage")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="these measurements, in this order (default: all, in priority order)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run_all(args.out, args.budget, args.steps, args.only)
    summary = table(rows)
    (args.out / "gpu_check.md").write_text(summary + "\n")
    print("\n" + summary)


if __name__ == "__main__":
    main()
