"""Writing engine bundles so that a failure never leaves a half-written bundle behind.

A new bundle is assembled in a hidden temporary folder next to its destination and renamed into
place only when everything (graphs, tokenizer, manifest) is written. Changes to an existing bundle
(adding a voice) write the new file under a temporary name, then replace `manifest.json` with
`os.replace`, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llasa_rt.bundle import MANIFEST_NAME, Manifest, sha256_file
from llasa_rt.errors import BundleError


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuses an output folder that already holds something, unless overwrite is set."""
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"output '{out}' exists and is a file; choose another --out")
        if any(out.iterdir()) and not overwrite:
            raise BundleError(f"output folder '{out}' is not empty; pass --overwrite to replace it, "
                              "or choose another --out")


@contextlib.contextmanager
def staged_folder(out: str | Path, overwrite: bool = False, required: str | None = None) -> Iterator[Path]:
    """Yields a temporary folder next to `out`; when the block succeeds it replaces `out`.

    On any exception the temporary folder is removed and `out` is left as it was. `required` names a
    file that must exist in the folder for it to count as complete.
    """
    out = Path(out).absolute()
    check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result should be an ordinary folder
    try:
        yield tmp
        if required and not (tmp / required).is_file():
            raise BundleError(f"internal error: the folder staged in {tmp} has no {required}")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def staged_bundle(out: str | Path, overwrite: bool = False) -> contextlib.AbstractContextManager[Path]:
    """`staged_folder` for a bundle: complete only once manifest.json is written."""
    return staged_folder(out, overwrite, required=MANIFEST_NAME)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Writes manifest.json atomically (temporary file + os.replace)."""
    data = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    tmp = root / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)


def hash_files(root: Path, names: list[str]) -> dict[str, str]:
    """Returns {name: sha256} for files in `root`, in the given order."""
    return {name: sha256_file(root / name) for name in names}
