"""Export trained weights from a checkpoint as safetensors, or the SR network as ONNX, to share or deploy.

    python -m tools.export --ckpt RUN/checkpoints/last.pt --output flow.safetensors
    python -m tools.export --ckpt JOINT_RUN/checkpoints/last.pt --part sr --output sr.safetensors
    python -m tools.export --ckpt SR_RUN/checkpoints/last.pt --format onnx --output sr.onnx

A safetensors file holds the weights the toolkit itself would use (the SR
network's EMA weights; the flow's weights) with the kind and config as
metadata, and no optimizer state or pickled objects. Every command that takes
``--ckpt`` (``degradation.synthesize``, ``sr.infer``, ``evaluate.py --model``,
SR training with ``--data.flow_ckpt``) accepts it in place of the ``.pt`` file.

ONNX (the SR network only, ``pip install onnx onnxruntime``): input ``lr``
(batch, 3, height, width) in [0, 1], any batch and size of at least 2x2;
output ``sr`` at ``scale`` times the size, not clamped. The export is run
with onnxruntime at two sizes and compared with PyTorch; the largest absolute
difference is printed (and a difference above 1e-4 is an error).
"""

from __future__ import annotations

import inspect
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from unpaired_sr.common.checkpoint import FLOW_KIND, JOINT_KIND, SR_KIND, export_weights, load_checkpoint, network_state
from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import atomic_write_bytes
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.sr.checkpoint import load_sr

NETWORK_KINDS = {"flow": FLOW_KIND, "sr": SR_KIND}


def export_checkpoint(ckpt: str | Path, out: str | Path, part: str | None = None) -> str:
    """Write ``out`` (``.safetensors``) from ``ckpt``; returns the kind written."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--output must end in .safetensors, got {out.name}")
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


ONNX_CHECK_SIZES = ((24, 32), (37, 29))  # LR (height, width): two sizes, one odd, to prove the axes are dynamic
ONNX_TOLERANCE = 1e-4


def export_onnx(ckpt: str | Path, out: str | Path, opset: int = 17) -> float:
    """Write the SR network of ``ckpt`` as ONNX with dynamic batch, height and width; returns the max abs
    difference to PyTorch over ``ONNX_CHECK_SIZES`` (onnxruntime, CPU)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime") from error
    model, _ = load_sr(ckpt)
    model.traceable = True  # the bicubic part as convolutions: the resize matrices fit one size only
    dynamic = {"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch", 2: "out_height", 3: "out_width"}}
    example = torch.rand(1, 3, *ONNX_CHECK_SIZES[0])
    exported = io.BytesIO()  # checked before it is written: no broken file is left
    with warnings.catch_warnings():
        # The TorchScript exporter: deprecated in favour of torch.export, which needs onnxscript
        # and differs across the torch versions this project supports; it traces this plain CNN exactly.
        warnings.simplefilter("ignore")
        options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(
            model,
            (example,),
            exported,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes=dynamic,
            opset_version=opset,
            **options,
        )
    model.traceable = False
    session = onnxruntime.InferenceSession(exported.getvalue(), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    difference = 0.0
    for height, width in ONNX_CHECK_SIZES:
        lr = torch.rand(2, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(lr).numpy()
        (got,) = session.run(None, {"lr": lr.numpy()})
        if got.shape != expected.shape:
            raise UserError(f"the ONNX export gives {got.shape} for {tuple(lr.shape)}, PyTorch {expected.shape}")
        difference = max(difference, float(np.abs(got - expected).max()))
    if difference > ONNX_TOLERANCE:
        raise UserError(f"the ONNX export differs from PyTorch by up to {difference:.2e} (> {ONNX_TOLERANCE})")
    try:
        atomic_write_bytes(out, exported.getvalue())
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror or error}") from error
    return difference


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m tools.export", __doc__)
    parser.add_argument("--ckpt", required=True, help="a flow, SR or joint checkpoint (.pt)")
    parser.add_output_option("the .safetensors or .onnx file to write")
    parser.add_argument("--part", choices=("flow", "sr"), help="which network of a joint checkpoint")
    parser.add_argument(
        "--format", choices=("safetensors", "onnx"), help="default: from the output's suffix (ONNX: the SR network)"
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    export_format = args.format or ("onnx" if output.suffix == ".onnx" else "safetensors")
    if export_format == "onnx":
        if args.part == "flow":
            raise UserError("ONNX export is for the SR network; export the flow as safetensors")
        if output.suffix != ".onnx":
            raise UserError(f"--output must end in .onnx for --format onnx, got {output.name}")
        difference = export_onnx(args.ckpt, output)
        size = output.stat().st_size / 1e6
        checked = " and ".join(f"{h}x{w}" for h, w in ONNX_CHECK_SIZES)
        print(
            f"wrote {output} (SR network, ONNX, {size:.1f} MB); onnxruntime vs PyTorch at LR {checked}: "
            f"max abs difference {difference:.2e}"
        )
        return
    kind = export_checkpoint(args.ckpt, output, args.part)
    size = output.stat().st_size / 1e6
    print(f"wrote {output} ({kind} weights, {size:.1f} MB)")


if __name__ == "__main__":
    main()
