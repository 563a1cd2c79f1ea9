"""The sweep cache: one results folder per cell, named by the hash of what determines it.

An entry is complete only if its `manifest.json` lists every file with its
SHA-256 (the tables a sweep combines among them) and every file matches.
Entries are written into a hidden `.partial-*` folder and renamed into
place, so a killed sweep leaves either a whole entry or a partial folder
that the next sweep removes; an entry damaged afterwards (a truncated or
edited file, a file or link in its place) fails its checks and is
computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipebench.export import write_files

MANIFEST = "manifest.json"
REQUIRED = ("summary.csv", "curves.csv")  # what the combined tables of a sweep are made of
PARTIAL = ".partial-"


def cell_key(resolved: dict, data_digest: bytes, version: str) -> str:
    """The cache key of a cell: its fully resolved scenario, its data file and the version."""
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode())
    digest.update(data_digest)
    digest.update(version.encode())
    return digest.hexdigest()[:20]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CellCache:
    """A folder of cell entries: `ROOT/<key>/` holding a results folder and its manifest."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = Path(root)
        self.version = version

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> dict[str, str] | None:
        """The files of a complete, intact entry; None when it is absent or damaged."""
        folder = self.path(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if manifest["key"] != key or manifest["pipebench"] != self.version:
                return None
            if not set(REQUIRED) <= set(manifest["files"]):
                return None
            files = {}
            for name, digest in manifest["files"].items():
                data = (folder / name).read_bytes()
                if _sha256(data) != digest:
                    return None
                files[name] = data.decode("utf-8")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing or unreadable manifest or file, bad JSON, bad UTF-8
        return files

    def damaged(self, key: str) -> bool:
        """An entry folder exists but does not load: it must be computed again."""
        return os.path.lexists(self.path(key)) and self.load(key) is None

    def store(self, key: str, files: dict[str, str]) -> None:
        """Write an entry atomically: a partial folder renamed into place once complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{key}-{os.getpid()}-", dir=self.root))
        try:
            manifest = {
                "key": key,
                "pipebench": self.version,
                "files": {name: _sha256(text.encode("utf-8")) for name, text in files.items()},
            }
            write_files(partial, {**files, MANIFEST: json.dumps(manifest, indent=2) + "\n"})
            self.discard(key)
            os.rename(partial, self.path(key))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise

    def discard(self, key: str) -> None:
        """Remove an entry, whatever it has become (a folder, a file, a link)."""
        path = self.path(key)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def clear_partials(self) -> int:
        """Remove partial folders left by sweeps that died; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for folder in self.root.glob(f"{PARTIAL}*"):
            pid = folder.name[len(PARTIAL) :].split("-")[1]
            if pid.isdigit() and _alive(int(pid)):
                continue  # another sweep is writing it now
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
