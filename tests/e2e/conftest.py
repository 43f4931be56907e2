"""Fixtures for the end-to-end tests: our registry on a loopback port, a private dockerd, and podman,
buildah and skopeo confined to temporary storage. Nothing here reaches beyond 127.0.0.1.

Session-scoped, so the whole e2e run starts one registry and one dockerd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import dockerd_command
from tests.e2e.images import build_context, busybox_rootfs, sha256_file, tar_directory
from tests.e2e.processes import (
    CommandFailed,
    free_port,
    kill_processes_using,
    log_tail,
    remove_tree,
    require_binaries,
    require_root,
    run,
    start_daemon,
    stop_daemon,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    """A short private directory under /tmp (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="berth-e2e-", dir="/tmp"))
    yield path
    kill_processes_using(path)
    remove_tree(path)


# --- the registry ---------------------------------------------------------------------------------------------


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT, the registry part of image references
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    ca: Path | None = None  # the CA that signed its certificate, when it serves TLS

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _verify(self) -> str | bool:
        return str(self.ca) if self.ca is not None else True

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, verify=self._verify(), **kwargs)

    def head(self, path: str, **kwargs) -> requests.Response:
        return requests.head(self.url + path, timeout=30, verify=self._verify(), **kwargs)

    def log_tail(self, lines: int = 80) -> str:
        return log_tail(self.log, lines)

    def stop(self) -> None:
        stop_daemon(self.process, grace=10)


def _registry_ready(url: str, verify: str | bool) -> bool:
    """Answering /v2/ at all: 200 when open, 401 once accounts exist."""
    try:
        return requests.get(url + "/v2/", timeout=2, verify=verify).status_code in (200, 401)
    except requests.RequestException:
        return False


def launch_registry(
    data_dir: Path,
    log: Path,
    *args: str | os.PathLike[str],
    tls_hosts: str | None = None,
    env: dict[str, str] | None = None,
) -> Registry:
    """`python -m registry` on a free loopback port with `args` (backends, log level); with `tls_hosts` it serves
    only HTTPS, with a CA made in DATA_DIR/tls. Retries on another port if the chosen one is taken meanwhile."""
    last_error: Exception | None = None
    for _attempt in range(3):  # a freed port may be taken again before the server binds it
        host = f"127.0.0.1:{free_port()}"
        argv: list[str | os.PathLike[str]] = [
            sys.executable,
            "-m",
            "registry",
            "--listen",
            host,
            "--data-dir",
            data_dir,
            "--workers",
            "1",
            *args,
        ]
        if tls_hosts:
            argv += ["--tls-self-signed", tls_hosts]
        proc = start_daemon(argv, log=log, cwd=REPO_ROOT, env={**os.environ, **(env or {})})
        reg = Registry(
            host=host,
            data_dir=data_dir,
            log=log,
            process=proc,
            scheme="https" if tls_hosts else "http",
            ca=data_dir / "tls" / "ca.crt" if tls_hosts else None,
        )
        try:
            wait_until(
                # the CA file appears before the server answers; requests wants it when verifying
                lambda r=reg: (r.ca is None or r.ca.exists()) and _registry_ready(r.url, r._verify()),
                timeout=60,
                what=f"berth registry on {host}",
                alive=lambda p=proc: None if p.poll() is None else f"exit code {p.returncode}",
            )
        except (RuntimeError, TimeoutError) as exc:
            stop_daemon(proc, grace=5)
            last_error = exc
            continue
        return reg
    pytest.fail(f"the registry did not start: {last_error}\n{log_tail(log)}")


def berth_admin(data_dir: Path, *args: str, stdin: str | None = None, extra: tuple[str, ...] = ()) -> str:
    """A `berth` admin command (user, grant, token, ...) on the registry's data directory; returns stdout."""
    argv = [sys.executable, "-m", "engine", *args, "--data-dir", str(data_dir), *extra]
    return run(argv, cwd=REPO_ROOT, stdin=stdin.encode() if stdin is not None else None).stdout


