"""Reading JSON objects field by field with one-line errors that name the field and the fix.

Used by the typed manifest: every value read from `manifest.json` goes through `Fields`, so a hand-edited
or damaged manifest is refused on load with `manifest.json: model.num_layers must be an integer in
[1, 1024], got "x"; ...` instead of failing later deep inside the runtime.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Any

from ..errors import BundleError

_SHA256 = re.compile(r"[0-9a-f]{64}")
FIX = "re-export the bundle (or restore its manifest.json)"


class Fields:
    """A JSON object being read; `where` is its path in the manifest (e.g. "model", "voices.alice")."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"manifest.json: {where or 'the file'} must be a JSON object, got {_kind(data)}; {FIX}")
        self.data, self.where = data, where

    def fail(self, key: str, what: str) -> BundleError:
        where = f"{self.where}.{key}" if self.where else key
        return BundleError(f"manifest.json: {where} {what}; {FIX}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def _get(self, key: str, default: Any) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                raise self.fail(key, "is missing")
            return default
        return self.data[key]

    def integer(self, key: str, lo: int, hi: int, default: Any = None) -> int:
        v = self._get(key, _REQUIRED if default is None else default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def number(self, key: str, lo: float, hi: float, default: Any = None) -> float:
        v = self._get(key, _REQUIRED if default is None else default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(key, f"must be a number in [{lo}, {hi}], got {v!r}")
        return float(v)

    def text(self, key: str, default: Any = None, choices: tuple[str, ...] | None = None) -> str:
        v = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {_kind(v)}")
        if choices is not None and v not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def flag(self, key: str, default: Any = None) -> bool:
        v = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {v!r}")
        return v

    def obj(self, key: str, default: Any = None) -> Fields:
        v = self._get(key, _REQUIRED if default is None else default)
        return Fields(v, f"{self.where}.{key}" if self.where else key)

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form object (kept as it is)."""
        v = self._get(key, {})
        if not isinstance(v, dict):
            raise self.fail(key, f"must be a JSON object, got {_kind(v)}")
        return dict(v)

    def sha256(self, key: str) -> str:
        v = self.text(key)
        if not _SHA256.fullmatch(v):
            raise self.fail(key, f"must be a 64-digit lowercase hex sha256, got {v!r}")
        return v

    def file(self, key: str) -> str:
        return check_relative(self.text(key), f"{self.where}.{key}")

    def files(self, key: str) -> dict[str, str]:
        """An object {relative file name: sha256} with at least one entry."""
        obj = self.obj(key)
        if not obj.data:
            raise self.fail(key, "names no file")
        for name in obj.data:
            check_relative(name, f"{obj.where}")
            obj.sha256(name)
        return dict(obj.data)


_REQUIRED = object()


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), type(v).__name__)


def check_relative(name: str, where: str) -> str:
    """A file name from a manifest must stay inside the bundle: relative, no '..', no empty parts."""
    p = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or p.is_absolute() or name.startswith("~")
            or any(part in ("..", "") for part in name.split("/"))):
        raise BundleError(f"manifest.json: {where} names the file {name!r}, which is not a plain path inside the "
                          f"bundle (absolute paths and '..' are refused); {FIX}")
    return name
