"""Crash safety: a scripted multi-agent run against a detached daemon process that is
killed with SIGKILL at a seeded random moment; `recover` then `undo --all` must bring
the tree back to its launch state byte for byte (bytes, modes, links, files created or
deleted, directories), in every trial."""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.run import (
    DaemonSettings,
    Tokens,
    daemon_info,
    paths_for,
    recover,
    start_detached,
    undo_all,
)
from coagent_cli.errors import CoagentError
from coagent_cli.journal import Journal

pytestmark = pytest.mark.timeout(120)

TRIALS = 20
AGENTS = ["a0", "a1", "a2"]
SCRIPTS = {
    "a0": ["echo a0 >> shared.txt", "cat shared.txt", "printf 'x\\n' > new_a0.txt",
           "sed -i s/two/TWO/ notes.md", "rm -f gone.txt", "mkdir -p made/deep && echo z > made/deep/z.txt",
           "echo a0-again >> shared.txt"],
    "a1": ["cat shared.txt", "echo a1 >> shared.txt", "chmod +x run.sh", "mv notes.md notes2.md",
           "echo b > sub/b.txt", "echo a1-again >> shared.txt"],
    "a2": ["echo a2 > shared.txt", "rm -rf sub", "ln -sf shared.txt link2", "cat notes.md",
           "echo c >> sub2.txt", "echo a2-again >> shared.txt"],
}


def make_tree(root: Path) -> None:
    (root / "shared.txt").write_text("one\n")
    (root / "notes.md").write_text("one\ntwo\nthree\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o640)
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_text("a\n")
    (root / "empty").mkdir()
    os.symlink("notes.md", root / "link")


def tree_state(root: Path) -> dict[str, Any]:
    """Everything `undo --all` promises to restore, .coagent/ excepted."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".coagent" or rel_dir.startswith(".coagent/"):
            continue
        dirnames[:] = [d for d in dirnames if not (rel_dir == "." and d == ".coagent")]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def agent_script(socket: str, token: str, name: str, ws: Path, rng: random.Random) -> None:
    try:
        with Client(socket, timeout=10) as c:
            c.hello(agent=name, token=token)
            for line in SCRIPTS[name]:
                time.sleep(rng.uniform(0, 0.03))
                grant = c.begin_op(command=line, cwd=str(ws))
                if grant["action"] == "run":
                    done = subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, timeout=10)
                    c.end_op(grant["op"], done.returncode)
            c.finish()
    except CoagentError:
        pass  # the daemon died under us: that is the point


def one_trial(seed: int) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    ws = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp"))
    try:
        make_tree(ws)
        launch = tree_state(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", AGENTS))
        tokens = Tokens.load(paths_for(ws).tokens)
        agents = [threading.Thread(target=agent_script, args=(info.socket, tokens.agents[n], n, ws,
                                                              random.Random(seed * 10 + i)))
                  for i, n in enumerate(AGENTS)]
        for t in agents:
            t.start()
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(info.pid, signal.SIGKILL)
        for t in agents:
            t.join(20)
        _wait_dead(info.pid)
        assert daemon_info(paths_for(ws)) is None
        report = recover(ws)
        with Journal.open(paths_for(ws).journal) as journal:
            assert journal.open_effects() == []
        undo_all(ws)
        after = tree_state(ws)
        assert after == launch, f"seed {seed}: {sorted(set(after.items()) ^ set(launch.items()))[:6]}"
        return seed, report.reverted
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if not cmdline:
            return  # a zombie: dead, waiting for a parent to reap it
        time.sleep(0.01)
    raise AssertionError(f"daemon {pid} survived SIGKILL")


def test_sigkill_then_recover_and_undo_all_restores_launch_state() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one_trial, range(TRIALS)))
    assert [seed for seed, _ in results] == list(range(TRIALS))


def test_clean_run_then_undo_all_restores_launch_state() -> None:
    ws = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp"))
    try:
        make_tree(ws)
        launch = tree_state(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", AGENTS))
        tokens = Tokens.load(paths_for(ws).tokens)
        for i, name in enumerate(AGENTS):
            agent_script(info.socket, tokens.agents[name], name, ws, random.Random(i))
        assert tree_state(ws) != launch
        with Client(info.socket, timeout=10) as admin:
            admin.hello(token=tokens.admin, role="admin")
            snap = admin.status()["snapshot"]
            admin.shutdown()
        assert {a["state"] for a in snap["agents"]} == {"finished"}
        _wait_dead(info.pid)
        assert recover(ws).reverted == []
        undo_all(ws)
        assert tree_state(ws) == launch
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def test_after_recover_the_run_continues_with_its_agents() -> None:
    from coagent_cli.errors import UsageError

    ws = Path(tempfile.mkdtemp(prefix="cc", dir="/tmp"))
    try:
        make_tree(ws)
        launch = tree_state(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", AGENTS))
        tokens = Tokens.load(paths_for(ws).tokens)
        agent_script(info.socket, tokens.agents["a0"], "a0", ws, random.Random(1))
        os.kill(info.pid, signal.SIGKILL)
        _wait_dead(info.pid)
        with pytest.raises(UsageError) as err:
            start_detached(DaemonSettings(ws, "mtpo", AGENTS))
        assert "recover" in str(err.value)
        recover(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", []))  # continues: same agents, same tokens
        assert info.agents == AGENTS and Tokens.load(paths_for(ws).tokens).agents == tokens.agents
        agent_script(info.socket, tokens.agents["a1"], "a1", ws, random.Random(2))
        with Client(info.socket, timeout=10) as admin:
            admin.hello(token=tokens.admin, role="admin")
            admin.shutdown()
        _wait_dead(info.pid)
        undo_all(ws)  # the launch manifest is the first launch's
        assert tree_state(ws) == launch
    finally:
        shutil.rmtree(ws, ignore_errors=True)
