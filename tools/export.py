"""Export trained weights from a checkpoint as safetensors, to share or deploy.

    python -m tools.export --ckpt RUN/checkpoints/last.pt --out flow.safetensors
    python -m tools.export --ckpt JOINT_RUN/checkpoints/last.pt --part sr --out sr.safetensors

The file holds the weights the toolkit itself would use (the SR network's
EMA weights; the flow's weights) with the kind and config as metadata, and no
optimizer state or pickled objects. Every command that takes ``--ckpt``
(``degradation.synthesize``, ``sr.infer``, ``evaluate.py --model``, SR
training with ``--data.flow_ckpt``) accepts it in place of the ``.pt`` file.
"""

from __future__ import annotations

from pathlib import Path

from common.checkpoint import export_weights, load_checkpoint
from common.cli import ArgumentParser, run_cli
from common.errors import UserError

# What each part of each kind of checkpoint exports: (kind written, weights key, config key).
PARTS = {
    ("degradation_flow", "flow"): ("degradation_flow", "model", "config"),
    ("sr", "sr"): ("sr", "ema", "config"),
    ("joint", "flow"): ("degradation_flow", "flow", "flow_config"),
    ("joint", "sr"): ("sr", "sr_ema", "sr_config"),
}
DEFAULT_PART = {"degradation_flow": "flow", "sr": "sr"}


def export_checkpoint(ckpt: str | Path, out: str | Path, part: str | None = None) -> str:
    """Write ``out`` (``.safetensors``) from ``ckpt``; returns the kind written."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out.name}")
    state = load_checkpoint(ckpt, ("degradation_flow", "sr", "joint"))
    if state.get("exported"):
        raise UserError(f"{ckpt} is an export already")
    part = part or DEFAULT_PART.get(state["kind"])
    if part is None:
        raise UserError(f"{ckpt} is a joint checkpoint: say which network with --part flow or --part sr")
    if (state["kind"], part) not in PARTS:
        raise UserError(f"{ckpt} holds no {part} network (it is a {state['kind']} checkpoint)")
    kind, weights_key, config_key = PARTS[state["kind"], part]
    export_weights(out, kind, state[weights_key], state[config_key])
    # Read it back the way every command will, so a broken export fails here and not later.
    if kind == "sr":
        from sr.checkpoint import load_sr

        load_sr(out)
    else:
        from degradation.checkpoint import load_flow

        load_flow(out)
    return kind


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m tools.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a flow, SR or joint checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--part", choices=("flow", "sr"), help="which network of a joint checkpoint")
    args = parser.parse_args(argv)
    kind = export_checkpoint(args.ckpt, args.out, args.part)
    size = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({kind} weights, {size:.1f} MB)")


if __name__ == "__main__":
    run_cli(main)
