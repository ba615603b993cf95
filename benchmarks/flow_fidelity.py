"""How close are the flow's degradations to the real ones? A benchmark on a synthetic benchmark.

    python benchmarks/flow_fidelity.py --bench /tmp/demo --train-steps 3000 --out runs/flow_fidelity
    python benchmarks/flow_fidelity.py --bench /tmp/demo --ckpt RUN/checkpoints/last.pt --out runs/flow_fidelity

On ``train_hr`` (whose true degradation ``train_oracle_lr`` the flow never
sees), residuals against the clean LR of the same image are compared:
``synth_lr - clean_lr`` (the flow, several temperatures) against
``oracle_lr - clean_lr`` (the truth). Statistics: per-channel std,
cross-channel correlation, lag-1 spatial autocorrelation, and the Frechet
distance between Gaussian fits of 8x8x3 residual patches. Two references
stand beside the flow: no degradation (residual 0) and white Gaussian noise
with the real residual's per-channel std. Prints one JSON line per arm and
writes ``fidelity.json``, ``fidelity.md`` and a figure (clean | T=0.5/0.8/1.0 | oracle).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import load_config  # noqa: E402
from common.figures import grid, upscale_nearest  # noqa: E402
from data_tools.image_io import image_to_tensor, list_images, read_image, write_image  # noqa: E402
from data_tools.matlab_resize import clean_lr_from_hr  # noqa: E402
from data_tools.prepare_demo import prepare_demo  # noqa: E402
from degradation.checkpoint import load_flow  # noqa: E402
from degradation.config import FlowConfig  # noqa: E402
from degradation.synthesize import degrade_image, sample_seed  # noqa: E402
from degradation.train import train  # noqa: E402

TEMPERATURES = (0.5, 0.8, 1.0)
PATCH = 8


def residual_statistics(residuals: list[np.ndarray]) -> dict[str, float | list[float]]:
    """Std per channel, mean cross-channel correlation, mean lag-1 autocorrelation of (H, W, 3) residuals."""
    pixels = np.concatenate([r.reshape(-1, 3) for r in residuals])
    std = pixels.std(axis=0)
    if np.all(std < 1e-8):
        return {"std": std.tolist(), "cross_channel_corr": 0.0, "lag1_autocorr": 0.0}
    corr = np.corrcoef(pixels.T)
    cross = float(np.mean([corr[0, 1], corr[0, 2], corr[1, 2]]))
    horizontal = np.concatenate([np.stack([r[:, :-1].ravel(), r[:, 1:].ravel()]) for r in residuals], axis=1)
    vertical = np.concatenate([np.stack([r[:-1].ravel(), r[1:].ravel()]) for r in residuals], axis=1)
    lag1 = float((np.corrcoef(horizontal)[0, 1] + np.corrcoef(vertical)[0, 1]) / 2)
    return {"std": std.tolist(), "cross_channel_corr": cross, "lag1_autocorr": lag1}


def patches(residuals: list[np.ndarray], stride: int = 4) -> np.ndarray:
    """All 8x8x3 patches (stride 4) as rows of 192 values."""
    rows = []
    for r in residuals:
        windows = np.lib.stride_tricks.sliding_window_view(r, (PATCH, PATCH, 3))[::stride, ::stride, 0]
        rows.append(windows.reshape(-1, PATCH * PATCH * 3))
    return np.concatenate(rows).astype(np.float64)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two sets of row vectors (in 0-255 units squared).

    ``|mu_a - mu_b|^2 + Tr(A + B - 2 (A^1/2 B A^1/2)^1/2)``: the symmetric form is exact for
    covariance matrices and stays well defined when one of them is singular (no degradation).
    """
    a, b = a * 255.0, b * 255.0
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def evaluate(flow, bench: Path, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    names = [p.stem for p in list_images(bench / "train_hr")]
    scale = json.loads((bench / "benchmark.json").read_text())["scale"]
    clean, oracle = {}, {}
    for name in names:
        hr = image_to_tensor(read_image(bench / "train_hr" / f"{name}.png"))
        clean[name] = clean_lr_from_hr(hr[None], scale)[0]
        oracle[name] = read_image(bench / "train_oracle_lr" / f"{name}.png")
    clean_np = {n: c.permute(1, 2, 0).numpy() for n, c in clean.items()}
    real_residuals = [oracle[n] - clean_np[n] for n in names]
    real_patches = patches(real_residuals)
    real_std = np.concatenate([r.reshape(-1, 3) for r in real_residuals]).std(axis=0)
    rng = np.random.default_rng(seed)
    arms: dict[str, list[np.ndarray]] = {
        "real (oracle)": real_residuals,
        "no degradation": [np.zeros_like(r) for r in real_residuals],
        "white gaussian (real std)": [rng.normal(0, real_std, r.shape) for r in real_residuals],
    }
    synthesized = {}
    for temperature in TEMPERATURES:
        outputs = {n: degrade_image(flow, clean[n], temperature, sample_seed(seed, n)) for n in names}
        synthesized[temperature] = outputs
        arms[f"flow T={temperature}"] = [outputs[n].permute(1, 2, 0).numpy() - clean_np[n] for n in names]
    rows = []
    for arm, residuals in arms.items():
        row = {"arm": arm, **residual_statistics(residuals)}
        row["frechet_8x8"] = 0.0 if arm == "real (oracle)" else frechet_distance(patches(residuals), real_patches)
        rows.append(row)
    # Figure: four crops, clean | flow at each temperature | oracle.
    shown = names[:: max(1, len(names) // 4)][:4]
    to_image = lambda x: upscale_nearest(np.clip(x, 0, 1), 4)
    figure_rows = [
        [
            to_image(clean_np[n]),
            *(to_image(synthesized[t][n].permute(1, 2, 0).numpy()) for t in TEMPERATURES),
            to_image(oracle[n]),
        ]
        for n in shown
    ]
    figure = grid(figure_rows, ["clean LR", *(f"flow T={t}" for t in TEMPERATURES), "true degradation"])
    return rows, figure


def markdown(rows: list[dict]) -> str:
    lines = [
        "| arm | std R/G/B (x255) | cross-channel corr | lag-1 autocorr | Frechet 8x8 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        std = "/".join(f"{s * 255:.2f}" for s in row["std"])
        lines.append(
            f"| {row['arm']} | {std} | {row['cross_channel_corr']:.3f} | {row['lag1_autocorr']:.3f} | "
            f"{row['frechet_8x8']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="benchmark folder (default: build the demo benchmark in a temp folder)")
    parser.add_argument("--ckpt", help="a trained flow; without it one is trained")
    parser.add_argument("--config", default="configs/deflow_light.yaml")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/flow_fidelity")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bench = Path(args.bench) if args.bench else Path(tempfile.mkdtemp(prefix="demo-bench-")) / "bench"
    if not (bench / "benchmark.json").exists():
        prepare_demo(bench)
    report: dict = {"bench": str(bench)}
    ckpt = args.ckpt
    if ckpt is None:
        run = out / "flow_run"
        config = load_config(
            FlowConfig,
            args.config,
            [
                "--data.clean_dir", str(bench / "train_hr"),
                "--data.real_dir", str(bench / "train_real_lr"),
                "--train.n_iter", str(args.train_steps),
                "--train.device", args.device,
                "--train.sample_every", str(args.train_steps),
                "--train.save_every", str(args.train_steps),
            ],
        )  # fmt: skip
        start = time.perf_counter()
        monitor = train(config, run, resume=run / "checkpoints" / "last.pt" if (run / "checkpoints").exists() else None)
        seconds = time.perf_counter() - start
        report["training"] = {
            "steps": args.train_steps,
            "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / args.train_steps, 4),
            "final_nll_clean_bpd": round(monitor.get("nll_clean", float("nan")), 4),
            "final_nll_real_bpd": round(monitor.get("nll_real", float("nan")), 4),
            "device": args.device,
        }
        print(json.dumps(report["training"]))
        ckpt = run / "checkpoints" / "last.pt"
    flow, _ = load_flow(ckpt, args.device)
    rows, figure = evaluate(flow, bench)
    for row in rows:
        print(json.dumps(row))
    report["arms"] = rows
    (out / "fidelity.json").write_text(json.dumps(report, indent=2))
    (out / "fidelity.md").write_text(markdown(rows) + "\n")
    write_image(out / "fidelity.png", figure)
    print(markdown(rows))
    print(f"wrote {out / 'fidelity.json'}, {out / 'fidelity.md'}, {out / 'fidelity.png'}")


if __name__ == "__main__":
    main()
