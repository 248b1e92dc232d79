"""`llasa-rt verifier export|add|list|remove|embed|score`: manage and try a bundle's verifiers.

`export` converts speaker / ASR models (PyTorch, needs the `export` extra; `--speaker resemblyzer` also the
`resemblyzer` extra) or installs pocketsphinx's English aligner (`pocketsphinx` extra). `add` takes your own ONNX
graph (contract in docs/verifiers.md). `list`, `remove`, `embed` and `score` need only the runtime (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _export(args: argparse.Namespace) -> int:
    from llasa_rt.errors import InputError, LlasaError

    if not (args.speaker or args.asr or args.align):
        raise InputError("nothing to export: pass --speaker resemblyzer|ID_OR_DIR, --asr ID_OR_DIR and/or "
                         "--align pocketsphinx")
    if args.align is not None and args.align != "pocketsphinx":
        raise InputError(f"--align takes 'pocketsphinx', not {args.align!r}")
    if args.speaker or args.asr:
        try:
            from llasa_rt.export.verifiers import export_verifiers  # loads torch only inside each exporter
        except ImportError as e:
            raise LlasaError(f"verifier export needs the export extra ({e.name} is missing): "
                             "pip install 'llasa-rt[export]'") from e
    else:
        from llasa_rt.verifiers.alignment import install_pocketsphinx

        install_pocketsphinx(args.bundle, args.align_name or "align-en", args.force)
        print(f"added verifier '{args.align_name or 'align-en'}' (alignment)")
        return 0
    entries = export_verifiers(args.bundle, speaker=args.speaker, asr=args.asr, align=args.align,
                               speaker_name=args.speaker_name, asr_name=args.asr_name, align_name=args.align_name,
                               overwrite=args.force)
    for name, entry in entries.items():
        print(f"added verifier '{name}' ({entry.kind})")
    return 0


def _add(args: argparse.Namespace) -> int:
    from llasa_rt.bundle import Bundle
    from llasa_rt.verifiers.store import add_verifier, check_verifier_name, custom_details, prepare_add

    check_verifier_name(args.name)
    prepare_add(Bundle.open(args.bundle, verify="fast"), args.name, args.force)  # before reading the graph
    details = custom_details(args.onnx, args.kind, batching=args.batching, min_samples=args.min_samples,
                             empty_score=args.empty_score, vocab=args.vocab, blank=args.blank_token,
                             delimiter=args.word_delimiter)
    entry = add_verifier(args.bundle, args.name, args.onnx, args.kind, details, overwrite=args.force)
    print(f"added verifier '{args.name}' ({entry.kind}) -> {entry.file}")
    return 0


def describe_entry(name: str, entry: Any, voices: dict[str, Any]) -> str:
    """One line about a verifier: name, kind, model, its main facts, and for speaker kinds the voices embedded."""
    d = entry.details
    facts = [entry.kind, str(d.get("model") or d.get("engine") or "custom")]
    if entry.kind == "speaker":
        facts.append(f"{d.get('embedding_dim')}-dim")
        embedded = sorted(v for v, e in voices.items() if name in e.embeddings)
        facts.append(f"voices embedded: {', '.join(embedded) or 'none'}")
    elif entry.kind == "asr":
        facts.append(f"{len(d.get('vocabulary') or [])} tokens")
    if d.get("batching"):
        facts.append(f"batching {d['batching']}")
    return f"{name}\t" + ", ".join(facts)


def _list(args: argparse.Namespace) -> int:
    from llasa_rt.bundle import Bundle

    bundle = Bundle.open(args.bundle, verify="fast")
    verifiers = bundle.manifest.verifiers
    if not verifiers:
        print(f"bundle '{bundle.root}' has no verifiers; add them with `llasa-rt verifier export` or `verifier add`",
              file=sys.stderr)
        return 0
    for name in sorted(verifiers):
        print(describe_entry(name, verifiers[name], bundle.manifest.voices))
    return 0


def _remove(args: argparse.Namespace) -> int:
    from llasa_rt.verifiers.store import remove_verifier

    remove_verifier(args.bundle, args.name)
    print(f"removed verifier '{args.name}'")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from llasa_rt.verifiers.store import embed_voices

    done = embed_voices(args.bundle, force=args.force, threads=args.threads)
    if not done:
        print("the bundle has no speaker verifiers", file=sys.stderr)
    for name, voices in done.items():
        print(f"{name}: embedded {', '.join(voices) if voices else 'nothing new'}")
    return 0


def read_wav(path: str, rate: int) -> Any:
    """A file's samples as float32 mono at `rate` (mixed down and resampled as needed)."""
    import numpy as np
    import soundfile as sf

    from llasa_rt.errors import InputError
    from llasa_rt.export.voice_audio import resample  # numpy only

    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for missing / non-audio files
        raise InputError(f"'{path}' is not a readable audio file ({type(e).__name__})") from e
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, int(file_rate), rate) if file_rate != rate else mono.astype(np.float32)


