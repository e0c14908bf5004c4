"""Snakemake's working-directory lock after a killed run.

Snakemake locks its working directory (``.snakemake/locks/*.lock``) while it runs and removes the lock
when it ends.  A run killed with ``kill -9`` (or by an out-of-memory killer, or a lost SSH session)
cannot remove it, and every later run then stops with ``LockException`` until ``--unlock``.  A lock is
*stale* when no live Snakemake process works in that directory; ``temtwin run`` removes stale locks
(with ``snakemake --unlock``) and says so.
"""

from __future__ import annotations

import os
from pathlib import Path


def lock_files(workdir: str | os.PathLike) -> list[Path]:
    """The lock files Snakemake left in ``workdir`` (empty when unlocked)."""
    d = Path(workdir) / ".snakemake" / "locks"
    return sorted(d.glob("*.lock")) if d.is_dir() else []


def snakemake_running_in(workdir: str | os.PathLike) -> bool | None:
    """Whether a live Snakemake process has ``workdir`` as working directory.

    Reads ``/proc`` (Linux); returns None where it cannot tell (no ``/proc``).  Processes of other users
    whose working directory cannot be read count as not running here.
    """
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").is_file():
        return None
    target = Path(workdir).resolve()
    me = os.getpid()
    for p in proc.iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            if not any(b"snakemake" in a for a in argv):
                continue
            if Path(os.readlink(p / "cwd")).resolve() == target:
                return True
        except OSError:  # the process ended meanwhile, or belongs to another user
            continue
    return False


def stale_lock(workdir: str | os.PathLike) -> list[Path]:
    """The lock files of ``workdir`` when no Snakemake process runs there (empty when none or live)."""
    locks = lock_files(workdir)
    if not locks or snakemake_running_in(workdir) is not False:
        return []
    return locks
