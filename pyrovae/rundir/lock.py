"""One training process per run folder: ``RUN/.lock``.

``pyrovae train`` holds the lock of its run folder from before it writes anything there
until it is done, so a second ``pyrovae train --resume RUN`` (or ``--out RUN --force``)
cannot interleave its checkpoints with those of a run still going. The lock is a file
created atomically (``O_CREAT | O_EXCL``) holding ``{"pid", "host", "started"}``.

A lock whose process is gone (killed with SIGKILL, the machine rebooted) does not block
anything: on the host that wrote it, a lock naming a process that no longer exists (or
a process started after the lock, its number reused), or a lock that cannot be read, is
taken over. A lock written on another host (a shared file system) cannot be checked from
here and is respected; delete it by hand once that process is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyrovae.errors import Param, PyrovaeError

#: The lock's file name in a run folder.
LOCK = ".lock"


def _read(path: Path) -> tuple[bytes, dict | None]:
    """The lock's bytes and its record (None when it cannot be read or parsed)."""
    for attempt in range(5):  # a lock just created may not hold its record yet
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError:
            raw = b""
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("pid"), int):
                return raw, record
        except ValueError:
            pass
        time.sleep(0.05 * (attempt + 1))
    return raw, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _started_after(pid: int, when: str) -> bool:
    """Whether process ``pid`` started after ``when`` (its number reused); False if unknown."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
        return started > datetime.fromisoformat(when).timestamp() + 2.0
    except (OSError, ValueError, IndexError, StopIteration, TypeError):
        return False


def holder(folder: str | Path) -> dict | None:
    """The record of the live process training in ``folder``, or None when it is free.

    A stale lock (see the module docstring) counts as free.
    """
    path = Path(folder) / LOCK
    try:
        _, record = _read(path)
    except FileNotFoundError:
        return None
    return record if record is not None and _live(record) else None


def _live(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # cannot be checked from here
    pid = record["pid"]
    return _alive(pid) and not _started_after(pid, str(record.get("started")))


def _busy(folder: Path, record: dict) -> PyrovaeError:
    lock = folder / LOCK
    pid, host = record.get("pid"), record.get("host")
    if host != socket.gethostname():
        return PyrovaeError(
            f"{lock} says process {pid} on {host} is training {folder}, which cannot be "
            f"checked from here; wait for it to finish, or delete {lock} if that process "
            "is gone"
        )
    return PyrovaeError(
        f"{folder} is being trained by process {pid} on {host} ({lock}); wait for it to "
        "finish or train into another ",
        Param("out"),
    )


def check_free(folder: str | Path) -> None:
    """Raise :class:`~pyrovae.errors.PyrovaeError` if a live process holds ``folder``'s lock."""
    record = holder(folder)
    if record is not None:
        raise _busy(Path(folder), record)


class RunLock:
    """Hold ``folder/.lock`` for the ``with`` block; refuse a folder another process holds.

    Parameters
    ----------
    folder
        An existing run folder.

    Raises
    ------
    PyrovaeError
        On entry, when a live process holds the lock (nothing in the folder is touched).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.record: dict[str, Any] | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock, taking over a stale one."""
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.record = record
            return
        raise PyrovaeError(f"cannot take the lock {self.path}: it keeps changing")

    def _take_over_stale(self) -> None:
        """Remove the lock if it is stale (else raise): only the very lock judged stale."""
        try:
            raw, record = _read(self.path)
        except FileNotFoundError:
            return
        if record is not None and _live(record):
            raise _busy(self.folder, record)
        # Move it aside first: of processes racing to take it over, one moves it; a fresh
        # lock moved by mistake (created in between) goes back.
        aside = self.path.with_name(f"{LOCK}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_bytes() != raw:
                os.replace(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Delete the lock if it is still this process's own."""
        if self.record is None:
            return
        try:
            _, record = _read(self.path)
            if record == self.record:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self.record = None
