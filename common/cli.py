"""Command-line glue shared by every entry point."""

import sys
from collections.abc import Callable

from common.errors import UserError


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and turn a ``UserError`` into one line on stderr and exit code 2.

    Ctrl-C exits with 130 and a short message instead of a traceback.
    """
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
