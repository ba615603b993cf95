"""Command-line glue shared by every entry point."""

import sys
from collections.abc import Callable

from common.errors import TrainingStopped, UserError


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
