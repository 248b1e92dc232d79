"""`llasa-rt voice add|list|remove`: manage a bundle's reference voices.

`voice add` encodes a recording with the X-Codec2 encoder (PyTorch, needs the `export` extra) into
`voices/<name>.npz` and a manifest entry; `list` and `remove` need only the runtime (no torch).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _add(args: argparse.Namespace) -> int:
    from llasa_rt.errors import LlasaError

    try:
        from llasa_rt.export.voice import add_voice  # loads torch only once its own checks pass
    except ImportError as e:
        raise LlasaError(f"voice add needs the export extra ({e.name} is missing): "
                         "pip install 'llasa-rt[export]'") from e
    entry = add_voice(args.bundle, args.name, args.wav, args.text, codec_source=args.codec, overwrite=args.force)
    notes = [n for n, flag in (("resampled to 16 kHz", entry.resampled), ("cut to 10 s", entry.truncated)) if flag]
    print(f"added voice '{args.name}': {entry.seconds:.2f} s, {entry.num_codes} codes"
          + (f" ({', '.join(notes)})" if notes else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    from llasa_rt.bundle import Bundle

    bundle = Bundle.open(args.bundle, verify="fast")
    voices = bundle.manifest.voices
    if not voices:
        print(f"bundle '{bundle.root}' has no voices; add one with `llasa-rt voice add`", file=sys.stderr)
        return 0
    for name in sorted(voices):
        v = voices[name]
        print(f"{name}\t{v.seconds:.2f} s\t{v.num_codes} codes\t{v.transcript}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from llasa_rt.bundle.voices import remove_voice

    remove_voice(args.bundle, args.name)
    print(f"removed voice '{args.name}'")
    return 0


def register(subparsers: Any) -> None:
    """Adds `voice` with its subcommands to the llasa-rt parser."""
    parser = subparsers.add_parser("voice", help="add, list or remove reference voices of a bundle",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="voice_command", metavar="SUBCOMMAND", required=True)

    add = sub.add_parser("add", help="encode a recording + transcript into a reference voice")
    add.add_argument("--bundle", required=True, help="bundle folder")
    add.add_argument("--name", required=True, help="voice name (letters, digits, '_', '-')")
    add.add_argument("--wav", required=True, help="recording of the speaker (any rate; stereo is mixed down)")
    add.add_argument("--text", required=True, help="exactly what is said in the recording")
    add.add_argument("--codec", default=None,
                     help="X-Codec2 checkpoint (hub id or folder); default: the one the bundle was exported with")
    add.add_argument("--force", action="store_true", help="replace a voice of the same name")
    add.set_defaults(func=_add)

    lst = sub.add_parser("list", help="list the bundle's voices")
    lst.add_argument("--bundle", required=True, help="bundle folder")
    lst.set_defaults(func=_list)

    rm = sub.add_parser("remove", help="remove a voice")
    rm.add_argument("--bundle", required=True, help="bundle folder")
    rm.add_argument("--name", required=True, help="voice name")
    rm.set_defaults(func=_remove)
