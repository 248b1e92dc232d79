"""Writing bundles so that a failure never leaves a half-written bundle or touches anything else.

- A new bundle is assembled in a hidden folder `.NAME.partial-PID-XXXX` next to its destination and renamed
  into place only when complete. SIGTERM is handled like Ctrl-C while a folder is staged (the partial folder
  is removed); a partial folder left by SIGKILL or a power cut is removed by the next export to the same
  destination (and said on stderr).
- `--overwrite` replaces only an empty folder or a llasa-rt bundle, never a folder of other files.
- Changes to an existing bundle (voices, verifiers) write their file under a temporary name, then replace
  `manifest.json` with `os.replace` (atomic on POSIX file systems).
- Files get the usual mode (0666 less the umask), like any file a program creates.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import BundleError
from .manifest import FORMAT_NAME, MANIFEST_NAME, Manifest
from .reader import sha256_file


def _stderr(msg: str) -> None:
    print(f"llasa-rt: {msg}", file=sys.stderr, flush=True)


def is_bundle(folder: Path) -> bool:
    """True when `folder` holds a manifest.json written by llasa-rt (complete or not, valid or not)."""
    try:
        raw = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT_NAME


def check_destination(out: Path, overwrite: bool, bundle: bool = True) -> None:
    """Refuses an output that exists and is not an empty folder, unless overwrite is set and it is a bundle.

    `bundle=False` (other folders we write, e.g. tiny checkpoints): never replaced, only an empty folder is used.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleError(f"output '{out}' exists and is a file; choose another output folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not bundle:
        raise BundleError(f"output folder '{out}' is not empty; choose another folder (or remove this one)")
    if not overwrite:
        raise BundleError(f"output folder '{out}' is not empty; pass --overwrite to replace the bundle in it, "
                          "or choose another --out")
    if not is_bundle(out):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise BundleError(f"output folder '{out}' holds files that are not a llasa-rt bundle ({shown}); --overwrite "
                          "replaces only a bundle or an empty folder, so choose another --out")
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        raise BundleError(f"output folder '{out}' is the current folder or holds it; run the export from elsewhere "
                          "or choose another --out")


_STAGED = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)(?:-.*)?")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path, log: Callable[[str], None] = _stderr) -> list[Path]:
    """Removes `.NAME.partial-PID-*` / `.NAME.old-PID` folders of `out` whose process is gone; returns them."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.iterdir():
        m = _STAGED.fullmatch(p.name)
        if m and m["name"] == out.name and p.is_dir() and not p.is_symlink() and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            log(f"removed '{p}', left by an interrupted earlier run")
    return removed


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (so cleanup runs) when called from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def usual_mode(path: Path, directory: bool = False) -> None:
    """Gives `path` the mode a plain open()/mkdir() would: 0666 (0777 for folders) less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


@contextlib.contextmanager
def staged_folder(out: str | Path, overwrite: bool = False, required: str | None = None,
                  log: Callable[[str], None] = _stderr, bundle: bool = False) -> Iterator[Path]:
    """Yields a temporary folder next to `out`; when the block succeeds it replaces `out`.

    On any exception (SIGTERM included) the temporary folder is removed and `out` is left as it was.
    `required` names a file that must exist in the folder for it to count as complete; `bundle` says whether
    `out` is a bundle (which `overwrite` may replace) or another folder (only written when empty or absent).
    """
    out = Path(out).absolute()
    check_destination(out, overwrite, bundle)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BundleError(f"cannot create the folder '{out.parent}' ({e.strerror}); choose another --out") from e
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise BundleError(f"cannot write into '{out.parent}' (permission denied); choose another --out")
    clean_stale(out, log)
    with terminate_as_interrupt():
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
        try:
            usual_mode(tmp, directory=True)  # mkdtemp makes it private; the result is an ordinary folder
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


def staged_bundle(out: str | Path, overwrite: bool = False,
                  log: Callable[[str], None] = _stderr) -> contextlib.AbstractContextManager[Path]:
    """`staged_folder` for a bundle: complete only once manifest.json is written."""
    return staged_folder(out, overwrite, required=MANIFEST_NAME, log=log, bundle=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and os.replace."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Writes manifest.json atomically (temporary file + os.replace)."""
    data = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(root / MANIFEST_NAME, data.encode("utf-8"))


def hash_files(root: Path, names: list[str]) -> dict[str, str]:
    """Returns {name: sha256} for files in `root`, in the given order."""
    return {name: sha256_file(root / name) for name in names}


def check_writable(root: Path, what: str) -> None:
    """Refuses early (before slow work) when files cannot be created in `root`."""
    probe = root / f".llasa-rt-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BundleError(f"cannot {what}: '{root}' is not writable ({e.strerror}); copy the bundle somewhere "
                          "writable or fix its permissions") from None
