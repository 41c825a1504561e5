"""A wheel install works without the checkout: the package and its data, including the
shell side (shims/ at the repository root), which a wheel puts under
<prefix>/share/coagent/shims, where `shims_dir()` finds it. Built and installed offline
(setuptools and wheel come with the dev extras)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
SHIMS = ["share/coagent/shims/coagent.bashrc", "share/coagent/shims/bin/bash",
         "share/coagent/shims/bin/sh", "share/coagent/shims/bin/coagent-gate",
         "share/coagent/shims/lib/coagent_gate.py"]


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_a_wheel_carries_the_shims_and_an_install_finds_them(tmp_path: Path) -> None:
    pip("wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(tmp_path / "dist"), ".")
    (wheel,) = (tmp_path / "dist").glob("coagent-*.whl")
    with zipfile.ZipFile(wheel) as z:
        modes = {i.filename.split(".data/data/", 1)[-1]: i.external_attr >> 16 for i in z.infolist()}
    assert set(SHIMS) <= set(modes)
    assert all(modes[p] & 0o111 for p in SHIMS if "/bin/" in p)  # the shims stay executable
    assert "coagent_cli/tools/builtin/read_file.yaml" in modes

    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # --python: pip acts on the new venv only (with --prefix it would uninstall this venv's coagent)
    pip("--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel))
    purelib = next(venv.glob("lib/python3*/site-packages"))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]  # typer, pexpect...: this venv's
    (purelib / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COAGENT_SOCKET")}
    code = ("from coagent_cli.shell.gated import shims_dir, rc_file; import coagent_cli; "
            "print(coagent_cli.__file__); print(shims_dir()); print(rc_file().is_file())")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    package, shims, rc = done.stdout.split()
    assert package.startswith(str(purelib)) and Path(shims) == venv / "share" / "coagent" / "shims" and rc == "True"
    shim = subprocess.run([str(venv / "share/coagent/shims/bin/bash"), "-c", "echo through the shim"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert shim.returncode == 0 and shim.stdout == "through the shim\n"  # no daemon: the real bash
