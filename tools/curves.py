"""Training curves from runs' TensorBoard logs, as one figure.

    python -m tools.curves runs/demo --output runs/demo/curves.png

Finds every run folder (one with a ``tb/`` TensorBoard folder) under the given
folders and draws: the flow's NLL per domain (clean and real, bits/dim), the
SR networks' training L1 and their validation PSNR, each run labelled by its
folder name. Panels without data are left out.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from unpaired_sr.common.cli import ArgumentParser, command  # noqa: E402
from unpaired_sr.common.errors import UserError  # noqa: E402

# (panel title, y label, [(tag, line style suffix)]) in drawing order.
PANELS = (
    ("degradation flow: NLL per domain", "bits/dim", (("flow/nll_clean", "clean LR"), ("flow/nll_real", "real LR"))),
    ("SR: training loss", "L1", (("sr/l1", ""),)),
    ("SR: validation PSNR", "PSNR (dB, Y)", (("sr/val_psnr", ""), ("joint/val_psnr", "joint"))),
)


def read_scalars(run: Path) -> dict[str, tuple[list[int], list[float]]]:
    """tag -> (steps, values) from a run's ``tb/`` folder (all event files; a resumed run appends)."""
    accumulator = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags()["scalars"]:
        by_step = {event.step: event.value for event in accumulator.Scalars(tag)}  # a resumed step: the newest
        steps = sorted(by_step)
        series[tag] = (steps, [by_step[step] for step in steps])
    return series


def find_runs(folders: list[Path]) -> list[Path]:
    runs = []
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        runs += sorted({tb.parent for tb in folder.rglob("tb") if tb.is_dir()})
    if not runs:
        raise UserError(f"no training runs (folders with a tb/ TensorBoard log) under {', '.join(map(str, folders))}")
    return runs


def plot_curves(folders: list[Path], out: Path) -> list[str]:
    """Write the figure to ``out``; returns the titles of the panels drawn."""
    data = {run: read_scalars(run) for run in find_runs(folders)}
    panels = [panel for panel in PANELS if any(tag in series for series in data.values() for tag, _ in panel[2])]
    if not panels:
        raise UserError("the runs' logs hold none of the curves this figure draws (flow NLL, SR loss, SR PSNR)")
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for axis, (title, ylabel, tags) in zip(axes[0], panels):
        for run, series in data.items():
            for tag, suffix in tags:
                if tag in series:
                    label = run.name + (f" ({suffix})" if suffix else "")
                    axis.plot(*series[tag], label=label, marker="o" if len(series[tag][0]) < 15 else None)
        axis.set(title=title, xlabel="step", ylabel=ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return [panel[0] for panel in panels]


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m tools.curves", __doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders holding several")
    parser.add_output_option("the PNG to write", dest="out")
    args = parser.parse_args(argv)
    panels = plot_curves(args.folders, Path(args.out))
    print(f"wrote {args.out} ({'; '.join(panels)})")


if __name__ == "__main__":
    main()
