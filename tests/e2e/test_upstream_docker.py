"""docker pull through an upstream prefix and through dockerd's registry-mirrors, then with the upstream gone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.servers import DISTRIBUTION, Distribution
from tests.conftest import RegistryProcess, dockerd_command
from tests.e2e.processes import (
    kill_processes_using,
    remove_tree,
    require_binaries,
    require_root,
    run,
    start_daemon,
    stop_daemon,
    wait_until,
)
from tests.registry.test_upstreams import add_upstream, push_image

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DISTRIBUTION, reason="docker-registry is not installed")]


@pytest.fixture
def mirror_setup(tmp_path: Path) -> Iterator[tuple[Distribution, RegistryProcess, dict[str, str], str]]:
    """An upstream with library/app:1, a Berth caching it under hub/ and as default upstream, and a
    private dockerd whose registry-mirrors names that Berth."""
    require_root("a private dockerd")
    require_binaries("docker", "dockerd", "skopeo")
    upstream = Distribution(tmp_path / "upstream")
    digest = push_image(tmp_path, upstream.host, "library/app:1", [{"etc/hello": b"hello\n"}])
    data = tmp_path / "berth"
    add_upstream(data, "hub", upstream.url, "--prefix", "hub", "--tag-ttl", "1s")
    berth = RegistryProcess(data, args=("--default-upstream", "hub"))
    root = Path(f"/tmp/berth-up-{os.getpid()}")
    root.mkdir()
    env = {**os.environ, "DOCKER_HOST": f"unix://{root}/docker.sock", "DOCKER_CONFIG": str(root / "config")}
    command = dockerd_command(root, "--storage-driver=vfs", f"--registry-mirror=http://127.0.0.1:{berth.port}")
    daemon = start_daemon(command, log=root / "dockerd.log", env=env)
    try:
        wait_until(
            lambda: run(["docker", "version"], env=env, check=False, timeout=10).returncode == 0,
            timeout=60,
            what="dockerd",
            alive=lambda: None if daemon.poll() is None else f"exit code {daemon.returncode}",
        )
        yield upstream, berth, env, digest
    finally:
        stop_daemon(daemon, grace=30)
        kill_processes_using(root)
        remove_tree(root)
        berth.stop()
        upstream.stop()


def test_docker_pulls_through_prefix_and_mirror_then_from_cache(
    mirror_setup: tuple[Distribution, RegistryProcess, dict[str, str], str],
) -> None:
    upstream, berth, env, digest = mirror_setup
    through_prefix = f"127.0.0.1:{berth.port}/hub/library/app:1"
    run(["docker", "pull", through_prefix], env=env)
    # docker.io/library/app goes to the mirror, which finds it at the default upstream.
    run(["docker", "pull", "app:1"], env=env)
    repo_digests = run(["docker", "image", "inspect", "-f", "{{json .RepoDigests}}", "app:1"], env=env).stdout
    assert digest in repo_digests
    upstream.stop()
    run(["docker", "rmi", through_prefix, "app:1"], env=env)
    run(["docker", "pull", through_prefix], env=env)
    run(["docker", "pull", "app:1"], env=env)
    missing = run(["docker", "pull", f"127.0.0.1:{berth.port}/hub/library/app@sha256:{'2' * 64}"], env=env, check=False)
    assert (
        missing.returncode != 0 and "not cached and upstream hub did not provide it" in missing.stderr + missing.stdout
    )
