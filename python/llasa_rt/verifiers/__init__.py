"""Verifiers: small models in the bundle that score candidate audios (higher is better), for search and reports.

    from llasa_rt.bundle import Bundle
    from llasa_rt.verifiers import ScoreContext, load_verifier

    bundle = Bundle.open("llasa-1b-int4")
    sim = load_verifier(bundle, "ge2e")                     # speaker: cosine similarity to the voice, [-1, 1]
    asr = load_verifier(bundle, "hubert-large-ls960-ft")    # asr: 1 - WER of the greedy CTC transcript, [0, 1]
    sim.score([audio_a, audio_b], ScoreContext(text="Hello there.", voice="alice"))  # float64 [2]

Kinds (the manifest entry's `kind`; contracts in docs/verifiers.md):

| kind | model | score |
|---|---|---|
| speaker | GE2E (resemblyzer) or x-vector graph: audio -> embedding | cosine similarity to the voice's embedding |
| asr | CTC graph: audio -> logits; greedy text | 1 - WER (CER for CJK) after `text.normalise_text` |
| score | any user graph: audio -> score | the graph's number |
| alignment | pocketsphinx forced alignment (optional extra) | 1 if the text aligns to the audio, else 0 |

Graphs run in ONNX Runtime through `backends.ort.create_session`; this package imports numpy and onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path

from ..bundle import Bundle, VerifierEntry, sha256_file
from ..errors import BundleError, InputError
from .base import SAMPLE_RATE, VERIFIER_DIR, ScoreContext, Verifier, check_sample_rate, entry_fields
from .text import char_error_rate, error_rate, normalise_text, word_error_rate

KINDS = ("speaker", "asr", "score", "alignment")

__all__ = [
    "KINDS",
    "SAMPLE_RATE",
    "VERIFIER_DIR",
    "ScoreContext",
    "Verifier",
    "build_verifier",
    "char_error_rate",
    "error_rate",
    "list_verifiers",
    "load_verifier",
    "normalise_text",
    "word_error_rate",
]


def list_verifiers(bundle: Bundle) -> list[str]:
    """Names of the bundle's verifiers, sorted."""
    return sorted(bundle.manifest.verifiers)


def load_verifier(bundle: Bundle, name: str, threads: int | None = None) -> Verifier:
    """Loads verifier `name` of an opened bundle.

    The file's sha256 is checked against the manifest (a few seconds per GB) before ONNX Runtime loads it.

    Args:
        bundle: an opened Bundle.
        name: the verifier's name (`llasa-rt verifier list`).
        threads: ONNX Runtime intra-op threads (None = ONNX Runtime's default).

    Raises:
        InputError: no verifier of that name (the message lists the bundle's verifiers).
        BundleError: its file is missing, corrupt or not a verifier of its kind, or its entry is malformed.
    """
    if not isinstance(bundle, Bundle):
        raise InputError(f"load_verifier takes an opened Bundle (llasa_rt.bundle.Bundle.open(path)), not "
                         f"{type(bundle).__name__}")
    entry = bundle.manifest.verifiers.get(name) if isinstance(name, str) else None
    if entry is None:
        have = ", ".join(list_verifiers(bundle)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no verifier {name!r} (verifiers: {have}); add one with "
                         "`llasa-rt verifier export` or `llasa-rt verifier add`")
    if entry.kind not in KINDS:
        raise BundleError(f"verifier '{name}' of bundle '{bundle.root}' has kind {entry.kind!r}, which this llasa-rt "
                          f"does not know (it knows {', '.join(KINDS)}); upgrade llasa-rt or remove the verifier")
    for file, digest in {entry.file: entry.sha256, **entry.files}.items():
        path = bundle.path(file)
        if not path.is_file():
            raise BundleError(f"bundle '{bundle.root}' is missing {file} (verifier '{name}'); export the verifier "
                              f"again or remove it (`llasa-rt verifier remove --bundle {bundle.root} --name {name}`)")
        if sha256_file(path) != digest:
            raise BundleError(f"bundle '{bundle.root}': {file} (verifier '{name}') does not match its sha256 in "
                              "manifest.json (corrupt or modified); export the verifier again")
    return build_verifier(bundle, name, entry, threads)


def build_verifier(bundle: Bundle, name: str, entry: VerifierEntry, threads: int | None = None,
                   graph_path: Path | None = None) -> Verifier:
    """The Verifier for `entry` (its details validated), reading the graph from `graph_path` (default: the
    entry's file in the bundle). Used by `load_verifier`, and by `store` to check a graph before it is added."""
    f = entry_fields(name, entry.details)
    check_sample_rate(name, f)
    if entry.kind == "alignment":
        from .alignment import AlignmentVerifier

        return AlignmentVerifier(bundle, name, entry, f)
    from ..backends.ort import create_session

    if graph_path is None:
        session = create_session(bundle.path(entry.file), threads, None, bundle.root)
    else:
        session = create_session(Path(graph_path), threads)
    if entry.kind == "speaker":
        from .speaker import SpeakerVerifier

        return SpeakerVerifier(bundle, name, entry, session, f)
    if entry.kind == "asr":
        from .asr import CtcAsrVerifier

        return CtcAsrVerifier(name, entry, session, f)
    if entry.kind == "score":
        from .score import ScoreVerifier

        return ScoreVerifier(name, entry, session, f)
    raise BundleError(f"verifier '{name}' has kind {entry.kind!r}, which this llasa-rt does not know (it knows "
                      f"{', '.join(KINDS)}); upgrade llasa-rt or remove the verifier")
