"""Cost of an incremental workspace snapshot on a generated tree.

    .venv/bin/python benchmarks/snapshot_cost.py [--files 5000] [--repeat 7] [--with-git]

Prints p50 (and min/max) wall time of: the first snapshot, a snapshot with nothing
changed, and a snapshot after rewriting 10 files. `--with-git` also makes the tree a git
repository with one commit (packed), so the `.git/` manifest walk is part of the cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from coagent_cli.journal import BlobStore
from coagent_cli.workspace import Snapshotter


def make_tree(root: Path, files: int) -> list[Path]:
    made = []
    for i in range(files):
        path = root / f"pkg{i % 50:02d}" / f"sub{i % 7}" / f"mod_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {i}\n" + "x = 1\n" * (i % 40))
        made.append(path)
    return made


def make_repo(root: Path) -> None:
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME=str(root))
    env |= {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env |= {"GIT_COMMITTER_EMAIL": "b@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"], ["gc", "-q"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, timeout=300)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def report(name: str, samples: list[float]) -> None:
    p50 = statistics.median(samples)
    print(f"{name:<28} p50 {p50:8.1f} ms   min {min(samples):8.1f}   max {max(samples):8.1f}   n={len(samples)}")


def run(files: int, repeat: int, with_git: bool) -> None:
    first, unchanged, touched = [], [], []
    for round_ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            ws.mkdir()
            made = make_tree(ws, files)
            if with_git:
                make_repo(ws)
            blobs = BlobStore(ws / ".coagent" / "blobs")
            snap = Snapshotter(ws, ws / ".coagent", blobs)
            time.sleep(1.1)  # let the files age past the racy-timestamp window
            first.append(timed(snap.snapshot))
            for _ in range(3):
                unchanged.append(timed(snap.snapshot))
            for k in range(3):
                for path in made[k * 10 + round_ :: max(1, files // 10)][:10]:
                    path.write_text(path.read_text() + f"# touched {k}\n")
                touched.append(timed(snap.snapshot))
    label = f"{files} files" + (" + .git" if with_git else "")
    print(f"snapshot cost, {label}, git {git_version()}")
    report("first snapshot", first)
    report("no-change snapshot", unchanged)
    report("after touching 10 files", touched)


def git_version() -> str:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--with-git", action="store_true")
    args = parser.parse_args()
    run(args.files, args.repeat, args.with_git)


if __name__ == "__main__":
    main()
