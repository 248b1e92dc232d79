"""`llasa-rt speak`: text -> speech with a bundle."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "speak", help="speak text with a bundle (to a file or raw PCM on stdout)",
        description="Speak TEXT (or standard input when TEXT is omitted) with a bundle made by `llasa-rt export "
                    "--codec ...`. Writes -o FILE (.wav / .flac / .ogg), or 16-bit mono PCM at 16 kHz to stdout "
                    "with --output-raw (e.g. | aplay -r 16000 -f S16_LE -t raw -). Sampling options default to the "
                    "bundle's (llasa-rt info BUNDLE).",
        epilog="example: llasa-rt speak --bundle llasa-1b-int4 \"Hello there.\" -o hello.wav")
    p.add_argument("text", nargs="?", help="text to speak (default: read standard input)")
    p.add_argument("--bundle", "-b", required=True, help="bundle folder")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", "-o", help="audio file to write (.wav, .flac or .ogg)")
    out.add_argument("--output-raw", action="store_true",
                     help="write raw 16-bit little-endian PCM (16 kHz mono) to stdout, chunk by chunk as it is made")
    p.add_argument("--voice", help="name of a reference voice in the bundle (llasa-rt voice list)")
    p.add_argument("--seed", type=int, help="sampling seed in [0, 2^64-1] (same seed + options = same audio)")
    p.add_argument("--temperature", type=float, help="softmax temperature; 0 = greedy")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--top-k", type=int, help="keep the k most likely codes; 0 = off")
    p.add_argument("--min-p", type=float, help="drop codes below min_p x the top probability")
    p.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeating codes")
    p.add_argument("--max-new-tokens", type=int, help="most codes per piece of text (50 per second)")
    p.add_argument("--candidates", type=int, default=1, help="sample N candidates, keep the most likely (default 1)")
    p.add_argument("--search", help="verifier-guided search: best-of-N (e.g. best-of-8) or beam:BxK[:C] (B beams x K "
                                    "children, pruned every C tokens; e.g. beam:2x4:50)")
    p.add_argument("--prm", help="process verifiers of a beam search, comma-separated bundle verifier names "
                                 "(e.g. speaker)")
    p.add_argument("--orm", help="outcome verifiers that pick the final candidate (e.g. asr,speaker)")
    p.add_argument("--report", help="write every candidate's scores and the search's timings to this JSON file")
    p.add_argument("--chunking", default="sentences", choices=["sentences", "paper"],
                   help="how long text is split: at sentences (default), or the Llasa paper's rule (> 100 "
                        "characters -> 2 chunks, > 200 -> 3, ...)")
    p.add_argument("--no-split", action="store_true", help="do not split long text at sentences (error if too long)")
    p.add_argument("--no-normalise", action="store_true",
                   help="read numbers, dates, currencies, ... as written (default: spelled out for English text)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all physical cores)")
    p.add_argument("--native-decode", default="auto", metavar="MODE",
                   help="layered int4/int8 bundles: decode steps on llasa-rt's own kernels: auto (on AVX-512 VNNI "
                        "CPUs), off (ONNX Runtime), or a kernel: avx512vnni, avx2, scalar (default auto)")
    p.add_argument("--fast-load", action="store_true", help="skip checking the bundle files' sha256 on load")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on stderr")
    p.set_defaults(func=run)


def read_utf8(data: bytes, what: str) -> str:
    """Decodes UTF-8 strictly; invalid bytes are refused with their offset (a BOM is dropped)."""
    from llasa_rt.errors import InputError

    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} cannot be "
                         "decoded; convert the text to UTF-8 (e.g. iconv -t UTF-8)") from None


def _text(args: argparse.Namespace) -> str:
    from llasa_rt.errors import InputError

    if args.text is not None:
        return args.text
    if sys.stdin is None or sys.stdin.closed:
        raise InputError("no text given and standard input is closed: pass TEXT as an argument")
    if sys.stdin.isatty():
        raise InputError("no text given: pass TEXT as an argument or pipe it on standard input")
    return read_utf8(sys.stdin.buffer.read(), "standard input")


def generation_options(args: argparse.Namespace):  # -> llasa_rt.GenerationOptions
    """The one GenerationOptions of a CLI call, from its sampling flags."""
    from llasa_rt.errors import InputError
    from llasa_rt.options import GenerationOptions
    from llasa_rt.search import Search

    search = None
    if args.search:
        search = Search.parse(args.search, prm=args.prm or (), orm=args.orm or ())
    elif args.prm or args.orm:
        raise InputError("--prm and --orm need --search (e.g. --search best-of-8 --orm asr)")
    return GenerationOptions(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                             repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens,
                             seed=args.seed, num_candidates=args.candidates, search=search)


def _write_raw(engine, text: str, options, args: argparse.Namespace) -> int:
    """Streams 16-bit PCM to stdout; a closed reader stops generation quietly, a failing stream with one line."""
    import os

    from llasa_rt.audio import to_pcm16
    from llasa_rt.errors import LlasaError

    if sys.stdout is None or sys.stdout.closed:
        raise LlasaError("standard output is closed; redirect it to a file or a player, or use -o FILE")
    stdout = sys.stdout.buffer
    samples = 0
    chunks = engine.speak_stream(text, options, voice=args.voice, split=not args.no_split, chunking=args.chunking,
                                 normalise=not args.no_normalise)
    try:
        for chunk in chunks:
            stdout.write(to_pcm16(chunk))
            stdout.flush()
            samples += len(chunk)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop generating, quietly
        # Python would report the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise LlasaError(f"cannot write to standard output ({e.strerror or e}); generation stopped") from None
    finally:
        chunks.close()  # stops the generation thread before anything else happens
    if not args.quiet:
        print(f"llasa-rt speak: {samples / engine.sample_rate:.2f} s of audio", file=sys.stderr)
    return 0


def _write_report(path: str, audio) -> None:
    import json
    from pathlib import Path

    from llasa_rt.bundle.writer import write_bytes_atomic
    from llasa_rt.errors import InputError

    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"cannot write the report '{target}': folder '{target.parent}' does not exist")
    report = audio.report or {"search": None, "pieces": []}
    write_bytes_atomic(target, (json.dumps(report, indent=1) + "\n").encode("utf-8"))


def run(args: argparse.Namespace) -> int:
    from llasa_rt.audio import FORMATS
    from llasa_rt.engine import Engine
    from llasa_rt.errors import InputError

    if args.output and not args.output.lower().endswith(tuple(FORMATS)):
        raise InputError(f"cannot write '{args.output}': use a .wav, .flac or .ogg file name (or --output-raw)")
    if args.output_raw and args.candidates != 1:
        raise InputError("--output-raw streams one candidate; drop --candidates (or use --search)")
    if args.report and not args.output:
        raise InputError("--report is written with -o FILE (a streamed --output-raw run has no report)")
    if args.chunking == "paper" and args.no_split:
        raise InputError("--chunking paper splits the text; drop --no-split")
    options = generation_options(args)  # checked before the (slow) bundle load
    text = _text(args)
    engine = Engine(args.bundle, threads=args.threads, verify="fast" if args.fast_load else "full",
                    native_decode=args.native_decode)
    if args.output_raw:
        return _write_raw(engine, text, options, args)
    audio = engine.speak(text, options, voice=args.voice, split=not args.no_split, chunking=args.chunking,
                         normalise=not args.no_normalise)
    audio.save(args.output)
    if args.report:
        _write_report(args.report, audio)
    if not args.quiet:
        t = audio.timings
        print(f"llasa-rt speak: wrote {args.output} ({audio.duration:.2f} s; {t['total_s']:.2f} s to make, "
              f"RTF {t['rtf']:.2f}; seed {audio.seed})", file=sys.stderr)
    return 0
