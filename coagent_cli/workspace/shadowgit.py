"""A private git repository whose work tree is the workspace.

Its GIT_DIR and index live under `.coagent/`; the user's `.git`, their global and system
config, hooks and attributes never take part. Every call is bounded by a timeout, and
subprocess failures become ExecutionError here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from coagent_cli.errors import ExecutionError

# Settings that make the shadow repository byte-exact and quiet, whatever the user's
# environment: no line-ending or encoding conversion, real modes and symlinks, no hooks.
_CONFIG = (
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.filemode=true",
    "core.symlinks=true",
    "core.ignorecase=false",
    "core.precomposeunicode=false",
    "core.quotepath=false",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=true",
    "core.looseCompression=1",
    "advice.addEmbeddedRepo=false",
    "advice.addIgnoredFile=false",
    "gc.auto=0",
)

# $GIT_DIR/info/attributes outranks every .gitattributes in the tree: switch off every
# attribute that could rewrite bytes on the way into the object store.
_ATTRIBUTES = "* -text -eol -ident -filter -working-tree-encoding -crlf\n"


class ShadowGit:
    def __init__(self, work_tree: Path, git_dir: Path, *, timeout: float) -> None:
        self.work_tree = work_tree
        self.git_dir = git_dir
        self.timeout = timeout
        home = git_dir / "home"
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_DIR": str(git_dir),
            "GIT_WORK_TREE": str(work_tree),
            "GIT_INDEX_FILE": str(git_dir / "index"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_LITERAL_PATHSPECS": "0",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "LC_ALL": "C",
        }

    def ensure(self, excluded: Sequence[str]) -> None:
        """Create the repository if needed and (re)write its exclude and attribute files."""
        if not (self.git_dir / "HEAD").exists():
            self.git_dir.mkdir(parents=True, exist_ok=True)
            self.run(["init", "--quiet"])
        try:
            (self.git_dir / "home").mkdir(exist_ok=True)
            info = self.git_dir / "info"
            info.mkdir(exist_ok=True)
            (info / "exclude").write_text("".join(f"/{p}/\n" for p in excluded))
            (info / "attributes").write_text(_ATTRIBUTES)
        except OSError as exc:
            raise ExecutionError(f"cannot prepare the shadow repository: {exc}") from exc

    def run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        literal: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["git", "--no-replace-objects"]
        for setting in _CONFIG:
            cmd += ["-c", setting]
        env = dict(self._env, GIT_LITERAL_PATHSPECS="1" if literal else "0")
        try:
            done = subprocess.run(
                [*cmd, *args], input=stdin, capture_output=True, env=env,
                cwd=self.work_tree, timeout=self.timeout, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise ExecutionError(f"shadow git {args[0]} failed: {exc}") from exc
        if check and done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()
            raise ExecutionError(f"shadow git {args[0]} exited {done.returncode}: {err}")
        return done