@pytest.fixture(scope="session")
def registry(e2e_dir: Path) -> Iterator[Registry]:
    reg = launch_registry(e2e_dir / "registry", e2e_dir / "registry.log")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failing e2e test shows the registry's log, since most failures are a conversation with it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            for reg in _registries_in(value):
                report.sections.append((f"berth registry log of {name} {reg.host} (tail)", reg.log_tail()))


def _registries_in(value: object) -> list[Registry]:
    """The registries a fixture value is or holds (in a list, or as attributes `registry`/`registries`)."""
    if isinstance(value, Registry):
        return [value]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _registries_in(v)]
    found = []
    for attribute in ("registry", "registries"):
        if attribute in getattr(value, "__dict__", {}):
            found += _registries_in(getattr(value, attribute))
    return found


# --- dockerd --------------------------------------------------------------------------------------------------


@dataclass
class Docker:
    root: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    storage_driver: str = ""

    def __call__(self, *args: str | os.PathLike[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check, **kwargs)

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def has_image(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker(e2e_dir: Path) -> Iterator[Docker]:
    require_root("a private dockerd")
    require_binaries("docker", "dockerd")
    root = e2e_dir / "docker"
    root.mkdir()
    (root / "config").mkdir()
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{root}/docker.sock",
        "DOCKER_CONFIG": str(root / "config"),  # never read or write ~/.docker
        "DOCKER_BUILDKIT": "0",  # the classic builder: no buildx plugin needed, honours --network=none
    }
    env.pop("DOCKER_CONTEXT", None)
    dock = Docker(root=root, env=env, log=root / "dockerd.log")
    failures = []
    for driver in ("overlay2", "vfs"):
        proc = start_daemon(dockerd_command(root, f"--storage-driver={driver}"), log=dock.log, env=env)
        try:
            wait_until(
                lambda: run(["docker", "version"], env=env, check=False, timeout=10).returncode == 0,
                timeout=60,
                what=f"dockerd ({driver})",
                alive=lambda p=proc: None if p.poll() is None else f"exit code {p.returncode}",
            )
        except (RuntimeError, TimeoutError) as exc:
            failures.append(f"{driver}: {exc}")
            stop_daemon(proc, grace=10)
            kill_processes_using(root)
            continue
        dock.process, dock.storage_driver = proc, driver
        break
    if dock.process is None:
        pytest.fail("dockerd did not start: " + "; ".join(failures) + "\n" + log_tail(dock.log))
    try:
        yield dock
    finally:
        stop_daemon(dock.process, grace=30)
        kill_processes_using(root)
        remove_tree(root)


@dataclass(frozen=True)
class BuiltImage:
    """The multi-layer busybox image built by the private dockerd, and what its files should hash to."""

    name: str  # the local tag, e.g. berth-e2e/app:1
    base: str  # the imported busybox base image
    image_id: str  # sha256 of its config
    diff_ids: list[str]  # uncompressed layer digests, bottom first
    file_sha256: dict[str, str] = field(default_factory=dict)  # path inside the image -> sha256
    archive: Path | None = None  # `docker save` of it, for podman


@pytest.fixture(scope="session")
def built_image(docker: Docker, e2e_dir: Path) -> BuiltImage:
    busybox = require_binaries("busybox")["busybox"]
    work = e2e_dir / "build"
    rootfs = busybox_rootfs(busybox, work / "rootfs")
    base = "berth-e2e/busybox-base:1"
    docker("import", tar_directory(rootfs, work / "rootfs.tar"), base)
    files = build_context(work / "context", base)
    files["/bin/busybox"] = sha256_file(Path(busybox))
    name = "berth-e2e/app:1"
    docker("build", "--network=none", "-t", name, work / "context")
    info = docker.inspect(name)
    archive = work / "app.tar"
    docker("save", "-o", archive, name)
    return BuiltImage(
        name=name,
        base=base,
        image_id=info["Id"],
        diff_ids=info["RootFS"]["Layers"],
        file_sha256=files,
        archive=archive,
    )


def restore_built_image(docker: Docker, built_image: BuiltImage, *refs: str) -> None:
    """Untags `refs` and leaves the built image known to dockerd by `built_image.name` alone, as the other e2e
    tests expect (test_docker tags it, and checks that removing its own names removes the image)."""
    if not docker.has_image(built_image.name):
        if docker.has_image(built_image.image_id):
            docker("tag", built_image.image_id, built_image.name)
        else:
            assert built_image.archive is not None
            docker("load", "-i", built_image.archive)
    for ref in refs:
        if ref != built_image.name and docker.has_image(ref):
            docker("rmi", ref)
    info = docker.inspect(built_image.image_id)
    for name in [*(info.get("RepoTags") or []), *(info.get("RepoDigests") or [])]:
        if name != built_image.name:
            docker("rmi", name, check=False)  # a digest name may go with the tag of its repository
    info = docker.inspect(built_image.image_id)
    assert info["RepoTags"] == [built_image.name] and not info.get("RepoDigests"), info["RepoDigests"]


# --- podman, buildah, skopeo ----------------------------------------------------------------------------------


@dataclass
class ContainerTools:
    """podman, buildah and skopeo with private storage, configuration and credentials."""

    root: Path
    env: dict[str, str]

    def _storage_flags(self) -> list[str]:
        return ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run"), "--storage-driver", "vfs"]

    def podman(
        self, *args: str | os.PathLike[str], check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        flags = [
            *self._storage_flags(),
            "--tmpdir",
            str(self.root / "podman-tmp"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--network-config-dir",
            str(self.root / "networks"),
        ]
        return run(["podman", *flags, *args], env=self.env, check=check, stdin=stdin)

    def buildah(self, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["buildah", *self._storage_flags(), *args], env=self.env, check=check)

    def skopeo(self, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["skopeo", *args], env=self.env, check=check)


@pytest.fixture(scope="session")
def container_tools(e2e_dir: Path, registry: Registry) -> ContainerTools:
    root = e2e_dir / "containers"
    for sub in ("storage", "run", "podman-tmp", "networks", "tmp"):
        (root / sub).mkdir(parents=True)
    registries_conf = root / "registries.conf"
    registries_conf.write_text(
        "unqualified-search-registries = []\n"
        'short-name-mode = "disabled"\n'
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    storage_conf = root / "storage.conf"
    storage_conf.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{root / "run"}"\ngraphroot = "{root / "storage"}"\n'
    )
    (root / "containers.conf").write_text("")
    (root / "auth.json").write_text("{}")
    env = {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        "REGISTRIES_CONFIG_PATH": str(registries_conf),
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "REGISTRY_AUTH_FILE": str(root / "auth.json"),
        "BUILDAH_ISOLATION": "chroot",
        "TMPDIR": str(root / "tmp"),
    }
    return ContainerTools(root=root, env=env)


def _skip_unless(*binaries: str) -> None:
    require_root("podman, buildah and skopeo with private storage")
    require_binaries(*binaries)


@pytest.fixture(scope="session")
def skopeo(container_tools: ContainerTools) -> ContainerTools:
    _skip_unless("skopeo")
    return container_tools


@pytest.fixture(scope="session")
def podman(container_tools: ContainerTools) -> ContainerTools:
    _skip_unless("podman")
    return container_tools


@pytest.fixture(scope="session")
def buildah(container_tools: ContainerTools) -> ContainerTools:
    _skip_unless("buildah")
    return container_tools


__all__ = [
    "BuiltImage",
    "CommandFailed",
    "ContainerTools",
    "Docker",
    "Registry",
    "berth_admin",
    "launch_registry",
    "restore_built_image",
]
