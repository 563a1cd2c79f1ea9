"""Output folders: checked before computing, locked, written aside and swapped in whole.

A run writes into a hidden temporary folder beside its results folder and,
once every file is there, renames the old folder away, the new one in, and
deletes the old. So a failed, killed or interrupted run leaves the previous
folder as it was (or none), never a mix of old and new files. A lock file
beside the folder keeps two commands from writing the same folder at once;
the kernel drops the lock of a process that dies, so a stale lock file is
simply taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipebench.errors import InputError
from pipebench.export import file_name

ROOM = 128  # bytes left in a path for the files written inside a folder


def _limit(folder: Path, name: str, fallback: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return fallback


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (as anything: a file stops the walk)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _why_unwritable(folder: Path) -> str | None:
    """Why nothing can be created in `folder`, or None if something can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def check_folder(path: Path, option: str) -> None:
    """Refuse, before any computing, a folder that cannot be created or written.

    Checks the length of every name and of the whole path, that no
    ancestor is a file, and that the nearest existing folder (and `path`
    itself when it exists) can be written.
    """
    relative = not Path(path).is_absolute()
    path = Path(os.path.abspath(path))
    where = _existing(path)
    _check_lengths(path, where, option)
    if not where.is_dir():
        what = "exists and is not a folder" if where == path else "is a file, not a folder"
        raise InputError(option, f"{_shown(where, relative)!r} {what}")
    for folder in (where, path.parent) if where == path else (where,):
        why = _why_unwritable(folder)
        if why is not None:
            raise InputError(option, f"cannot write in {_shown(folder, relative)!r}: {why}")


def _shown(path: Path, relative: bool) -> str:
    """`path` as the user spelt theirs: relative to the current folder if theirs was."""
    return os.path.relpath(path) if relative else str(path)


