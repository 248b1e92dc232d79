"""Layout rules of the C++ side: csrc/ mirrors the public headers, and public headers need nothing private."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "runtime" / "include" / "llasa_rt"


def test_one_binding_file_per_public_header() -> None:
    headers = {p.stem for p in PUBLIC.glob("*.h")}
    bindings = {p.stem for p in (ROOT / "csrc").glob("*.cc")} - {"module"}
    assert bindings == headers


def test_public_headers_include_only_public_headers() -> None:
    for header in PUBLIC.glob("*.h"):
        for name in re.findall(r'#include "([^"]+)"', header.read_text()):
            assert name.startswith("llasa_rt/") and (PUBLIC.parent / name).is_file(), f"{header.name} includes {name}"
