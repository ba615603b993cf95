"""Run the whole pipeline: 1) the degradation flow alone, 2) SR on flow-synthesized pairs, 3) the joint phase.

    python train_joint.py --config configs/joint.yaml --data.clean_dir HR_DIR --data.real_dir REAL_LR_DIR \\
        --output RUN_DIR
    python train_joint.py --config configs/joint.yaml ... --stages joint --flow-ckpt A --sr-ckpt B --output RUN_DIR
    python train_joint.py --resume RUN_DIR

One run folder: ``config.yaml``, one sub-folder per stage (``flow/``, ``sr/``,
``joint/``, each with its checkpoints, TensorBoard logs and figures) and
``summary.json`` with each stage's final numbers. ``--resume RUN_DIR`` goes
on at the stage and step where the run stopped; finished stages are skipped.
``--max-steps N`` caps every stage at N steps of this call (smoke runs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unpaired_sr.common.checkpoint import FLOW_KIND, JOINT_KIND, SR_KIND, load_checkpoint
from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.config import fields_help, load_config, save_config
from unpaired_sr.common.distributed import launched_rank
from unpaired_sr.common.errors import TrainingStopped, UserError
from unpaired_sr.common.files import atomic_write_bytes
from unpaired_sr.common.image_io import list_images
from unpaired_sr.degradation.train import train as train_flow
from unpaired_sr.joint.config import PipelineConfig, flow_stage_config, sr_stage_config
from unpaired_sr.joint.train import train_joint
from unpaired_sr.sr.train import train as train_sr

STAGES = ("flow", "sr", "joint")


def stage_state(run: Path, kind: str) -> tuple[Path | None, int]:
    """The stage's last checkpoint (or None) and the step it reached."""
    last = run / "checkpoints" / "last.pt"
    if not last.exists():
        return None, 0
    return last, load_checkpoint(last, kind)["step"]


def pipeline_folder(path: Path) -> Path:
    """The pipeline run folder ``--resume`` names: the folder itself, or a stage folder or checkpoint inside it."""
    for folder in (path, *path.parents):
        # Each stage folder has a config.yaml too: the pipeline's is the one beside the stage folders.
        if (folder / "config.yaml").exists() and any((folder / stage).is_dir() for stage in STAGES):
            return folder
    raise UserError(f"{path} is not in a pipeline run folder (one with config.yaml and flow/, sr/ or joint/)")


def run_pipeline(
    config: PipelineConfig,
    out: str | Path,
    stages: tuple[str, ...] = STAGES,
    flow_ckpt: str | None = None,
    sr_ckpt: str | None = None,
    max_steps: int | None = None,
) -> dict:
    """Run ``stages`` in order in ``out``; a stage already started there is resumed, a finished one skipped."""
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r}; stages are {', '.join(STAGES)}")
    if not config.data.clean_dir or not config.data.real_dir:
        raise UserError("set both --data.clean_dir (HR photos) and --data.real_dir (real LR images)")
    # The folders are checked before the run folder exists: a typo must not leave a run behind that
    # the corrected command would then refuse to overwrite.
    list_images(config.data.clean_dir, "clean HR folder (--data.clean_dir)")
    list_images(config.data.real_dir, "real LR folder (--data.real_dir)")
    out = Path(out)
    main_process = launched_rank() == 0  # under torchrun only rank 0 writes the run's files
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run folder {out}: {error.strerror or error}") from error
    if main_process:
        save_config(config, out / "config.yaml")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"stages": {}}

    def run_stage(name: str, kind: str, n_iter: int, train_fn) -> str:
        run = out / name
        last, step = stage_state(run, kind)
        if last is not None and step >= n_iter:
            if main_process:
                print(f"stage {name}: finished earlier ({step} steps), skipped")
        else:
            monitor = train_fn(run, last, max_steps)
            summary["stages"][name] = {"checkpoint": str(run / "checkpoints" / "last.pt"), "final": monitor}
            if main_process:
                atomic_write_bytes(summary_path, json.dumps(summary, indent=2).encode())
        return str(run / "checkpoints" / "last.pt")

    if "flow" in stages:
        flow_ckpt = run_stage(
            "flow",
            FLOW_KIND,
            config.flow_train.n_iter,
            lambda run, last, cap: train_flow(flow_stage_config(config), run, last, cap),
        )
    if "sr" in stages:
        if flow_ckpt is None:
            raise UserError("the sr stage needs a flow: run the flow stage too or give --flow-ckpt")
        sr_config = sr_stage_config(config, flow_ckpt)
        sr_ckpt = run_stage(
            "sr", SR_KIND, config.sr_train.n_iter, lambda run, last, cap: train_sr(sr_config, run, last, cap)
        )
    if "joint" in stages:
        if flow_ckpt is None or sr_ckpt is None:
            raise UserError(
                "the joint stage needs a flow and an SR network: run their stages or give --flow-ckpt and --sr-ckpt"
            )
        run_stage(
            "joint",
            JOINT_KIND,
            config.train.n_iter,
            lambda run, last, cap: train_joint(config, run, flow_ckpt, sr_ckpt, last, cap),
        )
    return summary


