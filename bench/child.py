"""Running one benchmark path in a child process (so each path has the machine and its memory to itself).

A bench script calls `run_child(__file__, [...])`; the child (the same script with `--child ...`) prints its result
with `emit(result)` as the last line of its standard output, as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def _int_keys(d: dict) -> dict:
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): v for k, v in d.items()}


def run_child(script: str, args: list[str], python: str | None = None) -> dict[Any, Any]:
    """Runs `python script *args` and returns the JSON object on its last output line (digit keys as ints).
    `python`: another interpreter (e.g. the llama.cpp bench venv's); default this one."""
    r = subprocess.run([python or sys.executable, script, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1], object_hook=_int_keys)


def emit(result: dict) -> None:
    """The child's side: prints `result` as the last line of standard output."""
    print(json.dumps(result), flush=True)
