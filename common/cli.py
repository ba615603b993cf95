"""Command-line glue shared by every entry point."""

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from unpaired_sr.common.errors import TrainingStopped, UserError
from unpaired_sr.common.image_io import set_max_pixels

COMMAND_PREFIX = "usr-"  # the installed commands' names (pyproject.toml): usr-infer, usr-train-flow, ...


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``error:`` line (and exit status 2), like every other input error.

    ``doc`` is the program's module docstring: its first paragraph is the
    description, laid out as written.
    """

    def __init__(self, prog: str, doc: str, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        command = Path(sys.argv[0]).name
        if command.startswith(COMMAND_PREFIX):  # run as an installed command: its help and hints name it
            prog = command
        super().__init__(prog=prog, description=doc.split("\n\n")[0], **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def add_output_option(self, help: str, dest: str = "output", required: bool = True) -> None:
        """``--output`` (the one spelling every command uses), with the old ``--out`` accepted for one release."""
        group = self.add_mutually_exclusive_group(required=required)
        group.add_argument("--output", dest=dest, metavar="OUTPUT", help=help)
        group.add_argument("--out", dest=dest, action=_DeprecatedSpelling, new="--output", help=argparse.SUPPRESS)

    def add_folder_options(self, output: str) -> None:
        """``--device``, ``--overwrite`` and ``--max-pixels``: what every program over image folders takes."""
        self.add_argument("--device", default="auto", help="auto, cpu or cuda")
        self.add_argument("--overwrite", action="store_true", help=f"replace a non-empty {output}")
        self.add_argument("--max-pixels", type=at_least(1), help="refuse larger images, in pixels (default 200000000)")

    def parse_folder_args(self, argv: list[str] | None) -> argparse.Namespace:
        """``parse_args``, then the ``--max-pixels`` limit set for this process (and taken out of the result)."""
        args = self.parse_args(argv)
        if args.max_pixels:
            set_max_pixels(args.max_pixels)
        del args.max_pixels
        return args


class _DeprecatedSpelling(argparse.Action):
    """An old option name that still works, with one line saying the new one."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now {self.new}; the old spelling goes in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


def resume_checkpoint(path: str | Path) -> Path:
    """What ``--resume`` names: a run folder (its ``checkpoints/last.pt``) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        last = path / "checkpoints" / "last.pt"
        if not last.exists():
            raise UserError(f"{path} holds no checkpoints/last.pt to resume from")
        return last
    return path


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a training checkpoint lies in (``RUN/checkpoints/x.pt`` -> ``RUN``), else its folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and turn a ``UserError`` into one line on stderr and exit code 2.

    A training run stopped by SIGINT/SIGTERM (after writing its checkpoint)
    exits with 128 + the signal number, as a process killed by it would; a
    second Ctrl-C exits with 130 and a short message instead of a traceback.
    """
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def command(main: Callable[[list[str] | None], object]) -> Callable[[list[str] | None], None]:
    """Make a program's ``main(argv)`` its command: run through ``run_cli`` (errors as one line and an exit status).

    The same function serves ``python -m ...`` (``if __name__ == "__main__": main()``) and the installed
    command (``pyproject.toml``, ``[project.scripts]``).
    """

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> None:
        run_cli(main, argv)

    return run


def at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse ``type`` that parses ``kind`` and refuses values below ``low`` (argparse then exits 2)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from error
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    return parse
