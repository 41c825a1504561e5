"""Three-way merge of whole-file contents, as `git merge-file -p` does it.

Used to re-apply a whole-file write on a new base: base = what the agent read, ours =
what it wrote, theirs = the live file now. A conflict is an answer (None), not an error.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from coagent_cli.errors import ExecutionError

_TIMEOUT = 60.0


def merge3(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """The merged bytes, or None when the two sides' changes conflict."""
    if ours == theirs or base == theirs:
        return ours
    if base == ours:
        return theirs
    with tempfile.TemporaryDirectory(prefix="coagent-merge-") as scratch:
        names = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(scratch) / name
            path.write_bytes(data)
            names.append(str(path))
        done = _run(["git", "merge-file", "-p", *names])
    if done.returncode == 0:
        return done.stdout
    if 0 < done.returncode < 128 or b"binary" in done.stderr:  # conflicts, or not text
        return None
    raise ExecutionError(f"git merge-file failed: {done.stderr.decode(errors='replace').strip()}")


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ExecutionError(f"git merge-file could not run: {exc}") from exc
