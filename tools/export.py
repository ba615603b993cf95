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

from common.checkpoint import FLOW_KIND, JOINT_KIND, SR_KIND, export_weights, load_checkpoint, network_state
from common.cli import ArgumentParser, run_cli
from common.errors import UserError
from degradation.checkpoint import load_flow
from sr.checkpoint import load_sr

NETWORK_KINDS = {"flow": FLOW_KIND, "sr": SR_KIND}


def export_checkpoint(ckpt: str | Path, out: str | Path, part: str | None = None) -> str:
    """Write ``out`` (``.safetensors``) from ``ckpt``; returns the kind written."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out.name}")
    state = load_checkpoint(ckpt, (FLOW_KIND, SR_KIND, JOINT_KIND))
    if state.get("exported"):
        raise UserError(f"{ckpt} is an export already")
    part = part or {FLOW_KIND: "flow", SR_KIND: "sr"}.get(state["kind"])
    if part is None:
        raise UserError(f"{ckpt} is a joint checkpoint: say which network with --part flow or --part sr")
    if state["kind"] not in (NETWORK_KINDS[part], JOINT_KIND):
        raise UserError(f"{ckpt} holds no {part} network (it is a {state['kind']} checkpoint)")
    saved, kind = network_state(state, part), NETWORK_KINDS[part]
    # The weights the toolkit itself uses: the SR network's EMA, where there is one.
    export_weights(out, kind, saved.get("ema") or saved["model"], saved["config"])
    # Read it back the way every command will, so a broken export fails here and not later.
    (load_sr if kind == SR_KIND else load_flow)(out)
    return kind


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m tools.export", __doc__)
    parser.add_argument("--ckpt", required=True, help="a flow, SR or joint checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--part", choices=("flow", "sr"), help="which network of a joint checkpoint")
    args = parser.parse_args(argv)
    kind = export_checkpoint(args.ckpt, args.out, args.part)
    size = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({kind} weights, {size:.1f} MB)")


if __name__ == "__main__":
    run_cli(main)
