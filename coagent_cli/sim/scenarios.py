"""Built-in contended scenarios for the simulator (demo and bench).

Time is in seconds of virtual time: thinking dominates (LLM inference), commands are
short. The agents touch overlapping files, so every controller has work to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from coagent_cli.sim.program import Append, Emit, Program, Read, Replace, Think, Write


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    programs: Mapping[str, Program]
    initial: Mapping[str, str]


def contended_repo() -> Scenario:
    """Four coding agents on one repository: a feature, a refactor, docs, a release."""
    app, util, log, readme = "file:src/app.py", "file:src/util.py", "file:CHANGELOG.md", "file:README.md"
    programs: dict[str, Program] = {
        "feature": (
            Think(30), Read((app, util)), Think(45),
            Write(app, (app, util), cost=2), Append(log, "- add --verbose\n"), Think(15),
        ),
        "refactor": (
            Think(20), Read(("dir:src",)), Think(50),
            Write(util, ("dir:src",), cost=2), Replace(app, "helper", "util.helper"), Think(10),
            Append(log, "- extract util\n"),
        ),
        "docs": (
            Think(25), Read((readme, app)), Think(35),
            Write(readme, (readme, app), cost=1), Append(log, "- document flags\n"),
        ),
        "release": (
            Think(15), Read((log,)), Think(30),
            Append(log, "## 1.1\n"), Think(10), Emit((log,)),
        ),
    }
    initial = {
        app: "def main():\n    helper()\n",
        util: "def helper(): ...\n",
        log: "# Changelog\n",
        readme: "# app\n",
    }
    return Scenario("contended-repo", contended_repo.__doc__ or "", programs, initial)


SCENARIOS = {"contended-repo": contended_repo}
