"""Opening a bundle: the manifest parsed and validated, every file present (and hashed), every path inside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import BundleError
from .manifest import CODEC_GRAPH, MANIFEST_NAME, GraphEntry, Manifest

VERIFY_MODES = ("full", "fast")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Returns the hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def inside(root: Path, name: str) -> Path:
    """`root / name`, refused when it resolves outside `root` (a '..' or a symlink that leaves the bundle)."""
    base = root.resolve()
    target = (root / name).resolve()
    if target != base and base not in target.parents:
        raise BundleError(f"bundle '{root}': {name} resolves to '{target}', outside the bundle (a symlink or '..' "
                          "leads out of it); llasa-rt reads, writes and removes files only inside the bundle")
    return target


def read_manifest(root: Path) -> Manifest:
    """Parses and validates `root/manifest.json`."""
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(f"'{root}' has no {MANIFEST_NAME}: it is not a llasa-rt bundle (or its export did not "
                          "finish); re-run `llasa-rt export`")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath} is unreadable or not JSON ({e}); re-export the bundle") from e
    if not isinstance(raw, dict):
        raise BundleError(f"{mpath} does not hold a JSON object; re-export the bundle")
    return Manifest.from_json(raw)


class Bundle:
    """An opened engine bundle: its folder and its checked manifest."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path, verify: str = "full") -> Bundle:
        """Opens and checks a bundle folder.

        Args:
            path: the bundle folder.
            verify: "full" checks every file's sha256 (a few seconds per GB); "fast" checks only that every
                file is present.

        Raises:
            BundleError: with what is wrong and how to fix it.
        """
        if verify not in VERIFY_MODES:
            raise BundleError(f"verify must be 'full' or 'fast', not {verify!r}")
        root = Path(path)
        if not root.exists():
            raise BundleError(f"bundle '{root}' does not exist; create one with `llasa-rt export --out {root} ...`")
        if not root.is_dir():
            raise BundleError(f"bundle '{root}' is a file, not a bundle folder; pass the folder that holds "
                              "manifest.json")
        bundle = cls(root, read_manifest(root))
        bundle.check_files(verify)
        return bundle

    def check_files(self, verify: str = "full") -> None:
        """Checks that every file the manifest names is inside the bundle and present (verify="full": hashed)."""
        for name, digest in self.manifest.all_files().items():
            p = self.path(name)
            if not p.is_file():
                raise BundleError(f"bundle '{self.root}' is missing {name}; re-export the bundle")
            if verify == "full" and sha256_file(p) != digest:
                raise BundleError(f"bundle '{self.root}': {name} does not match its sha256 in manifest.json "
                                  "(corrupt or modified); re-export the bundle or copy it again")

    def path(self, name: str) -> Path:
        """Absolute path of a file in the bundle (refused if it leads outside the bundle)."""
        return inside(self.root, name)

    def graph(self, name: str) -> GraphEntry:
        """The manifest entry of graph `name` ("lm", "codec_decoder", ...)."""
        try:
            return self.manifest.graphs[name]
        except KeyError:
            have = ", ".join(sorted(self.manifest.graphs)) or "none"
            hint = " (export it with --codec)" if name == CODEC_GRAPH else ""
            raise BundleError(f"bundle '{self.root}' has no '{name}' graph{hint}; it has: {have}") from None
