"""docker-compose 1.29 (Debian's, on docker-py) brings up a two-service project through berth's engine API.

A web server whose page comes from an env file into a named volume, a published port, and a
client that fetches the page by the service's name over the project's network. The same against
the private dockerd (its default bridge is off, but compose makes a network of its own, and with
--iptables=false dockerd publishes ports through its userland proxy).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine, until

pytestmark = [pytest.mark.root, pytest.mark.e2e]

COMPOSE = f"""
version: "3.7"
services:
  web:
    image: {IMAGE_NAME}
    command: ["sh", "-c", "echo $$GREETING > /www/index.html && exec httpd -f -p 80 -h /www"]
    env_file: web.env
    volumes: ["site:/www"]
    ports: ["18080:80"]
  client:
    image: {IMAGE_NAME}
    command: ["sh", "-c", "until wget -qO- http://web/; do sleep 0.2; done"]
    depends_on: [web]
volumes:
  site: {{}}
"""


def test_compose_up_two_services(engine: Engine, tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian's package) is not installed")
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    (tmp_path / "web.env").write_text("GREETING=hello from compose\n")

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["docker-compose", "-p", "berthapi", *args]
        return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=engine.env, timeout=180)

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stderr
        state = "{{.State.Status}} {{.State.ExitCode}}"
        assert until(lambda: engine.ok("inspect", "--format", state, "berthapi_client_1").split() == ["exited", "0"])
        assert "hello from compose" in compose("logs", "client").stdout
        assert engine.netns.run("wget", "-qO-", "http://127.0.0.1:18080/").stdout == "hello from compose\n"
        labels = json.loads(engine.ok("inspect", "--format", "{{json .Config.Labels}}", "berthapi_web_1"))
        assert labels["com.docker.compose.service"] == "web"
        assert "berthapi_site" in engine.ok("volume", "ls", "--format", "{{.Name}}").split()
        down = compose("down", "-v")
        assert down.returncode == 0, down.stderr
        assert engine.ok("ps", "-aq") == ""
        assert "berthapi_default" not in engine.ok("network", "ls", "--format", "{{.Name}}").split()
        assert "berthapi_site" not in engine.ok("volume", "ls", "--format", "{{.Name}}").split()
    finally:
        compose("down", "-v")
