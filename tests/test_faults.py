"""Faults of the environment and of the output location, after the scenario is valid.

Every case of `FAULTS` prepares a folder, runs one command and checks the
error contract: its exit status, exactly one line on stderr naming the
cause (no traceback), nothing on stdout, and the folder byte for byte as it
was (no temporary, no half-written result, an earlier result untouched).
Full disks and read-only file systems are small tmpfs mounts, made only
when the tests run as root (skipped otherwise); faults no folder can stage
(too little memory, a bug, a second Ctrl-C) are raised where they would
come from.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_scenario import BASE

from pipebench.cli import main

ROOT = os.geteuid() == 0
PAGE = 4096


def tree(folder: Path) -> dict[str, object]:
    """Every path under `folder` with its bytes (files), link target, or None (folders)."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[name] = None
        else:
            found[name] = path.read_bytes()
    return found


def tmpfs(stack: ExitStack, where: Path, size: str = "256k") -> Path:
    """A small tmpfs at `where`, unmounted when the test ends; skips the test if it cannot."""
    if not ROOT:
        pytest.skip("mounting a file system needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    stack.callback(subprocess.run, ["umount", "-l", str(where)], check=True)
    return where


def read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def fill(where: Path, leave_pages: int) -> None:
    """Fill the file system of `where` but `leave_pages` pages."""
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    (where / "filler").write_bytes(b"\0" * (free - leave_pages * PAGE))


def earlier_results(out: Path) -> Path:
    """A results folder as an earlier run left it (its files are not read, only kept)."""
    out.mkdir(parents=True)
    for name in ("summary.csv", "curves.csv", "meta.json", "gantt-old.png"):
        (out / name).write_text(f"earlier {name}\n")
    return out


def hold_lock(stack: ExitStack, out: Path) -> None:
    """Another process holds the lock of `out` (as a running pipebench would) until the end."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode() + b'\\n')\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    lock = out.parent / f".{out.name}.lock"
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE)
    stack.callback(holder.wait)
    stack.callback(holder.kill)
    assert holder.stdout.readline() == b"locked\n"


def raiser(error: BaseException, before: Callable | None = None) -> Callable:
    """A stand-in that raises `error` (after calling `before` with its arguments)."""

    def stand_in(*args, **kwargs):
        if before is not None:
            before(*args, **kwargs)
        raise error

    return stand_in


def enospc(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def run(*args: str, plots: bool = False) -> list[str]:
    return ["run", "s.yaml", "--quiet", *([] if plots else ["--no-plots"]), *args]


def sweep(*args: str, scenario: str = "s.yaml") -> list[str]:
    return [
        "sweep",
        scenario,
        "--grid",
        "pipeline.costs.comm=0,0.5",
        "--quiet",
        "--no-plots",
        *args,
    ]


def schedule(*args: str) -> list[str]:
    return ["schedule", "pd", "-S", "2", "-M", "4", "--json", *args]


def a_file(where: Path) -> Path:
    where.write_text("a file")
    return where


def results(tmp: Path) -> Path:
    """A real results folder, pictures included."""
    assert main(run("--out", "res", plots=True)) == 0
    return tmp / "res"


def second_ctrl_c(*args, **kwargs) -> None:
    signal.raise_signal(signal.SIGINT)  # the first is noted: the results are being written
    signal.raise_signal(signal.SIGINT)  # the second gives up


# Setups for the cases below: (the test's folder, an exit stack, monkeypatch) -> command line.


def no_write_permission(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    if ROOT:
        pytest.skip("root writes in any folder")
    (t / "locked").mkdir(mode=0o555)
    stack.callback((t / "locked").chmod, 0o755)
    return run("--out", "locked/qs")


def full_disk(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    fill(tmpfs(stack, t / "full"), leave_pages=3)
    return run("--out", "full/qs")


def full_disk_with_earlier_results(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(tmpfs(stack, t / "full") / "qs")
    fill(t / "full", leave_pages=3)
    return run("--out", "full/qs")


def read_only_earlier_results(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(tmpfs(stack, t / "ro") / "qs")
    read_only(t / "ro")
    return run("--out", "ro/qs")


def disk_full_while_drawing(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(t / "qs")
    half_drawn = raiser(enospc(t / "qs" / "delays.png"), lambda out, *a: (out / "half.png").touch())
    m.setattr("pipebench.report.plots.draw_results", half_drawn)
    return run("--out", "qs", plots=True)


def out_of_memory(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(t / "qs")
    m.setattr("pipebench.runner.run_one", raiser(MemoryError()))
    return run("--out", "qs")


def a_bug(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(t / "qs")
    m.setattr("pipebench.results.tabulate", raiser(ZeroDivisionError("division by zero")))
    return run("--out", "qs")


def ctrl_c_twice_while_writing(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    earlier_results(t / "qs")
    m.setattr("pipebench.export.write_files", raiser(AssertionError("not reached"), second_ctrl_c))
    return run("--out", "qs")


def plot_lacking_a_column(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    curves = results(t) / "curves.csv"
    lines = [line.rsplit(",", 2)[0] for line in curves.read_text().splitlines()]
    curves.write_text("\n".join(lines) + "\n")  # without its columns loss and gap
    return ["plot", "res"]


def plot_on_a_disk_that_fills(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    results(t)
    half_drawn = raiser(enospc(t / "res" / "x.png"), lambda s, c, x, path, *label: path.touch())
    m.setattr("pipebench.report.plots.curves_png", half_drawn)
    return ["plot", "res"]


def plot_on_a_read_only_folder(t: Path, stack: ExitStack, m: pytest.MonkeyPatch) -> list[str]:
    tmpfs(stack, t / "ro", size="2m")
    assert main(run("--out", "ro/res", plots=True)) == 0
    read_only(t / "ro")
    return ["plot", "ro/res"]


@dataclass(frozen=True)
class Fault:
    name: str
    setup: Callable[[Path, ExitStack, pytest.MonkeyPatch], list[str]]  # runs in the folder
    status: int
    words: str  # what the one line on stderr says


FAULTS = [  # one case per line reads best
    # --- where `run` writes
    Fault("out is a file", lambda t, s, m: a_file(t / "f") and run("--out", "f"), 2, "pipebench run: --out: 'f' exists and is not a folder"),
    Fault("out below a file", lambda t, s, m: a_file(t / "f") and run("--out", "f/sub"), 2, "pipebench run: --out: 'f' is a file, not a folder"),
    Fault("out name too long", lambda t, s, m: run("--out", "x" * 300), 2, "is 300 bytes long; the file system allows 255"),
    Fault("out path too long", lambda t, s, m: run("--out", "/".join(["y" * 200] * 21)), 2, "bytes long; the file system allows 4096, less 128 for the files inside"),
    Fault("out on a read-only file system", lambda t, s, m: read_only(tmpfs(s, t / "ro")) or run("--out", "ro/qs"), 2, "--out: cannot write in 'ro': read-only file system"),
    Fault("earlier results on a read-only file system", read_only_earlier_results, 2, "cannot write in 'ro/qs': read-only file system"),
    Fault("out in a folder without write permission", no_write_permission, 2, "--out: cannot write in 'locked': permission denied"),
    Fault("full disk", full_disk, 2, "No space left on device [ENOSPC]"),
    Fault("full disk, earlier results kept", full_disk_with_earlier_results, 2, "No space left on device [ENOSPC]"),
    Fault("another run holds the lock", lambda t, s, m: hold_lock(s, earlier_results(t / "qs")) or run("--out", "qs"), 2, "--out: 'qs' is being written by another pipebench (pid "),
    Fault("disk full while drawing", disk_full_while_drawing, 2, "delays.png': No space left on device [ENOSPC]"),
    Fault("too little memory for a run", out_of_memory, 2, "pipebench run: too little memory for this run"),
    Fault("a bug in pipebench", a_bug, 1, "pipebench run: internal error, a bug in pipebench"),
    Fault("a second Ctrl-C while the results are written", ctrl_c_twice_while_writing, 130, "pipebench run: interrupted twice: the results folder is as it was"),
    # --- where `sweep` writes, and its cache
    Fault("sweep out below a file", lambda t, s, m: a_file(t / "f") and sweep("--out", "f/sub"), 2, "pipebench sweep: --out: 'f' is a file, not a folder"),
    Fault("sweep cache is a file", lambda t, s, m: a_file(t / "f") and sweep("--out", "o", "--cache", "f"), 2, "--cache: 'f' exists and is not a folder"),
    Fault("sweep cache is the results folder", lambda t, s, m: sweep("--out", "o", "--cache", "o"), 2, "is the results folder itself"),
    Fault("another sweep holds the lock", lambda t, s, m: hold_lock(s, earlier_results(t / "o")) or sweep("--out", "o"), 2, "'o' is being written by another pipebench"),
    Fault("sweep on a read-only file system", lambda t, s, m: read_only(tmpfs(s, t / "ro")) or sweep("--out", "ro/o"), 2, "read-only file system"),
    Fault("sweep on a full disk", lambda t, s, m: fill(tmpfs(s, t / "full"), 3) or sweep("--out", "full/o", "--workers", "1"), 2, "No space left on device [ENOSPC]"),
    # --- the files `schedule` exports
    Fault("png is a folder", lambda t, s, m: (t / "d").mkdir() or schedule("--png", "d"), 2, "pipebench schedule: --png: 'd' is a folder; give a file name"),
    Fault("png not named .png", lambda t, s, m: schedule("--png", "x.foo"), 2, "--png: a file name ending in .png, got 'x.foo'"),
    Fault("png without a suffix", lambda t, s, m: schedule("--png", "x"), 2, "--png: a file name ending in .png, got 'x'"),
    Fault("chrome trace is a folder", lambda t, s, m: (t / "d").mkdir() or schedule("--chrome-trace", "d"), 2, "--chrome-trace: 'd' is a folder"),
    Fault("one file for two exports", lambda t, s, m: schedule("--chrome-trace", "t.json", "--torch-csv", "t.json"), 2, "--torch-csv: 't.json' is also given to --chrome-trace"),
    Fault("png and a trace in one file", lambda t, s, m: schedule("--png", "a.png", "--chrome-trace", "./a.png"), 2, "--chrome-trace: 'a.png' is also given to --png; one file each"),
    Fault("export below a file", lambda t, s, m: a_file(t / "f") and schedule("--torch-csv", "f/a.csv"), 2, "--torch-csv: 'f' is a file, not a folder"),
    Fault("export in a missing folder", lambda t, s, m: schedule("--chrome-trace", "no/t.json"), 2, "--chrome-trace: folder 'no' does not exist"),
    Fault("export name too long", lambda t, s, m: schedule("--png", "p" * 300 + ".png"), 2, "--png: the name 'ppp"),
    Fault("png on a read-only file system", lambda t, s, m: read_only(tmpfs(s, t / "ro")) or schedule("--png", "ro/g.png"), 2, "--png: cannot write in 'ro': read-only file system"),
    # --- `plot` into an existing results folder
    Fault("plot a table lacking columns", plot_lacking_a_column, 2, "curves.csv' is not a pipebench table: no column loss, gap"),
    Fault("plot on a disk that fills up", plot_on_a_disk_that_fills, 2, "x.png': No space left on device [ENOSPC]"),
    Fault("plot into a read-only folder", plot_on_a_read_only_folder, 2, "pipebench plot: RESULTS: cannot write in 'ro/res': read-only file system"),
]  # fmt: skip


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_is_one_line_and_leaves_the_folder_as_it_was(fault, tmp_path, capsys, monkeypatch):
    (tmp_path / "s.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    with ExitStack() as stack:
        args = fault.setup(tmp_path, stack, monkeypatch)
        capsys.readouterr()
        before = tree(tmp_path)
        code = main(args)
        stdout, stderr = capsys.readouterr()
        after = tree(tmp_path)
    assert code == fault.status, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert fault.words in stderr, stderr
    assert after == before


# ---------------------------------------------------------------- what works


def test_a_long_scenario_name_and_label_give_short_file_names(tmp_path, monkeypatch, capsys):
    """Names are cut and end in a hash of the whole text: short, and the same every time."""
    from pipebench.export import LONGEST_NAME, file_name

    name, label = "n" * 5000, "l" * 300
    text = BASE.replace("name: tiny", f"name: {name}").replace(
        "{name: 2bw, accumulate: 2}", f"{{name: 2bw, accumulate: 2, label: {label}}}"
    )
    (tmp_path / "s.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "s.yaml", "--quiet"]) == 0
    (out,) = (tmp_path / "results").iterdir()
    assert out.name == file_name(name, "run") and len(out.name) == LONGEST_NAME
    assert out.name.startswith("n" * 60) and out.name != file_name("n" * 4999, "run")
    gantt = f"gantt-{file_name(label, 'schedule')}.png"
    assert (out / gantt).is_file() and len(gantt) == LONGEST_NAME + len("gantt-.png")
    assert "gantt-pd.png" in os.listdir(out)
    capsys.readouterr()


def test_a_stale_lock_is_taken_over_and_removed(tmp_path, capsys):
    """The lock file of a process that died holds no lock: the next run takes it."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / ".qs.lock").write_text(f"{dead}\n")
    (tmp_path / "s.yaml").write_text(BASE)
    out = tmp_path / "qs"
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs", "s.yaml"]
    capsys.readouterr()


def test_a_new_result_replaces_the_old_folder_as_a_whole(tmp_path, capsys):
    """Pictures of an earlier run do not stay beside new tables; no temporary is left."""
    (tmp_path / "s.yaml").write_text(BASE)
    out = earlier_results(tmp_path / "qs")
    (out / "notes.txt").write_text("mine")
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet", "--no-plots"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["curves.csv", "delays.csv", "meta.json", "scenario.yaml", "summary.csv",
                     "timeline.csv"]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs", "s.yaml"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    capsys.readouterr()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_killed_run_leaves_its_temporary_folder_to_the_next(tmp_path, capsys):
    """What a run killed mid-swap leaves beside its folder is cleaned up (or put back) next time."""
    (tmp_path / "s.yaml").write_text(BASE)
    earlier = earlier_results(tmp_path / ".qs.old-abcd1234")  # killed after moving qs away
    (tmp_path / ".qs.new-efgh5678").mkdir()  # and before moving the new one in
    assert (
        main(
            [
                "run",
                str(tmp_path / "s.yaml"),
                "--out",
                str(tmp_path / "qs"),
                "--quiet",
                "--no-plots",
            ]
        )
        == 0
    )
    assert not earlier.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs", "s.yaml"]
    assert json.loads((tmp_path / "qs" / "meta.json").read_text())["runs"]["completed"] == 4
    capsys.readouterr()


