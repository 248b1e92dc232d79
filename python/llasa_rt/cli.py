"""The `llasa-rt` command line.

Each command lives in a module `llasa_rt.commands.<name>` with a `register(subparsers)` function that
adds its parser and sets `func` to a callable taking the parsed arguments and returning an exit code.
Errors that llasa-rt raises on purpose (`LlasaError`) are printed as one line, exit code 2; so are
operating-system errors (a full disk, a read-only folder, a closed stream), with their file name. SIGTERM is
handled like Ctrl-C (exit 130) so that temporary files and folders are removed. The output of a failed command
is never left half-written (each command writes through a temporary file/folder).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from ._version import __version__
from .errors import LlasaError

# Command modules, in the order `llasa-rt --help` lists them.
COMMANDS = ["speak", "serve", "export", "info", "voice", "verifier", "compare", "quantize", "build_engine",
            "make_tiny"]


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


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llasa-rt` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except LlasaError as e:
        print(f"llasa-rt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the operating system refused: full disk, permissions, a closed stream, ...
        where = f" ({e.filename})" if e.filename else ""
        print(f"llasa-rt {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llasa-rt {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
