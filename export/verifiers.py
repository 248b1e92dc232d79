"""`llasa-rt verifier export`: speaker / ASR models -> verifier graphs in a bundle.

- `--speaker resemblyzer`: the GE2E encoder whose trained weights ship inside the resemblyzer wheel
  (`verifiers_ge2e`); `--speaker ID_OR_DIR`: a `WavLMForXVector` / `UniSpeechSatForXVector` folder or hub id;
- `--asr ID_OR_DIR`: a `Wav2Vec2ForCTC` / `HubertForCTC` folder or hub id (`verifiers_hf`);
- `--align pocketsphinx`: pocketsphinx's English forced alignment (no torch; `llasa_rt.verifiers.alignment`).

Each graph is exported into a private temporary folder, checked against PyTorch, then handed to
`llasa_rt.verifiers.store.add_verifier`, which checks it against its kind's contract, embeds the bundle's voices
(speaker kinds) and writes it into the bundle atomically.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from llasa_rt.bundle import Bundle, VerifierEntry
from llasa_rt.errors import InputError
from llasa_rt.verifiers.alignment import install_pocketsphinx
from llasa_rt.verifiers.store import add_verifier, prepare_add

RESEMBLYZER = "resemblyzer"
POCKETSPHINX = "pocketsphinx"


def _say(msg: str) -> None:
    print(f"llasa-rt: {msg}", file=sys.stderr, flush=True)


def default_name(source: str, fallback: str) -> str:
    """A verifier name from a hub id or folder: its last part with other characters turned into '-'."""
    if source == RESEMBLYZER:
        return "ge2e"
    last = Path(source.rstrip("/\\")).name or source.split("/")[-1]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", last).strip("-_")[:64]
    return name if name and name[0].isalnum() else fallback


def export_verifiers(bundle_dir: str | Path, speaker: str | None = None, asr: str | None = None,
                     align: str | None = None, speaker_name: str | None = None, asr_name: str | None = None,
                     align_name: str | None = None, overwrite: bool = False,
                     log: Callable[[str], None] = _say) -> dict[str, VerifierEntry]:
    """Exports the given verifiers into the bundle; returns {name: manifest entry}.

    Names, the bundle and writability are checked for all of them before anything is loaded or exported.
    """
    if not (speaker or asr or align):
        raise InputError("nothing to export: pass --speaker resemblyzer|ID_OR_DIR, --asr ID_OR_DIR and/or "
                         "--align pocketsphinx")
    if align is not None and align != POCKETSPHINX:
        raise InputError(f"--align takes 'pocketsphinx' (the only forced aligner llasa-rt ships), not {align!r}")
    plan = []
    if speaker:
        plan.append(("speaker", speaker, speaker_name or default_name(speaker, "speaker")))
    if asr:
        plan.append(("asr", asr, asr_name or default_name(asr, "asr")))
    if align:
        plan.append(("alignment", align, align_name or "align-en"))
    names = [name for _, _, name in plan]
    if len(set(names)) != len(names):
        raise InputError(f"two verifiers would be named the same ({', '.join(names)}); pass --speaker-name / "
                         "--asr-name / --align-name")
    bundle = Bundle.open(bundle_dir, verify="fast")
    for _, _, name in plan:
        prepare_add(bundle, name, overwrite)
    entries: dict[str, VerifierEntry] = {}
    for kind, source, name in plan:
        if kind == "alignment":
            entries[name] = install_pocketsphinx(bundle_dir, name, overwrite, log)
            continue
        with tempfile.TemporaryDirectory(prefix="llasa-rt-verifier-") as tmp:
            graph = Path(tmp) / f"{name}.onnx"
            if kind == "speaker" and source == RESEMBLYZER:
                from .verifiers_ge2e import export_ge2e

                made = export_ge2e(graph, log)
            else:
                from .verifiers_hf import export_hf_verifier

                made = export_hf_verifier(source, graph, kind, log)
            entry = add_verifier(bundle_dir, name, graph, made["kind"], made["details"], overwrite, log)
        log(f"verifier '{name}': {made['details'].get('model')} ({kind}) -> {entry.file}")
        entries[name] = entry
    return entries
