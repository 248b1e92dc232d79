"""Reading a bundle's reference voices at run time (numpy only).

A voice is `voices/<name>.npz` with `codes` (int32 [T], X-Codec2 codes of the reference recording) and
`transcript` (what is said in it), written by `llasa-rt voice add`.
"""

from __future__ import annotations

import numpy as np

from .bundle import Bundle
from .errors import BundleError, InputError


def read_voice(bundle: Bundle, name: str) -> tuple[np.ndarray, str]:
    """Returns (codes int32 [T], transcript) of voice `name` in an opened bundle."""
    entry = bundle.manifest.voices.get(name)
    if entry is None:
        have = ", ".join(sorted(bundle.manifest.voices)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no voice '{name}' (voices: {have}); add one with "
                         "`llasa-rt voice add`")
    try:
        with np.load(bundle.root / entry["file"], allow_pickle=False) as data:
            return data["codes"].astype(np.int32), str(data["transcript"])
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"voice file {entry['file']} of bundle '{bundle.root}' is unreadable ({e}); add the voice "
                          "again with `llasa-rt voice add --force`") from e
