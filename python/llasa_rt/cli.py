"""The `llasa-rt` command line.

Each command lives in a module `llasa_rt.commands.<name>` with a `register(subparsers)` function that
adds its parser and sets `func` to a callable taking the parsed arguments and returning an exit code.
Errors that llasa-rt raises on purpose (`LlasaError`) are printed as one line, exit code 2; the output
of a failed command is never left half-written (each command writes through a temporary file/folder).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__
from .errors import LlasaError

# Command modules, in the order `llasa-rt --help` lists them.
COMMANDS = ["speak", "export", "info", "voice", "compare", "make_tiny"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llasa-rt",
        description="Run Llasa text-to-speech on CPUs and edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"llasa-rt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"llasa_rt.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llasa-rt` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except LlasaError as e:
        print(f"llasa-rt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llasa-rt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