def check_file(path: Path, option: str) -> None:
    """Refuse, before any computing, a file that cannot be written at exactly `path`."""
    given = Path(path)
    path = Path(os.path.abspath(path))
    _check_lengths(path, _existing(path), option)
    if path.is_dir():
        raise InputError(option, f"{str(given)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        where = _existing(path.parent)
        if where.is_dir():
            raise InputError(option, f"folder {str(given.parent)!r} does not exist")
        shown = _shown(where, not given.is_absolute())
        raise InputError(option, f"{shown!r} is a file, not a folder")
    why = _why_unwritable(path.parent)
    if why is not None:
        raise InputError(option, f"cannot write in {str(given.parent)!r}: {why}")


def _check_lengths(path: Path, where: Path, option: str) -> None:
    """Every name of `path`, and `path` with room for the files inside, fit the file system."""
    name_max = _limit(where, "PC_NAME_MAX", 255)
    for part in path.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            raise InputError(
                option,
                f"the name {part[:40]!r}... is {len(os.fsencode(part))} bytes long; "
                f"the file system allows {name_max}",
            )
    path_max = _limit(where, "PC_PATH_MAX", 4096)
    if len(os.fsencode(path)) + ROOM > path_max:
        raise InputError(
            option,
            f"the path is {len(os.fsencode(path))} bytes long; the file system allows "
            f"{path_max}, less {ROOM} for the files inside",
        )


def _sibling(out: Path, tag: str) -> str:
    """The hidden name of a file beside `out`: short, however long `out`'s name, and
    different for different names (a hash, when the name is long or has other characters)."""
    name = file_name(out.name, "out")
    if name != out.name or len(name) > 48:
        import hashlib  # here, as tempfile below: `--help` and `list` load neither

        digest = hashlib.sha256(os.fsencode(out.name)).hexdigest()[:8]
        name = f"{name[:40]}-{digest}"
    return f".{name}.{tag}"


TEMPORARY = "-" + "?" * 8  # what mkdtemp appends to a prefix ending in "-"


@contextmanager
def _made_parents(folder: Path) -> Iterator[None]:
    """Create `folder` and its missing ancestors; remove those again (if empty) on failure."""
    made = []
    for parent in [*reversed(folder.parents), folder]:
        if not os.path.lexists(parent):
            os.mkdir(parent)
            made.append(parent)
    try:
        yield
    except BaseException:
        for parent in reversed(made):
            try:
                parent.rmdir()
            except OSError:
                break  # not empty: something else lives there now
        raise


@contextmanager
def _locked(out: Path, option: str, shown: str) -> Iterator[None]:
    """Hold an exclusive lock on `out`: a locked file beside it holding our pid."""
    path = out.parent / _sibling(out, "lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InputError(
                option,
                f"{shown!r} is being written by another pipebench (pid {holder}); "
                "wait for it to finish or choose another folder",
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # not a file its last holder removed while we opened it
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _clear_leftovers(out: Path, keep: str | None) -> None:
    """Folders a killed run left beside `out`: an old folder comes back if `out` is gone,
    and `keep` comes back from a new one it had been moved into."""
    for leftover in sorted(out.parent.glob(_sibling(out, "old" + TEMPORARY))):
        if os.path.lexists(out):
            _remove(leftover)
        else:
            os.rename(leftover, out)
    for leftover in out.parent.glob(_sibling(out, "new" + TEMPORARY)):
        stranded = keep is not None and os.path.lexists(leftover / keep)
        if stranded and os.path.isdir(out) and not os.path.lexists(out / keep):
            os.rename(leftover / keep, out / keep)
        _remove(leftover)


def _remove(path: Path) -> None:
    """Delete a folder with its content, or a file or link (not what a link points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap(new: Path, out: Path, keep: str | None) -> None:
    """Put `new` in the place of `out`, carrying `out/keep` across; then delete the old."""
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    import tempfile

    old = Path(tempfile.mkdtemp(prefix=_sibling(out, "old-"), dir=out.parent))
    old.rmdir()  # a free name (we hold the lock): `out` may be a link, not only a folder
    os.rename(out, old)
    try:
        if keep is not None and os.path.lexists(old / keep):
            os.rename(old / keep, new / keep)
        os.rename(new, out)
    except BaseException:
        if keep is not None and os.path.lexists(new / keep):
            os.rename(new / keep, old / keep)
        os.rename(old, out)
        raise
    _remove(old)


@contextmanager
def replaced_folder(out: Path, option: str, keep: str | None = None) -> Iterator[Path]:
    """A new, empty, hidden folder beside `out`; when the block ends, it replaces `out`.

    If the block raises, the new folder is deleted and `out` stays as it
    was. `keep` names an entry of the old `out` to carry into the new one
    (a sweep's cell cache). Raises `InputError` on `option` when `out`
    cannot be written or another command holds its lock.
    """
    import tempfile

    shown = str(out)
    check_folder(out, option)
    out = Path(os.path.abspath(out))
    with _made_parents(out.parent), _locked(out, option, shown):
        _clear_leftovers(out, keep)
        existed = os.path.lexists(out)
        new = Path(tempfile.mkdtemp(prefix=_sibling(out, "new-"), dir=out.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(new, 0o777 & ~umask)  # mkdtemp makes folders private; results are not
            yield new
            _swap(new, out, keep)
        except OSError as error:
            shutil.rmtree(new, ignore_errors=True)
            if not existed:
                _remove_empty_folders(out)
            raise _as_in(error, new, out) from None
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            if not existed:  # `keep` was made inside it: leave what it holds, if anything
                _remove_empty_folders(out)
            raise


def _as_in(error: OSError, new: Path, out: Path) -> OSError:
    """`error`, naming the file in `out` that it was writing in `new`."""
    name = error.filename
    if not isinstance(name, str) or not Path(name).is_relative_to(new):
        return error
    return OSError(error.errno, error.strerror, str(out / Path(name).relative_to(new)))


def _remove_empty_folders(top: Path) -> None:
    """Remove `top` and the folders below it that hold no file, deepest first."""
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):  # it holds something
            os.rmdir(folder)


def os_error_text(error: OSError) -> str:
    """An `OSError` in words: the path(s), the cause and its errno name."""
    cause = error.strerror or str(error) or type(error).__name__
    name = errno.errorcode.get(error.errno or 0)
    cause += f" [{name}]" if name else ""
    paths = [repr(str(p)) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause
