"""`coagent demo`: three scripted agents on one sample repository, MTPO against serial.

The sample repository (a git repository generated in a temp folder) has a small Python
app, a README and a CHANGELOG. Three scripted agents, in rank order, with contended tasks:

    alice  greets the world in src/app.py (late), bumps VERSION in src/config.py (late),
           adds a CHANGELOG line (last of all)
    bob    adds a VERBOSE flag to src/app.py (early: before alice's edit of the same file),
           adds a CHANGELOG line (early)
    carol  reads src/config.py (early: before alice's bump), writes the version it read
           into README.md, adds a CHANGELOG line (early)

Under MTPO they run at once: bob's edit of app.py is misplaced and re-applied on top of
alice's; carol gets a stale-read notice for config.py and repairs README.md; the CHANGELOG
lines are put back in rank order. Then the same agents run under `serial` on a fresh copy,
and the two final trees are compared byte for byte (`.git` internals and `.coagent`
excepted). Exit 1 if they differ.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from coagent_cli.run.launcher import RunOptions, View, run_plan
from coagent_cli.run.plan import Plan, parse_plan
from coagent_cli.run.report import RunReport, report_table

__all__ = ["DemoResult", "run_demo", "demo_plan", "demo_plan_data", "make_sample_repo", "tree_digest",
           "compare_trees"]

IGNORED = (".git", ".coagent")

SAMPLE: dict[str, str] = {
    "README.md": "# greeter\n\nA tiny app that greets people.\n\nVersion: 1.0\n",
    "CHANGELOG.md": "# Changelog\n\n## Unreleased\n",
    "src/config.py": 'NAME = "greeter"\nVERSION = "1.0"\n',
    "src/app.py": ('from config import NAME, VERSION\n\n\ndef main():\n'
                   '    print("Hello")\n    print(f"{NAME} {VERSION}")\n\n\n'
                   'if __name__ == "__main__":\n    main()\n'),
    "tests/test_app.py": "def test_placeholder():\n    assert True\n",
}

# bob's edit is a recomputation (idempotent, it re-runs on any base), not a blind patch.
_ADD_VERBOSE = ("grep -q '^VERBOSE' src/app.py || "
                "sed -i 's/^def main():/VERBOSE = False\\n\\n\\ndef main():/' src/app.py")
# carol writes what she reads: the README line follows src/config.py's VERSION.
_README_VERSION = ("v=$(sed -n 's/^VERSION = \"\\(.*\\)\"/\\1/p' src/config.py) && "
                   "sed -i \"s/^Version: .*/Version: $v/\" README.md")


def _append(path: str, text: str) -> dict[str, Any]:
    return {"tool": {"name": "append_to_file", "params": {"path": path, "text": text}}}


def _replace(path: str, old: str, new: str) -> dict[str, Any]:
    return {"tool": {"name": "replace_in_file", "params": {"path": path, "old": old, "new": new}}}


def demo_plan(think: float = 1.0) -> Plan:
    """The three agents; every think time is a multiple of `think` seconds."""
    return parse_plan(demo_plan_data(think), "the demo plan")


def demo_plan_data(think: float = 1.0) -> dict[str, Any]:
    """The demo plan as a plan file holds it (JSON-ready)."""
    t = think
    alice = [{"tool": {"name": "read_file", "params": {"path": "src/app.py"}}},
             {"think": 2.5 * t},
             _replace("src/app.py", 'print("Hello")', 'print("Hello, world")'),
             {"think": 1.0 * t},
             _replace("src/config.py", 'VERSION = "1.0"', 'VERSION = "1.1"'),
             {"think": 1.0 * t},
             _append("CHANGELOG.md", "- Greet the world; version 1.1 (alice)\n")]
    bob = [{"tool": {"name": "read_file", "params": {"path": "src/app.py"}}},
           {"think": 1.0 * t},
           {"bash": _ADD_VERBOSE, "after_read": ["src/app.py"]},
           {"think": 2.5 * t},
           _append("CHANGELOG.md", "- Add a VERBOSE flag (bob)\n")]
    carol = [{"bash": "cat src/config.py"},
             {"think": 1.0 * t},
             {"bash": _README_VERSION, "after_read": ["src/config.py"]},
             {"think": 2.0 * t},
             _append("CHANGELOG.md", "- Show the version in the README (carol)\n")]
    agents = [
        {"name": "alice", "task": "Greet the world and release version 1.1.",
         "script": {"steps": alice, "repair_think": 0.2 * t}},
        {"name": "bob", "task": "Add a VERBOSE flag to the app.",
         "script": {"steps": bob, "repair_think": 0.2 * t}},
        {"name": "carol", "task": "Show the app's version in the README.",
         "script": {"steps": carol, "repair_think": 0.2 * t}},
    ]
    return {"agents": agents, "model": "scripted"}


def make_sample_repo(root: Path) -> Path:
    """A small git repository with one commit; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in SAMPLE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "coagent demo", "GIT_AUTHOR_EMAIL": "demo@coagent.invalid",
           "GIT_COMMITTER_NAME": "coagent demo", "GIT_COMMITTER_EMAIL": "demo@coagent.invalid"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Initial commit"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Every file below root (`.git` and `.coagent` excepted): path -> sha256 of its bytes."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in IGNORED or not (path.is_file() or path.is_symlink()):
            continue
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        found[rel.as_posix()] = hashlib.sha256(data).hexdigest()
    return found