SUMMARY_KEYS = (  # the numbers worth a glance per stage (a collapsing joint flow shows in the last three)
    "nll_clean",
    "nll_real",
    "l1",
    "val_psnr",
    "best_psnr",
    "residual_std",
    "val_frechet_8x8",
    "disc_accuracy",
)


def describe_summary(summary: dict) -> list[str]:
    """One line per stage this run trained: its main final numbers and checkpoint (all of them: summary.json)."""
    lines = []
    for name, stage in summary["stages"].items():
        final = stage.get("final", {})
        numbers = " ".join(f"{key}={final[key]:.4f}" for key in SUMMARY_KEYS if key in final)
        lines.append(f"{name}: {numbers} -> {stage['checkpoint']}")
    return lines


@command
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser("python train_joint.py", __doc__, epilog=fields_help(PipelineConfig, argv))
    parser.add_argument("--config", help="YAML config (default with --resume: RUN_DIR/config.yaml)")
    parser.add_output_option("run folder", dest="out", required=False)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run where it stopped")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of flow,sr,joint")
    parser.add_argument("--flow-ckpt", help="a trained flow, when the flow stage is not run")
    parser.add_argument("--sr-ckpt", help="a trained SR network, when the sr stage is not run")
    parser.add_argument("--device", help="auto, cpu or cuda (all stages)")
    parser.add_argument("--max-steps", type=int, help="cap every stage at this many steps of this call")
    args, overrides = parser.parse_known_args(argv)
    if args.resume:
        out = pipeline_folder(Path(args.resume))
        source = args.config or out / "config.yaml"
    else:
        if not args.config or not args.out:
            raise UserError("give --config and --output (or --resume RUN_DIR)")
        out, source = Path(args.out), args.config
        if (out / "summary.json").exists() or any((out / stage / "checkpoints").exists() for stage in STAGES):
            raise UserError(f"{out} already holds a run; continue it with --resume {out}")
    device_words = []
    if args.device:
        for section in ("flow_train", "sr_train", "train"):
            device_words += [f"--{section}.device", args.device]
    config = load_config(PipelineConfig, source, overrides + device_words)
    stages = tuple(stage.strip() for stage in args.stages.split(",") if stage.strip())
    try:
        summary = run_pipeline(config, out, stages, args.flow_ckpt, args.sr_ckpt, args.max_steps)
    except TrainingStopped as stopped:  # a stage's own hint names its checkpoint; the pipeline resumes its folder
        stage_words = "" if args.stages == ",".join(STAGES) else f" --stages {args.stages}"
        raise stopped.resumed_by(f"{parser.prog} --resume {out}{stage_words}") from None
    if launched_rank() == 0:
        for line in describe_summary(summary):
            print(line)
        print(f"run folder: {out} (summary.json, config.yaml, {', '.join(stages)}/)")


if __name__ == "__main__":
    main()
