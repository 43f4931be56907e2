"""Engine fixtures: a BERTH_ROOT holding the busybox test image, and the real `berth` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.images import BUSYBOX, standard_image
from tests.engine.netns import NetNS, session_netns


@dataclass
class Berth:
    """Runs the real `berth` command against one BERTH_ROOT, inside a network namespace of the tests
    (`netns`, or one shared by the session): bridges and NAT rules never reach the machine's network."""

    root: Path
    netns: NetNS | None = None
    on_host: bool = False  # the machine's network, for a registry on its loopback: only with --network none

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "BERTH_ROOT": str(self.root)}

    def argv(self, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "engine", *args]
        return argv if self.on_host else (self.netns or session_netns()).wrap(argv)

    def __call__(self, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env, **kwargs)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: namespaces, overlay mounts and cgroups"
    if BUSYBOX is None:
        return "needs busybox-static (/bin/busybox) to build test images"
    if not os.path.exists("/proc/self/ns/cgroup"):
        return "needs cgroup namespaces"
    return None


@pytest.fixture(scope="session")
def berth_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("berth-root")
    standard_image(root)
    yield root
    remove_containers(root)


@contextmanager
def private_berth(root: Path) -> Iterator[Berth]:
    """A Berth on its own empty root (skipping where containers cannot run); its containers go afterwards."""
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    yield Berth(root)
    remove_containers(root)


def remove_containers(root: Path) -> None:
    """`berth rm -f` whatever a test left behind under `root`."""
    containers = root / "containers"
    names = [n for n in os.listdir(containers) if not n.startswith(".")] if containers.is_dir() else []
    if names:
        Berth(root)("rm", "-f", *names)


@pytest.fixture(scope="session")
def berth(berth_root: Path) -> Berth:
    return Berth(berth_root)
