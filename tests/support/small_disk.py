"""A small real filesystem for full-disk tests: a size-limited tmpfs mounted in a private mount namespace.

No root needed: `unshare --user --map-root-user --mount` gives a holder process a user and mount namespace of its
own, where it mounts a tmpfs of `size_bytes` over `mountpoint` and sleeps. Processes started with `command()`
(nsenter into the holder's namespaces) see the tmpfs there; everyone else sees the empty directory. The test
reads and writes the tmpfs through `/proc/<holder>/root/...` (path()), fills it with a filler file (fill()) and
frees it again (free()). Writes that do not fit fail with ENOSPC from the kernel (short writes at the edge
included), as on a full volume; the disk outlives the server so its files can be read after a shutdown.

    with SmallDisk(tmp_path / "disk", 1 << 20) as disk:
        proc = subprocess.Popen(disk.command([sys.executable, "-m", "sibyl", "serve", ...]))
        disk.fill(); ...; disk.free()
        disk.path(tmp_path / "disk" / "predictions.jsonl").read_text()
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.process import MissingBinaryError

HINT = "util-linux's unshare and nsenter, with unprivileged user namespaces enabled (kernel.unprivileged_userns_clone)"
_MOUNT = 'mount -t tmpfs -o size="$1",mode=0777 tmpfs "$2" && echo ready && exec sleep 1000000'
FILLER = ".filler"


class SmallDisk:
    def __init__(self, mountpoint: Path, size_bytes: int) -> None:
        self.mountpoint, self.size_bytes = mountpoint.resolve(), size_bytes
        self._holder: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
        if unshare is None or nsenter is None:
            raise MissingBinaryError("unshare/nsenter", HINT)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        command = [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]
        command += ["sh", "-c", _MOUNT, "sh", str(self.size_bytes), str(self.mountpoint)]
        holder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            holder.kill()
            _, err = holder.communicate(timeout=10)
            raise MissingBinaryError(f"a private tmpfs ({err.strip()})", HINT)
        self._holder = holder
        return self

    @property
    def pid(self) -> int:
        assert self._holder is not None, "small disk not started"
        return self._holder.pid

    def command(self, argv: list[str]) -> list[str]:
        """argv run inside the disk's namespaces (nsenter execs it: the process id is argv's)."""
        return ["nsenter", "--target", str(self.pid), "--user", "--mount", "--preserve-credentials", "--", *argv]

    def path(self, inside: Path) -> Path:
        """Where this process reaches `inside` (a path as the processes on the disk see it)."""
        return Path(f"/proc/{self.pid}/root") / inside.resolve().relative_to("/")

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path(self.mountpoint))
        return stats.f_bavail * stats.f_frsize

    def fill(self) -> int:
        """Write a filler file until the disk is full (ENOSPC); its size in bytes."""
        written = 0
        with self.path(self.mountpoint / FILLER).open("ab", buffering=0) as filler:
            for size in (1 << 16, 1 << 12, 1):  # big steps, then what is left at the edge
                block = b"\0" * size
                while True:
                    try:
                        written += filler.write(block) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free(self) -> None:
        """Remove the filler: the space it held is free again."""
        self.path(self.mountpoint / FILLER).unlink(missing_ok=True)

    def close(self) -> None:
        if self._holder is not None:
            self._holder.send_signal(signal.SIGKILL)
            self._holder.wait(10)
            self._holder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
