"""Berth as a user installs it, for the start-up benchmarks.

The development install (`pip install -e .`) starts every Python process through setuptools'
editable finder, imported by a `.pth` hook (15-30 ms on these machines), and this sandbox's
interpreter also imports certifi from a `.pth` hook at every start. Neither is there when berth
is installed from its wheel into a virtual environment, which is how it is deployed, so the
start-up targets are judged on that install, with the interpreter floor of the same environment
beside it (the development install's rows stay in the reports).

The environment is made from this tree: a venv of this interpreter without system
site-packages, berth installed into it by pip (which compiles its bytecode) without
dependencies, and the dependencies reached through a plain path entry to this interpreter's
site-packages. A path entry adds the directory to `sys.path` without running the `.pth` hooks in
it, so neither the editable finder (whose modules the venv's copy shadows anyway) nor the
certifi hook runs.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install(venv: Path) -> Path:
    """Make `venv` with berth installed from this tree; the path of its `berth` console script."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    staged = venv / "staged"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
        + ["--target", str(staged), str(ROOT)],
        check=True,
        capture_output=True,
    )
    for entry in staged.iterdir():
        if entry.name != "bin":
            entry.rename(packages / entry.name)
    (packages / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    script = venv / "bin" / "berth"
    generated = (staged / "bin" / "berth").read_text().split("\n", 1)[1]
    script.write_text(f"#!{python}\n{generated}")
    script.chmod(0o755)
    return script


def interpreter(script: Path) -> Path:
    """The venv's python, for its floor (`python -c pass`) beside the console script."""
    return script.parent / "python"
