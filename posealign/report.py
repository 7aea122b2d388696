"""``posealign report``: a Markdown page with PNG figures comparing runs.

The paper-style table, PCK-vs-threshold curves, per-keypoint bars, training curves, what each
alignment level does during adaptation (:mod:`posealign.diagnostics`), and the same target images
predicted by each run (source-only next to adapted). A folder of ``posealign ablate --vary`` (its
``sensitivity.json``) is drawn as the paper's Fig. 2: target PCK against each swept value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from posealign.errors import UserError  # noqa: E402
from posealign.files import atomic_write_text  # noqa: E402

LOSS_TERMS = ("loss", "loss_sup", "loss_cons", "loss_adv", "loss_im")


def _load_run(run_dir: Path) -> dict:
    results = run_dir / "results.json"
    if not results.is_file():
        raise UserError(
            f"{run_dir}: no results.json (not a finished posealign run); train it to the end or leave it out"
        )
    metrics = []
    if (run_dir / "metrics.jsonl").is_file():
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
    return {"dir": run_dir, "results": json.loads(results.read_text()), "metrics": metrics}


def _name_runs(runs: list[dict]) -> None:
    """Each run's row and legend name: its folder, with as many parent folders as tell them apart
    (two ``daml`` runs of different seeds are ``seed0/daml`` and ``seed1/daml``)."""
    paths = [Path(run["dir"]).resolve().parts for run in runs]
    for depth in range(1, max(len(p) for p in paths) + 1):
        names = ["/".join(p[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            break
    for run, name in zip(runs, names, strict=True):
        run["name"] = name


def _keypoint_sets_differ(runs: list[dict]) -> bool:
    return len({tuple(run["results"]["target"]["per_keypoint"]) for run in runs if "target" in run["results"]}) > 1


def _has_domain_gap(runs: list[dict]) -> bool:
    return any("domain_gap" in r["results"] for r in runs)  # results saved without the measurement have none


def _table(runs: list[dict]) -> str:
    groups = list(runs[0]["results"]["target"]["groups"])
    has_source = any("source" in r["results"] for r in runs)
    has_gap = _has_domain_gap(runs)
    header = ["Run", "Method", *groups, "All"] + (["Source All"] if has_source else [])
    header += ["Domain gap (proxy A-distance)"] if has_gap else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        target = run["results"]["target"]
        cells = [
            run["name"],
            str(run["results"]["method"]),
            *[_fmt(target["groups"].get(g)) for g in groups],
            _fmt(target["pck"]),
        ]
        if has_source:
            cells.append(_fmt(run["results"].get("source", {}).get("pck")))
        if has_gap:
            gap = run["results"].get("domain_gap", {}).get("proxy_a_distance")
            cells.append("-" if gap is None else f"{gap:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _curves(runs: list[dict], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for run in runs:
        name = run["name"]
        legacy = run["results"]["target"]["curve"]
        axes[0].plot(legacy["thresholds"], legacy["All"], marker="o", markersize=3, label=name)
        bbox = run["results"]["target"].get("bbox_pck", {}).get("curve")
        if bbox:
            axes[1].plot(bbox["thresholds"], bbox["All"], marker="o", markersize=3, label=name)
    for axis, title in zip(axes, ("legacy PCK (heatmap grid)", "bbox PCK (mmpose)"), strict=True):
        axis.axvline(0.05, color="grey", linestyle=":", linewidth=1)
        axis.set(
            xlabel="threshold (fraction of the input side / of the box)",
            ylabel="PCK (%)",
            title=f"Target: {title}",
            ylim=(0, 100),
        )
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _per_keypoint(runs: list[dict], path: Path) -> None:
    names = list(runs[0]["results"]["target"]["per_keypoint"])
    width = 0.8 / len(runs)
    figure, axis = plt.subplots(figsize=(max(10, len(names) * 0.7), 4.5), dpi=110)
    positions = np.arange(len(names))
    for i, run in enumerate(runs):
        values = [run["results"]["target"]["per_keypoint"].get(n) or 0.0 for n in names]
        axis.bar(positions + i * width - 0.4 + width / 2, values, width, label=run["name"])
    axis.set_xticks(positions, [n.replace("_", " ") for n in names], rotation=45, ha="right", fontsize=8)
    # Head room above 100 keeps the legend off the bars.
    axis.set(ylabel="PCK@0.05 (%)", title="Target PCK per keypoint", ylim=(0, 118), yticks=range(0, 101, 20))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, ncol=len(runs), loc="upper center")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _training(runs: list[dict], path: Path) -> None:
    terms = [t for t in LOSS_TERMS if any(t in m for r in runs for m in r["metrics"] if m.get("kind") == "train")]
    columns = min(3, len(terms))
    rows = -(-len(terms) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), dpi=110, squeeze=False)
    for axis in axes.flat[len(terms) :]:
        axis.set_visible(False)
    for axis, term in zip(axes.flat, terms, strict=False):
        for index, run in enumerate(runs):
            points = [(m["step"], m[term]) for m in run["metrics"] if m.get("kind") == "train" and term in m]
            if points:
                steps, values = zip(*points, strict=True)
                # One colour per run; a run logged once is one point, drawn as a marker to be seen.
                axis.plot(steps, values, color=f"C{index}", label=run["name"], marker="o" if len(steps) == 1 else None)
        axis.set(xlabel="step", ylabel=term, title=term)
        plotted = [y for line in axis.get_lines() for y in line.get_ydata()]
        if term in ("loss", "loss_sup", "loss_cons") and plotted and min(plotted) > 0:
            axis.set_yscale("log")  # losses span decades; a zero (nothing gated in) cannot be shown on it
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# What each alignment level does during adaptation (posealign.diagnostics): (panel title, y label,
# the logged names drawn in it, log scale).
DIAGNOSTIC_PANELS = (
    ("gradient into the shared layers / L_sup's", "ratio", ("grad_loss_cons", "grad_loss_adv", "grad_loss_im"), True),
    ("pose level: entropy / its maximum", "fraction", ("im_entropy_h", "im_entropy_w", "im_entropy_m"), False),
    (
        "feature level: discriminator accuracy",
        "accuracy",
        ("discriminator_accuracy_source", "discriminator_accuracy_target"),
        False,
    ),
    # Only with align.feature.reversal_cap: the uncapped reversed gradient over L_sup's, and the
    # factor the cap applied (1: not capped).
    ("feature level: reversal cap", "ratio / factor", ("reversal_ratio", "reversal_factor"), True),
)
_LINE_STYLES = ("-", "--", ":")


def _alignment_diagnostics(runs: list[dict], path: Path) -> bool:
    """One panel per kind of diagnostic, one colour per run, one line style per quantity; the
    gradient norms divided by L_sup's at the same step. False when no run logged any."""
    train = [[m for m in r["metrics"] if m.get("kind") == "train" and m.get("stage") == "adapt"] for r in runs]
    panels = [p for p in DIAGNOSTIC_PANELS if any(name in m for rows in train for m in rows for name in p[2])]
    if not panels:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), dpi=110, squeeze=False)
    for axis, (title, label, names, log_scale) in zip(axes.flat, panels, strict=True):
        for index, (run, rows) in enumerate(zip(runs, train, strict=True)):
            for style, name in zip(_LINE_STYLES, names, strict=False):
                ratio = name.startswith("grad_")
                points = [
                    (m["step"], m[name] / m["grad_loss_sup"] if ratio else m[name])
                    for m in rows
                    if name in m and (not ratio or m.get("grad_loss_sup"))
                ]
                if points:
                    steps, values = zip(*points, strict=True)
                    short = (
                        name.replace("grad_loss_", "")
                        .replace("im_entropy_", "E_")
                        .replace("discriminator_accuracy_", "")
                        .replace("reversal_", "")
                    )
                    axis.plot(steps, values, color=f"C{index}", linestyle=style, label=f"{run['name']}: {short}")
        if log_scale and any(y > 0 for line in axis.get_lines() for y in line.get_ydata()):
            axis.set_yscale("log")
        if label == "accuracy":
            axis.axhline(0.5, color="grey", linewidth=0.8)  # chance
        axis.set(xlabel="step", ylabel=label, title=title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def _prediction_grid(runs: list[dict], path: Path, count: int = 8) -> bool:
    """Rows = runs, columns = the same target test images; False when a run's data is not at hand."""
    from posealign.engine.data import build_dataset
    from posealign.engine.prediction_tiles import prediction_tiles
    from posealign.pose_model_files import load_pose_model

    rows = []
    for run in runs:
        config = OmegaConf.load(run["dir"] / "config.yaml")
        config.data.preload = False  # eight images are read, not the whole split
        try:
            dataset = build_dataset(config.data.eval.target, config, "eval.target")
        except Exception:  # noqa: BLE001 - the data may live on another machine; the page goes on without the grid
            return False
        model = load_pose_model(run["dir"] / "checkpoints" / "final.pt")
        tiles = prediction_tiles(model.network, dataset, model.keypoint_set, torch.device("cpu"), count, min_side=160)
        rows.append((run["name"], tiles))
    columns = len(rows[0][1])
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.7 * columns, 1.85 * len(rows)), dpi=110, squeeze=False)
    for r, (name, tiles) in enumerate(rows):
        for c in range(columns):
            axes[r][c].imshow(tiles[c])
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=9)
    title = (
        "Each run's own target test images (the runs' keypoint sets differ), dot size = confidence"
        if _keypoint_sets_differ(runs)
        else "The same target test images, predicted by each run (dot size = confidence)"
    )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def _load_sweep(folder: Path) -> dict:
    from posealign.sensitivity import SENSITIVITY_FILE

    try:
        return json.loads((folder / SENSITIVITY_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(
            f"{folder / SENSITIVITY_FILE}: not readable ({error}); run the same posealign ablate --vary command again"
        ) from None


def _is_number(text: str) -> bool:
    from posealign.sensitivity import typed_value

    value = typed_value(text)
    return isinstance(value, int | float) and not isinstance(value, bool)


# The weights of eq. 8 by the names the paper's Fig. 2 gives them.
EQ8_WEIGHTS = {
    "mean_teacher.consistency_weight": "l_c",
    "align.feature.weight": "l_adv",
    "align.pose.weight": "l_im",
}


def uses_log_axis(values: list[str]) -> bool:
    """Numbers above zero that span a decade or more: on a linear axis the small ones would crowd."""
    from posealign.sensitivity import typed_value

    if not all(_is_number(value) for value in values):
        return False
    numbers = [float(typed_value(value)) for value in values]
    return min(numbers) > 0 and max(numbers) / min(numbers) >= 10 - 1e-9  # a decade may divide to just under 10


def _sensitivity(sweep: dict, path: Path) -> None:
    """One panel per swept key: target PCK (mean ± std over seeds) against the value, target_val
    beside it; a log axis where the values span a decade or more; the preset's value marked."""
    from posealign.sensitivity import typed_value

    sweeps = sweep["sweeps"]
    figure, axes = plt.subplots(1, len(sweeps), figsize=(4.4 * len(sweeps), 3.8), dpi=110, squeeze=False)
    for axis, swept in zip(axes.flat, sweeps, strict=True):
        points = swept["points"]
        labels = [point["value"] for point in points]
        numeric = all(_is_number(label) for label in labels)
        positions = [float(typed_value(label)) for label in labels] if numeric else list(range(len(labels)))
        if uses_log_axis(labels):
            axis.set_xscale("log")
        order = sorted(range(len(points)), key=lambda i: positions[i])
        for domain, style, label in (("target", "-", "target (reported)"), ("target_val", "--", "target_val")):
            shown = [i for i in order if domain in points[i]]
            if shown:
                axis.errorbar(
                    [positions[i] for i in shown],
                    [points[i][domain] for i in shown],
                    yerr=[points[i][f"{domain}_std"] for i in shown],
                    linestyle=style,
                    marker="o",
                    capsize=3,
                    label=label,
                )
        own = [positions[i] for i, label in enumerate(labels) if typed_value(label) == swept["preset_value"]]
        for position in own:
            axis.axvline(position, color="grey", linestyle=":", linewidth=1)
        if numeric:
            axis.set_xticks(positions, labels)
            axis.minorticks_off()
        else:
            axis.set_xticks(positions, labels, rotation=30)
        symbol = EQ8_WEIGHTS.get(swept["key"])
        title = f"{symbol} ({swept['key']})" if symbol else swept["key"]
        axis.set(xlabel=swept["key"], ylabel="PCK@0.05 (%)", title=title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    seeds = len(sweep["seeds"])
    figure.suptitle(
        f"{sweep['preset']} on {sweep['task']}: mean ± std over {seeds} seed(s); dotted: the preset's value",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _sensitivity_table(sweep: dict) -> str:
    from posealign.sensitivity import typed_value

    lines = ["| Setting | Value | Target PCK | target_val PCK |", "|---|---|---|---|"]
    for swept in sweep["sweeps"]:
        for point in swept["points"]:
            own = " (preset)" if typed_value(point["value"]) == swept["preset_value"] else ""
            cells = [
                f"{point[domain]:.1f} ± {point[f'{domain}_std']:.1f}" if domain in point else "-"
                for domain in ("target", "target_val")
            ]
            lines.append(f"| `{swept['key']}` | {point['value']}{own} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _sensitivity_sections(folders: list[Path], out: Path) -> list[str]:
    sections = []
    for index, folder in enumerate(folders):
        sweep = _load_sweep(folder)
        name = "sensitivity.png" if len(folders) == 1 else f"sensitivity_{index}.png"
        _sensitivity(sweep, out / name)
        sections.append(
            f"## Sensitivity: `{folder}`\n\nTarget PCK@0.05 of `{sweep['preset']}` on `{sweep['task']}` "
            f"against each setting, the others at the preset's values, mean ± std over seeds "
            f"{', '.join(map(str, sweep['seeds']))} (target_val: for choosing settings, never reported).\n\n"
            f"{_sensitivity_table(sweep)}\n\n![sensitivity]({name})"
        )
    return sections


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write ``out/report.md`` and its figures for finished runs and ``ablate --vary`` folders;
    returns the page's path."""
    from posealign.sensitivity import SENSITIVITY_FILE

    if not run_dirs:
        raise UserError("no run directories given; pass at least one RUN_DIR")
    folders = [Path(d) for d in run_dirs]
    sweeps = [f for f in folders if (f / SENSITIVITY_FILE).is_file() and not (f / "results.json").is_file()]
    runs = [_load_run(f) for f in folders if f not in sweeps]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = ["# posealign report", *_sensitivity_sections(sweeps, out)]
    if runs:
        sections += _run_sections(runs, out)
    page = out / "report.md"
    atomic_write_text(page, "\n\n".join(sections) + "\n")
    return page


def _run_sections(runs: list[dict], out: Path) -> list[str]:
    """The sections comparing finished runs, their figures written into ``out``."""
    _name_runs(runs)
    differ = _keypoint_sets_differ(runs)
    if differ:
        print(
            "posealign report: warning: the runs have different keypoint sets; their numbers are not comparable",
            file=sys.stderr,
        )
    _curves(runs, out / "pck_curves.png")
    _per_keypoint(runs, out / "per_keypoint.png")
    _training(runs, out / "training_curves.png")
    has_diagnostics = _alignment_diagnostics(runs, out / "alignment_diagnostics.png")
    has_grid = _prediction_grid(runs, out / "predictions.png")
    sections = [
        "Runs: " + ", ".join(f"`{r['dir']}`" for r in runs),
        "## Target PCK@0.05 (legacy), teacher where there is one",
        *(
            [
                "**Warning:** these runs predict different keypoint sets (or evaluate on different data); "
                "their numbers are not comparable."
            ]
            if differ
            else []
        ),
        _table(runs),
        *(
            [
                "Domain gap: a linear probe on each test crop's deconv feature means tells source from "
                "target; 2 (1 - 2 x its held-out error), 0 when the domains look alike to it, 2 when it "
                "tells every crop apart."
            ]
            if _has_domain_gap(runs)
            else []
        ),
        "## PCK against threshold\n\n![PCK curves](pck_curves.png)",
        "## Per keypoint\n\n![per keypoint](per_keypoint.png)",
        "## Training\n\n![training curves](training_curves.png)",
    ]
    if has_diagnostics:
        sections.append(
            "## What each alignment level does\n\nGradient each weighted term of eq. 8 sends into the student's "
            "shared layers, relative to L_sup's; the pose level's entropies as a fraction of their maximum "
            "(1.0: uniform, no gradient); the discriminator's accuracy per domain (0.5: chance).\n\n"
            "![alignment diagnostics](alignment_diagnostics.png)"
        )
    if has_grid:
        sections.append("## Predictions\n\n![predictions](predictions.png)")
    return sections