# ---------------------------------------------------------------- a damaged sweep cache


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A sweep of two cells, computed once."""
    folder = tmp_path_factory.mktemp("swept")
    (folder / "s.yaml").write_text(BASE)
    code = main(
        sweep("--out", str(folder / "o"), "--workers", "1", scenario=str(folder / "s.yaml"))
    )
    assert code == 0
    return folder / "o"


def _replace_by_a_file(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.write_text("not an entry")


def _drop_summary_from_the_manifest(entry: Path) -> None:
    manifest = json.loads((entry / "manifest.json").read_text())
    del manifest["files"]["summary.csv"]
    (entry / "manifest.json").write_text(json.dumps(manifest))


def _replace_by_a_dangling_link(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.symlink_to(entry.parent / "nowhere")


@pytest.mark.parametrize(
    "damage", [_replace_by_a_file, _drop_summary_from_the_manifest, _replace_by_a_dangling_link]
)
def test_a_damaged_cache_entry_is_computed_again(swept, tmp_path, damage, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    shutil.copytree(swept, out, symlinks=True)
    (tmp_path / "s.yaml").write_text(BASE)
    entry = next(p for p in sorted((out / "cells").iterdir()))
    damage(entry)
    code = main(sweep("--out", str(out), "--workers", "1"))
    _, stderr = capsys.readouterr()
    assert code == 0, stderr
    info = json.loads((out / "meta.json").read_text())
    assert info["cells"]["damaged"] == 1 and info["cells"]["computed"] == 1
    assert entry.is_dir() and not entry.is_symlink()
    for name in ("curves.csv", "scenario.yaml"):
        assert (out / name).read_bytes() == (swept / name).read_bytes()