def compare_trees(a: Path, b: Path) -> list[str]:
    """Paths whose bytes differ between the two trees (or that only one has)."""
    da, db = tree_digest(a), tree_digest(b)
    return sorted(p for p in da.keys() | db.keys() if da.get(p) != db.get(p))


@dataclass
class DemoResult:
    mtpo: RunReport
    serial: RunReport
    differing: list[str]
    mtpo_dir: Path
    serial_dir: Path

    @property
    def equal(self) -> bool:
        return not self.differing

    @property
    def speedup(self) -> float:
        return self.serial.wall_time / self.mtpo.wall_time if self.mtpo.wall_time else 0.0

    def check(self) -> dict[str, Any]:
        return {"against": "serial", "equal": self.equal, "differing": self.differing,
                "serial_wall_time": round(self.serial.wall_time, 3),
                "mtpo_wall_time": round(self.mtpo.wall_time, 3), "speedup": round(self.speedup, 2)}

    def to_json(self) -> dict[str, Any]:
        mtpo = {**self.mtpo.to_json(), "check": self.check()}
        return {"mtpo": mtpo, "serial": self.serial.to_json(), "check": self.check()}


def run_demo(*, think: float = 1.0, keep: Path | None = None, view: View = "none",
             console: Console | None = None) -> DemoResult:
    """Generate the sample repository, run the agents under MTPO, then under serial on a
    fresh copy, and compare the trees. With `keep`, both trees stay there."""
    base = Path(tempfile.mkdtemp(prefix="coagent-demo-", dir="/tmp" if Path("/tmp").is_dir() else None))
    try:
        pristine = make_sample_repo(base / "sample")
        mtpo_dir, serial_dir = base / "mtpo", base / "serial"
        shutil.copytree(pristine, mtpo_dir, symlinks=True)
        shutil.copytree(pristine, serial_dir, symlinks=True)
        plan = demo_plan(think)
        mtpo = run_plan(plan, RunOptions(mtpo_dir, cc="mtpo", view=view, console=console))
        if console is not None and view != "none":
            console.print("\n[bold]Now the same agents one after another (serial)...[/bold]")
        serial = run_plan(plan, RunOptions(serial_dir, cc="serial", view="none"))
        result = DemoResult(mtpo, serial, compare_trees(mtpo_dir, serial_dir), mtpo_dir, serial_dir)
        mtpo.check = result.check()
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for name, src in (("mtpo", mtpo_dir), ("serial", serial_dir)):
                shutil.rmtree(keep / name, ignore_errors=True)
                shutil.copytree(src, keep / name, symlinks=True)
            result.mtpo_dir, result.serial_dir = keep / "mtpo", keep / "serial"
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def print_summary(result: DemoResult, console: Console) -> None:
    console.print(report_table(result.mtpo, title="MTPO run"))
    console.print(report_table(result.serial, title="serial run (the reference)"))
    t = result.mtpo.totals()
    verdict = ("[bold green]equals[/bold green]" if result.equal
               else "[bold red]DIFFERS FROM[/bold red]")
    console.print(f"\nFinal tree under MTPO {verdict} the serial run"
                  + ("" if result.equal else f" ({', '.join(result.differing)})") + ".")
    console.print(f"Wall time: MTPO {result.mtpo.wall_time:.1f}s vs serial {result.serial.wall_time:.1f}s "
                  f"({result.speedup:.2f}x), with {t['notices']} notices, {t['undos']} undos, "
                  f"{t['redos']} redos, {t['drops']} drops.")