def _score(args: argparse.Namespace) -> int:
    from llasa_rt.bundle import Bundle
    from llasa_rt.verifiers import ScoreContext, load_verifier

    bundle = Bundle.open(args.bundle, verify="fast")
    verifier = load_verifier(bundle, args.name, args.threads)
    audios = [read_wav(p, verifier.sample_rate) for p in args.wav]
    rows = verifier.details(audios, ScoreContext(text=args.text, voice=args.voice))
    for path, row in zip(args.wav, rows, strict=True):
        print(json.dumps({"file": path, **row}, ensure_ascii=False) if args.json
              else f"{row['score']:.4f}\t{path}")
    return 0


def register(subparsers: Any) -> None:
    """Adds `verifier` with its subcommands to the llasa-rt parser."""
    parser = subparsers.add_parser("verifier", help="export, add, list, remove or try the verifiers of a bundle",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="verifier_command", metavar="SUBCOMMAND", required=True)

    exp = sub.add_parser("export", help="export speaker / ASR models (or pocketsphinx alignment) into a bundle")
    exp.add_argument("--bundle", required=True, help="bundle folder")
    exp.add_argument("--speaker", metavar="resemblyzer|ID_OR_DIR",
                     help="'resemblyzer' (GE2E, trained weights in the wheel) or a WavLMForXVector / "
                          "UniSpeechSatForXVector hub id or folder (e.g. microsoft/wavlm-base-plus-sv)")
    exp.add_argument("--asr", metavar="ID_OR_DIR",
                     help="a Wav2Vec2ForCTC / HubertForCTC hub id or folder (e.g. facebook/hubert-large-ls960-ft)")
    exp.add_argument("--align", metavar="pocketsphinx", help="add pocketsphinx's English forced-alignment verifier")
    exp.add_argument("--speaker-name", help="verifier name (default: ge2e, or the model folder's name)")
    exp.add_argument("--asr-name", help="verifier name (default: the model folder's name)")
    exp.add_argument("--align-name", help="verifier name (default: align-en)")
    exp.add_argument("--force", action="store_true", help="replace verifiers of the same names")
    exp.set_defaults(func=_export)

    add = sub.add_parser("add", help="add your own ONNX verifier graph (contract: docs/verifiers.md)")
    add.add_argument("--bundle", required=True, help="bundle folder")
    add.add_argument("--name", required=True, help="verifier name (letters, digits, '_', '-')")
    add.add_argument("--onnx", required=True, help="the graph: input audio [B,T] float32 16 kHz (+ audio_lengths [B])")
    add.add_argument("--kind", default="score", choices=["score", "speaker", "asr"],
                     help="score: output score [B] (default); speaker: output embedding [B,D]; asr: output "
                          "logits [B,F,V] (+ logit_lengths [B]) with --vocab")
    add.add_argument("--batching", choices=["pad_mask", "length_buckets"], default=None,
                     help="pad_mask: one run with zero padding + audio_lengths (the graph must mask padding); "
                          "length_buckets: one run per distinct length (default; always exact)")
    add.add_argument("--min-samples", type=int, default=0, help="shorter audio is zero-padded to this many samples")
    add.add_argument("--empty-score", type=float, default=0.0, help="score kind: the score of an empty audio")
    add.add_argument("--vocab", help="asr kind: vocab.json ({token: id}, Wav2Vec2CTCTokenizer layout)")
    add.add_argument("--blank-token", default="<pad>", help="asr kind: the CTC blank token (default <pad>)")
    add.add_argument("--word-delimiter", default="|", help="asr kind: the word delimiter token (default |)")
    add.add_argument("--force", action="store_true", help="replace a verifier of the same name")
    add.set_defaults(func=_add)

    lst = sub.add_parser("list", help="list the bundle's verifiers")
    lst.add_argument("--bundle", required=True, help="bundle folder")
    lst.set_defaults(func=_list)

    rm = sub.add_parser("remove", help="remove a verifier (and the voice embeddings it made)")
    rm.add_argument("--bundle", required=True, help="bundle folder")
    rm.add_argument("--name", required=True, help="verifier name")
    rm.set_defaults(func=_remove)

    emb = sub.add_parser("embed", help="embed the bundle's voices (decoded from their codes) for speaker verifiers")
    emb.add_argument("--bundle", required=True, help="bundle folder")
    emb.add_argument("--force", action="store_true", help="re-embed voices that already have an embedding")
    emb.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    emb.set_defaults(func=_embed)

    sc = sub.add_parser("score", help="score audio files with a verifier")
    sc.add_argument("--bundle", required=True, help="bundle folder")
    sc.add_argument("--name", required=True, help="verifier name")
    sc.add_argument("--text", required=True, help="the text the audio should say")
    sc.add_argument("--voice", default=None, help="reference voice (speaker verifiers)")
    sc.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    sc.add_argument("--json", action="store_true", help="one JSON object per file with the verifier's details")
    sc.add_argument("wav", nargs="+", help="audio files (resampled to 16 kHz, mixed to mono)")
    sc.set_defaults(func=_score)
