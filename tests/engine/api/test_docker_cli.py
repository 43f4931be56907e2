"""The stock docker CLI against `berth engine serve` and against a private dockerd, scenario by scenario.

Every test in the first part runs twice (the `engine` fixture): the same commands, the same
assertions, so outputs (exit codes, columns, log lines, messages) are dockerd's, not our guess.
The tests that compare the two engines' texts directly take both fixtures.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine, until

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NONE = ("--network", "none")


def test_server_negotiates_api_1_41(engine: Engine) -> None:
    assert engine.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.41"
    assert engine.ok("info", "--format", "{{.OSType}}").strip() == "linux"


def test_run_rm_prints_output_and_propagates_exit_codes(engine: Engine) -> None:
    result = engine.docker("run", "--rm", *NONE, IMAGE_NAME, "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    result = engine.docker("run", "--rm", *NONE, IMAGE_NAME, "sh", "-c", "echo out; exit 3")
    assert (result.returncode, result.stdout) == (3, "out\n"), result.stderr
    result = engine.docker("run", "--rm", *NONE, IMAGE_NAME, "no-such-command")
    assert result.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in result.stderr
    assert engine.ok("ps", "-aq") == ""


def test_detached_container_in_ps_logs_stop_and_rm(engine: Engine) -> None:
    cid = engine.ok(
        "run", "-d", *NONE, "--name", "sleeper", IMAGE_NAME, "sh", "-c", "echo started; exec sleep 600"
    ).strip()
    assert len(cid) == 64
    rows = engine.ok("ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.State}}").splitlines()
    assert rows == [f"{cid[:12]} sleeper {IMAGE_NAME} running"]
    assert until(lambda: engine.ok("logs", "sleeper") == "started\n")
    assert engine.ok("inspect", "--format", "{{.State.Running}} {{.Name}}", "sleeper").strip() == "true /sleeper"
    assert engine.ok("stop", "-t", "1", "sleeper").strip() == "sleeper"
    assert engine.ok("ps", "-a", "--format", "{{.State}} {{.Status}}", "--filter", "name=sleeper").startswith(
        "exited Exited (137)"
    )
    assert engine.ok("wait", "sleeper").strip() == "137"  # sleep as PID 1 has no SIGTERM handler
    assert engine.ok("rm", "sleeper").strip() == "sleeper"
    assert engine.ok("ps", "-aq") == ""


def test_rm_force_kills_a_running_container(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "victim", IMAGE_NAME, "sleep", "600")
    refused = engine.docker("rm", "victim")
    assert refused.returncode == 1 and "Stop the container before attempting removal or force remove" in refused.stderr
    assert engine.ok("rm", "-f", "victim").strip() == "victim"
    assert engine.ok("ps", "-aq") == ""


def test_create_then_start_attached(engine: Engine) -> None:
    engine.ok("create", *NONE, "--name", "later", IMAGE_NAME, "sh", "-c", "echo ran; exit 5")
    assert engine.ok("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").strip() == "later"
    result = engine.docker("start", "-a", "later")
    assert (result.returncode, result.stdout) == (5, "ran\n"), result.stderr
    again = engine.docker("start", "-a", "later")
    assert (again.returncode, again.stdout) == (5, "ran\n"), again.stderr
    assert engine.ok("ps", "-a", "--filter", "exited=5", "--format", "{{.Names}}").strip() == "later"
    engine.ok("rm", "later")


def test_kill_with_a_signal_and_wait(engine: Engine) -> None:
    engine.ok(
        "run", "-d", *NONE, "--name", "trap", IMAGE_NAME, "sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.1; done"
    )
    assert engine.ok("kill", "-s", "USR1", "trap").strip() == "trap"
    assert engine.ok("wait", "trap").strip() == "7"
    not_running = engine.docker("kill", "trap")
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    engine.ok("rm", "trap")


def test_options_reach_the_container(engine: Engine) -> None:
    out = engine.ok(
        "run",
        "--rm",
        *NONE,
        "-e",
        "GREETING=hello",
        "-w",
        "/tmp",
        "-u",
        "65534",
        "--hostname",
        "box",
        "--entrypoint",
        "sh",
        IMAGE_NAME,
        "-c",
        "echo $GREETING $(pwd) $(id -u) $(hostname)",
    )
    assert out == "hello /tmp 65534 box\n"


def test_limits_read_only_and_init(berth_api: Engine, dockerd: Engine) -> None:
    """--memory, --cpus, --pids-limit, --read-only and --init as dockerd shows and applies them."""
    limits = ("--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "--read-only", "--init")
    fields = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.ReadonlyRootfs}}"
    script = "touch /x 2>/dev/null; echo $? $$; touch /tmp/y 2>/dev/null; echo $?"
    seen = []
    for engine in (berth_api, dockerd):
        engine.ok("create", *NONE, "--name", "limited", *limits, IMAGE_NAME, "sh", "-c", script)
        shown = engine.ok("inspect", "--format", f"{fields} {{{{.HostConfig.Init}}}}", "limited").split()
        result = engine.docker("start", "-a", "limited")
        engine.ok("rm", "limited")
        first, second = result.stdout.splitlines()
        code, pid = first.split()
        seen.append((shown, result.returncode, code, pid != "1", second))
    assert seen[0] == seen[1]
    assert seen[0] == (["67108864", "500000000", "50", "true", "true"], 0, "1", True, "1")


def test_the_docker_20_10_cli(berth_api: Engine, dockerd: Engine) -> None:
    """Debian's docker.io CLI (20.10, API 1.41) beside the docker 28 CLI the other tests use: the same answers
    from both engines."""
    cli = "/usr/bin/docker"
    version = subprocess.run([cli, "--version"], capture_output=True, text=True) if os.path.exists(cli) else None
    if version is None or "20.10" not in version.stdout:
        pytest.skip("Debian's docker.io 20.10 CLI is not at /usr/bin/docker")
    seen = []
    for engine in (berth_api, dockerd):

        def old(*args: str, env: dict[str, str] = engine.env) -> subprocess.CompletedProcess[str]:
            return subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=60)

        api = old("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}").stdout
        run = old("run", "--rm", *NONE, IMAGE_NAME, "sh", "-c", "echo out; echo err >&2; exit 3")
        old("run", "-d", *NONE, "--name", "old-cli", IMAGE_NAME, "sleep", "600")
        ps = old("ps", "--format", "{{.Names}} {{.Image}} {{.State}}").stdout
        header = old("ps").stdout.splitlines()[0].split()
        exec_ = old("exec", "old-cli", "sh", "-c", "echo in; exit 4")
        stopped = old("stop", "-t", "1", "old-cli").stdout
        waited = old("wait", "old-cli").stdout
        images = old("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME).stdout
        removed = old("rm", "old-cli").stdout
        missing = old("rm", "old-cli")
        seen.append(
            (api, (run.returncode, run.stdout, run.stderr), ps, header, (exec_.returncode, exec_.stdout),
             stopped, waited, images, removed, (missing.returncode, missing.stderr))
        )  # fmt: skip
    assert seen[0] == seen[1]
    assert seen[0][0] == "1.41 1.41\n" and seen[0][1] == (3, "out\n", "err\n")


def test_images_columns_and_inspect(engine: Engine) -> None:
    header = engine.ok("images").splitlines()[0].split()
    assert header == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    listed = engine.ok("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME).split()
    assert listed == [f"{IMAGE_NAME}:latest"]
    image_id = engine.ok("image", "inspect", "--format", "{{.Id}}", IMAGE_NAME).strip()
    assert engine.ok("images", "-q", "--no-trunc", IMAGE_NAME).strip() == image_id
    engine.ok("tag", IMAGE_NAME, "berth-copy:2")
    assert engine.ok("images", "-q", "--no-trunc", "berth-copy:2").strip() == image_id
    assert engine.ok("rmi", "berth-copy:2").strip() == "Untagged: berth-copy:2"
    missing = engine.docker("image", "inspect", "berth-copy:2")
    assert missing.returncode == 1


@pytest.mark.parametrize(
    "args",
    [
        ("rm", "no-such-container"),
        ("logs", "no-such-container"),
        ("stop", "no-such-container"),
        ("inspect", "--type", "container", "no-such-container"),
    ],
)
def test_error_messages_are_dockerds(berth_api: Engine, dockerd: Engine, args: tuple[str, ...]) -> None:
    ours, theirs = berth_api.docker(*args), dockerd.docker(*args)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)


def test_name_conflict_and_ps_columns_match_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    texts = []
    for engine in (berth_api, dockerd):
        cid = engine.ok("create", *NONE, "--name", "taken", IMAGE_NAME, "sh", "-c", "echo a b; true").strip()
        conflict = engine.docker("create", *NONE, "--name", "taken", IMAGE_NAME, "sh")
        listed = engine.ok("ps", "-a").splitlines()[0].split()
        command = engine.ok("ps", "-a", "--format", "{{.Command}}").strip()
        texts.append((conflict.returncode, conflict.stderr.replace(cid, "ID"), listed, command))
        engine.ok("rm", "taken")
    assert texts[0] == texts[1]


def test_inspect_shapes_match_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    keys = []
    for engine in (berth_api, dockerd):
        engine.ok("create", *NONE, "--name", "shape", IMAGE_NAME, "true")
        doc = json.loads(engine.ok("inspect", "shape"))[0]
        keys.append({k for k in doc["State"]} & {"Status", "Running", "Paused", "Pid", "ExitCode", "Error"})
        assert doc["State"]["Status"] == "created" and doc["Config"]["Cmd"] == ["true"]
        engine.ok("rm", "shape")
    assert keys[0] == keys[1]


def test_exec_streams_exit_codes_and_options(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "host", IMAGE_NAME, "sleep", "600")
    result = engine.docker("exec", "host", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    out = engine.ok("exec", "-u", "65534", "-w", "/tmp", "-e", "X=1", "host", "sh", "-c", "echo $(id -u) $(pwd) $X")
    assert out == "65534 /tmp 1\n"
    missing = engine.docker("exec", "host", "no-such-command")
    assert missing.returncode in (126, 127) and "executable file not found" in missing.stderr + missing.stdout
    engine.ok("exec", "-d", "host", "touch", "/tmp/detached")
    assert until(lambda: engine.docker("exec", "host", "test", "-e", "/tmp/detached").returncode == 0)
    engine.ok("rm", "-f", "host")
    stopped = engine.docker("exec", "host", "true")
    assert stopped.returncode == 1 and "No such container: host" in stopped.stderr


def test_rename_and_restart(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "first", IMAGE_NAME, "sh", "-c", "echo up; exec sleep 600")
    engine.ok("rename", "first", "second")
    assert engine.ok("ps", "--format", "{{.Names}}").split() == ["second"]
    engine.ok("restart", "-t", "1", "second")
    assert engine.ok("ps", "--format", "{{.Names}} {{.State}}").split() == ["second", "running"]
    assert until(lambda: engine.ok("logs", "second") == "up\nup\n")
    engine.ok("rm", "-f", "second")


def test_restart_policies(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "flaky", "--restart", "on-failure:2", IMAGE_NAME, "sh", "-c", "exit 3")
    done = "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
    assert until(lambda: engine.ok("inspect", "--format", done, "flaky").split() == ["2", "exited", "3"], 60)
    engine.ok("run", "-d", *NONE, "--name", "always", "--restart", "always", IMAGE_NAME, "sh", "-c", "sleep 0.2")
    assert until(lambda: int(engine.ok("inspect", "--format", "{{.RestartCount}}", "always")) >= 2, 60)
    engine.ok("stop", "-t", "1", "always")
    assert until(lambda: engine.ok("inspect", "--format", "{{.State.Status}}", "always").strip() == "exited")
    count = engine.ok("inspect", "--format", "{{.RestartCount}}", "always")
    # stopped by the user: no more restarts (watched over a few of the keeper's passes)
    assert not until(lambda: engine.ok("inspect", "--format", "{{.RestartCount}}", "always") != count, 4)
    assert engine.ok("inspect", "--format", "{{.State.Status}}", "always").strip() == "exited"
    refused = engine.docker("run", "--rm", "--restart", "always", *NONE, IMAGE_NAME, "true")
    assert refused.returncode == 125 and "onflicting options" in refused.stderr
    engine.ok("rm", "-f", "flaky", "always")


def test_named_volumes(engine: Engine) -> None:
    assert engine.ok("volume", "create", "--label", "kind=test", "shared").strip() == "shared"
    assert "shared" in engine.ok("volume", "ls", "--format", "{{.Name}}").split()
    assert engine.ok("volume", "inspect", "--format", "{{.Driver}} {{.Labels}}", "shared").strip() == (
        "local map[kind:test]"
    )
    engine.ok("run", "--rm", *NONE, "-v", "shared:/data", IMAGE_NAME, "sh", "-c", "echo kept > /data/file")
    out = engine.ok(
        "run", "--rm", *NONE, "--mount", "type=volume,source=shared,target=/v,readonly", IMAGE_NAME, "cat", "/v/file"
    )
    assert out == "kept\n"
    readonly = engine.docker(
        "run", "--rm", *NONE, "--mount", "type=volume,source=shared,target=/v,readonly", IMAGE_NAME, "touch", "/v/x"
    )
    assert readonly.returncode == 1 and "Read-only file system" in readonly.stderr + readonly.stdout
    engine.ok("create", *NONE, "--name", "user", "-v", "shared:/data", IMAGE_NAME, "true")
    busy = engine.docker("volume", "rm", "shared")
    assert busy.returncode == 1 and "volume is in use" in busy.stderr
    engine.ok("rm", "user")
    assert engine.ok("volume", "rm", "shared").strip() == "shared"
    missing = engine.docker("volume", "inspect", "shared")
    assert missing.returncode == 1 and "no such volume" in missing.stderr
    bad = engine.docker("volume", "create", "../escape")
    assert bad.returncode == 1 and "includes invalid characters for a local volume name" in bad.stderr


def test_top_stats_df_and_prune(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "busy", "--memory", "64m", IMAGE_NAME, "sh", "-c", "exec sleep 600")
    top = engine.ok("top", "busy").splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [line.split()[-2:] for line in top[1:]] == [["sleep", "600"]]
    stats = engine.ok("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "busy").split()
    assert stats[0] == "busy" and stats[-1] == "1" and stats[-2] == "64MiB"
    engine.ok("run", *NONE, "--name", "done", IMAGE_NAME, "true")
    df = engine.ok("system", "df", "--format", "{{.Type}}").split()
    assert df[:2] == ["Images", "Containers"]
    pruned = engine.ok("container", "prune", "-f")
    assert pruned.startswith("Deleted Containers:\n") and "Total reclaimed space:" in pruned
    assert engine.ok("ps", "-a", "--format", "{{.Names}}").split() == ["busy"]
    engine.ok("rm", "-f", "busy")


def test_classic_build(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {IMAGE_NAME}\nARG WHO=nobody\nCOPY hello.txt /hello.txt\n"
        'RUN echo "built by $WHO" > /built.txt\nCMD ["cat", "/built.txt", "/hello.txt"]\n'
    )
    (tmp_path / "hello.txt").write_text("hello file\n")
    (tmp_path / "Dockerfile.bad").write_text(f"FROM {IMAGE_NAME}\nRUN exit 3\n")
    build = ("build", "--network", "none")
    env = {"DOCKER_BUILDKIT": "0"}
    since = f"{time.time():.6f}"
    built = engine.docker(*build, "--build-arg", "WHO=api", "-t", "built:1", str(tmp_path), extra_env=env)
    assert built.returncode == 0, built.stderr
    assert "Successfully tagged built:1" in built.stdout
    assert engine.ok("run", "--rm", *NONE, "built:1") == "built by api\nhello file\n"
    quiet = engine.docker(*build, "-q", "-t", "built:2", str(tmp_path), extra_env=env)
    assert quiet.stdout.strip() == engine.ok("image", "inspect", "--format", "{{.Id}}", "built:2").strip()
    failed = engine.docker(*build, "--force-rm", "-f", str(tmp_path / "Dockerfile.bad"), str(tmp_path), extra_env=env)
    assert failed.returncode == 3
    assert engine.ok("ps", "-aq") == ""  # the failed step's container is gone (berth always, docker with --force-rm)
    tagged = engine.ok(
        "events", "--since", since, "--until", f"{time.time():.6f}", "--filter", "type=image", "--filter", "event=tag",
        "--format", "{{.Actor.Attributes.name}}",
    )  # fmt: skip
    assert tagged.split() == ["built:1", "built:2"]
    engine.ok("rmi", "built:1", "built:2")


CONTAINER_EVENTS = (
    "--filter",
    "type=container",
    *(f"--filter=event={e}" for e in ("create", "start", "die", "destroy")),
)
EVENT_FORMAT = '{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes "exitCode"}}'


def test_events_stream(engine: Engine) -> None:
    """`docker events --since` sends what happened since then and follows on; lines are read unbuffered
    (select cannot see what a buffered reader already holds)."""
    since = f"{time.time():.6f}"
    watcher = subprocess.Popen(
        ["docker", "events", "--since", since, *CONTAINER_EVENTS, "--format", EVENT_FORMAT],
        stdout=subprocess.PIPE,
        env=engine.env,
    )
    assert watcher.stdout is not None
    fd, pending = watcher.stdout.fileno(), [b""]

    def line(timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in pending[0]:
            ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                return None
            pending[0] += os.read(fd, 4096)
        first, pending[0] = pending[0].split(b"\n", 1)
        return first.decode().strip()

    try:
        engine.ok("create", *NONE, "--name", "marker", IMAGE_NAME, "true")
        engine.ok("rm", "marker")
        ran = engine.docker("run", *NONE, "--name", "watched", IMAGE_NAME, "sh", "-c", "exit 2")
        assert ran.returncode == 2
        engine.ok("rm", "watched")
        seen: list[str] = []
        while "destroy watched" not in seen:
            got = line(30)
            assert got is not None, seen
            seen.append(got)
        assert seen == [
            "create marker",
            "destroy marker",
            "create watched",
            "start watched",
            "die watched 2",
            "destroy watched",
        ]
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_events_history_shows_a_container_gone_within_milliseconds(engine: Engine) -> None:
    """A container the engine's own CLI (berth's, or docker's for dockerd) creates, runs and removes at
    once is in `docker events --since ... --until ...`, which ends after the history."""
    since = f"{time.time():.6f}"
    if engine.name == "berth":
        ran = engine.berth("run", "--rm", *NONE, IMAGE_NAME, "true")
    else:
        ran = engine.docker("run", "--rm", *NONE, IMAGE_NAME, "true")
    assert ran.returncode == 0, ran.stderr

    def history() -> list[str]:
        now = f"{time.time():.6f}"
        fmt = "{{.Action}} {{.Actor.ID}}"
        return engine.ok("events", "--since", since, "--until", now, *CONTAINER_EVENTS, "--format", fmt).splitlines()

    assert until(lambda: len(history()) == 4)
    lines = history()
    assert [line.split()[0] for line in lines] == ["create", "start", "die", "destroy"]
    assert len({line.split()[1] for line in lines}) == 1


@pytest.mark.parametrize(
    "query", ["since=garbage", "until=10m", "since=1.2.3", "since=99999999999999999999", "since=.5", "since=10&until=5"]
)
def test_events_refuses_bad_times(berth_api: Engine, dockerd: Engine, query: str) -> None:
    """dockerd refuses these too, but with a 500 for what strconv cannot parse: berth says 400, a bad parameter."""
    from tests.engine.api.test_service import request

    berth_status, body = request(berth_api, "GET", f"/v1.41/events?{query}")
    docker_status, _ = request(dockerd, "GET", f"/v1.41/events?{query}")
    assert berth_status == 400 and docker_status in (400, 500), body
    assert json.loads(body)["message"]


def test_run_keeps_stdout_and_stderr_apart(engine: Engine) -> None:
    result = engine.docker("run", "--rm", *NONE, IMAGE_NAME, "sh", "-c", "echo out; echo err >&2; echo out2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\nout2\n", "err\n")


STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")


def test_logs_streams_timestamps_since_until_tail(engine: Engine) -> None:
    """Output before and after a moment the test picks: the container waits for a file the test makes."""
    script = "echo one; echo two >&2; until [ -e /tmp/go ]; do sleep 0.05; done; echo three; printf partial"
    engine.ok("run", "-d", *NONE, "--name", "talker", IMAGE_NAME, "sh", "-c", script)
    try:
        assert until(lambda: engine.docker("logs", "talker").stderr == "two\n")
        middle = f"{time.time():.6f}"
        engine.ok("exec", "talker", "touch", "/tmp/go")
        assert engine.ok("wait", "talker").strip() == "0"

        def logs(*args: str) -> tuple[str, str]:
            result = engine.docker("logs", *args, "talker")
            assert result.returncode == 0, result.stderr
            return result.stdout, result.stderr

        assert logs() == ("one\nthree\npartial", "two\n")
        assert logs("--since", middle) == ("three\npartial", "")
        assert logs("--until", middle) == ("one\n", "two\n")
        assert logs("--tail", "1") == ("partial", "")
        assert logs("--tail", "2") == ("three\npartial", "")
        assert logs("--tail", "abc") == logs("--tail", "-5") == logs()  # dockerd reads these as all
        stamped_out, stamped_err = logs("-t")
        assert [STAMPED.match(line).group(1) for line in stamped_out.splitlines()] == ["one", "three", "partial"]
        assert [STAMPED.match(line).group(1) for line in stamped_err.splitlines()] == ["two"]
        tail_out, _ = logs("-t", "--tail", "1")
        assert STAMPED.match(tail_out).group(1) == "partial"  # type: ignore[union-attr]
        for bad in ("garbage", "1.2.3"):
            refused = engine.docker("logs", "--since", bad, "talker")
            assert refused.returncode == 1 and "failed to parse value as time or duration" in refused.stderr
    finally:
        engine.docker("rm", "-f", "talker")


@pytest.mark.parametrize("query", ["since=garbage", "until=abc", "since=1.2.3", "since=99999999999999999999"])
def test_logs_refuses_bad_times(berth_api: Engine, dockerd: Engine, query: str) -> None:
    """The CLI checks times itself; a raw request with a bad one: dockerd's 500 from strconv, berth's 400."""
    from tests.engine.api.test_service import request

    for engine in (berth_api, dockerd):
        engine.ok("create", *NONE, "--name", "quiet", IMAGE_NAME, "true")
    try:
        berth_status, body = request(berth_api, "GET", f"/v1.41/containers/quiet/logs?stdout=1&{query}")
        docker_status, _ = request(dockerd, "GET", f"/v1.41/containers/quiet/logs?stdout=1&{query}")
        assert berth_status == 400 and docker_status in (400, 500), body
        assert query.partition("=")[0] in json.loads(body)["message"]
    finally:
        for engine in (berth_api, dockerd):
            engine.ok("rm", "quiet")


def test_berth_logs_flags(berth_api: Engine) -> None:
    """`berth logs` (the CLI front door) over what `berth run -d` started: the same streams and flags."""
    script = "echo one; echo two >&2; until [ -e /tmp/go ]; do sleep 0.05; done; echo three"
    started = berth_api.berth("run", "-d", *NONE, "--name", "chatty", IMAGE_NAME, "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    try:

        def logs(*args: str) -> tuple[int, str, str]:
            result = berth_api.berth("logs", *args, "chatty")
            return result.returncode, result.stdout, result.stderr

        # both streams are in the log (the copier reads two pipes: either may be recorded first)
        assert until(lambda: logs() == (0, "one\n", "two\n"))
        middle = f"{time.time():.6f}"
        assert berth_api.berth("exec", "chatty", "touch", "/tmp/go").returncode == 0
        berth_api.ok("wait", "chatty")
        assert logs() == (0, "one\nthree\n", "two\n")
        assert logs("--since", middle) == (0, "three\n", "")
        assert logs("--until", middle) == (0, "one\n", "two\n")
        assert logs("--since", "10m", "--tail", "1") == (0, "three\n", "")
        assert logs("-f") == (0, "one\nthree\n", "two\n")  # it has stopped: follow ends
        code, out, _ = logs("-t", "--tail", "1")
        assert code == 0 and STAMPED.match(out.strip()).group(1) == "three"  # type: ignore[union-attr]
        for bad in (("--since", "garbage"), ("--until", "2020-13-45"), ("--tail", "abc"), ("--tail", "-5")):
            code, out, err = logs(*bad)
            assert code == 125 and out == "" and "invalid" in err, (bad, err)
    finally:
        berth_api.berth("rm", "-f", "chatty")


def test_events_of_images_networks_and_volumes_match_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    def story(engine: Engine) -> list[str]:
        since = f"{time.time():.6f}"
        engine.ok("volume", "create", "evvol")
        engine.ok("volume", "rm", "evvol")
        engine.ok("network", "create", "evnet")
        engine.ok("network", "rm", "evnet")
        engine.ok("tag", IMAGE_NAME, "evtag:1")
        engine.ok("rmi", "evtag:1")
        fmt = '{{.Type}} {{.Action}} {{if eq .Type "volume"}}{{.Actor.ID}}{{else}}{{.Actor.Attributes.name}}{{end}}'
        now = f"{time.time():.6f}"
        lines = engine.ok("events", "--since", since, "--until", now, "--format", fmt).splitlines()
        return [
            line.replace(engine.ok("image", "inspect", "--format", "{{.Id}}", IMAGE_NAME).strip(), "ID")
            for line in lines
        ]

    assert (
        story(berth_api)
        == story(dockerd)
        == [
            "volume create evvol",
            "volume destroy evvol",
            "network create evnet",
            "network destroy evnet",
            "image tag evtag:1",
            "image untag ID",
        ]
    )


def test_exec_events(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "execed", IMAGE_NAME, "sleep", "600")
    try:
        since = f"{time.time():.6f}"
        assert engine.docker("exec", "execed", "sh", "-c", "exit 3").returncode == 3
        now = f"{time.time():.6f}"
        filters = [f"--filter=event={e}" for e in ("exec_create", "exec_start", "exec_die")]
        fmt = '{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes "exitCode"}}'
        found = engine.ok("events", "--since", since, "--until", now, *filters, "--format", fmt).splitlines()
        lines = [line.strip() for line in found]
        assert lines == ["exec_create: sh -c exit 3 execed", "exec_start: sh -c exit 3 execed", "exec_die execed 3"]
    finally:
        engine.docker("rm", "-f", "execed")


def test_logs_of_a_terminal_container_are_raw(engine: Engine) -> None:
    """With a TTY there is one stream: docker sends the log unframed, all of it on stdout."""
    engine.ok("run", "-d", "-t", *NONE, "--name", "termlog", IMAGE_NAME, "sh", "-c", "echo out; echo err >&2")
    try:
        assert engine.ok("wait", "termlog").strip() == "0"
        result = engine.docker("logs", "termlog")
        assert (result.returncode, result.stdout, result.stderr) == (0, "out\nerr\n", "")
        stamped = engine.docker("logs", "-t", "--tail", "1", "termlog")
        assert STAMPED.match(stamped.stdout.rstrip("\r\n")).group(1) == "err"  # type: ignore[union-attr]
    finally:
        engine.docker("rm", "-f", "termlog")


def test_a_foreground_run_is_logged(berth_api: Engine, dockerd: Engine) -> None:
    """`run` without -d shows the output and keeps it: `logs` afterwards prints it, streams apart, as
    dockerd's. Berth's half runs through `berth run` (the CLI front door that supervises in the
    foreground); the output is shown unchanged, the exit code kept."""
    script = "seq 1 3000; echo err >&2; exit 3"
    for engine in (berth_api, dockerd):
        argv = ("run", *NONE, "--name", "fg", IMAGE_NAME, "sh", "-c", script)
        ran = engine.berth(*argv) if engine is berth_api else engine.docker(*argv)
        try:
            expected = "".join(f"{n}\n" for n in range(1, 3001))
            assert (ran.returncode, ran.stdout, ran.stderr) == (3, expected, "err\n"), engine.name
            logged = engine.docker("logs", "fg")
            assert (logged.returncode, logged.stdout, logged.stderr) == (0, expected, "err\n"), engine.name
            if engine is berth_api:
                own = engine.berth("logs", "--tail", "2", "fg")
                assert (own.returncode, own.stdout, own.stderr) == (0, "3000\n", "err\n")
        finally:
            engine.docker("rm", "fg")
    # --rm: nothing is left to read afterwards, and the run path stays without a copier
    ran = berth_api.berth("run", "--rm", *NONE, IMAGE_NAME, "sh", "-c", "echo out; echo err >&2")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "out\n", "err\n")


def test_a_foreground_run_relays_interrupt_and_keeps_showing_output(berth_api: Engine) -> None:
    """^C reaches the whole foreground process group, the log's copier included: it goes on copying
    while the container handles the signal, so what the container prints afterwards is shown and logged."""
    script = 'trap "echo got-int; exit 5" INT; echo ready; while :; do sleep 0.05; done'
    argv = berth_api.netns.wrap([sys.executable, "-m", "engine", "run", "--name", "intfg", *NONE, IMAGE_NAME])
    ran = subprocess.Popen(
        [*argv, "sh", "-c", script], stdout=subprocess.PIPE, env=berth_api.env, start_new_session=True
    )
    try:
        assert ran.stdout is not None
        assert ran.stdout.readline() == b"ready\n"
        os.killpg(ran.pid, signal.SIGINT)
        out, _ = ran.communicate(timeout=30)
        assert (ran.returncode, out) == (5, b"got-int\n")
        assert berth_api.ok("logs", "intfg") == "ready\ngot-int\n"
    finally:
        if ran.poll() is None:
            ran.kill()
            ran.wait()
        berth_api.docker("rm", "-f", "intfg")


def test_restart_policy_events_match_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    """A container restarted by its policy (`on-failure:2`) records die and start for each restart, and
    no `restart` event (that is `docker restart`'s): compared with dockerd's journal."""

    def story(engine: Engine) -> list[str]:
        since = f"{time.time():.6f}"
        engine.ok("run", "-d", *NONE, "--name", "flaky", "--restart", "on-failure:2", IMAGE_NAME, "sh", "-c", "exit 3")

        def found() -> list[str]:
            now = f"{time.time():.6f}"
            lines = engine.ok(
                "events", "--since", since, "--until", now, "--filter", "container=flaky", "--format", EVENT_FORMAT
            )
            return [line.strip() for line in lines.splitlines()]

        try:
            assert until(lambda: found().count("die flaky 3") == 3, 60), found()
            return found()
        finally:
            engine.docker("rm", "-f", "flaky")

    assert story(berth_api) == story(dockerd) == ["create flaky", *["start flaky", "die flaky 3"] * 3]


def test_restart_policies_across_a_service_restart(berth_api: Engine, dockerd: Engine) -> None:
    """Which containers run after the service (or dockerd) stops and starts again, compared with dockerd:
    `always` ones even when stopped by hand, `on-failure` ones stopped by hand with a non-zero exit,
    `unless-stopped` ones unless stopped by hand; such a start counts no restart and forgets the stop.
    dockerd stops its containers when it stops (berth's keep running, as with dockerd's live-restore), so
    only what the policies decide is compared."""
    loop = "trap 'exit 0' TERM; while :; do sleep 0.1; done"  # ends at once on SIGTERM, as dockerd stops it
    cases = {
        "manual-always": ("always", True),
        "manual-unless": ("unless-stopped", True),
        "manual-failure": ("on-failure", True),
        "up-always": ("always", False),
        "up-unless": ("unless-stopped", False),
    }
    state = "{{.Name}} {{.State.Status}} {{.RestartCount}}"
    expected = ["/manual-always running 0", "/manual-unless exited 0", "/manual-failure running 0"]
    expected += ["/up-always running 0", "/up-unless running 0"]
    for engine in (berth_api, dockerd):

        def settled(engine: Engine = engine) -> list[str]:
            return engine.ok("inspect", "--format", state, *cases).splitlines()

        try:
            for name, (policy, _) in cases.items():
                body = loop.replace("exit 0", "exit 5") if policy == "on-failure" else loop
                engine.ok("run", "-d", *NONE, "--name", name, "--restart", policy, IMAGE_NAME, "sh", "-c", body)
            engine.ok("stop", *(name for name, (_, manual) in cases.items() if manual))
            engine.stop()
            engine.start()
            assert until(lambda: settled() == expected, 60), (engine.name, settled())
            assert not until(lambda: settled() != expected, 3), (engine.name, settled())  # and they stay so
            engine.ok("exec", "manual-always", "kill", "1")  # it ends by itself: no longer stopped by hand
            assert until(lambda: settled()[0].split()[1:] == ["running", "1"], 30), (engine.name, settled())
        finally:
            engine.docker("rm", "-f", *cases)


def test_kill_is_a_stop_by_hand(engine: Engine) -> None:
    """`docker kill` of a container whose policy is `always` leaves it stopped, as `docker stop` does."""
    engine.ok("run", "-d", *NONE, "--name", "killed", "--restart", "always", IMAGE_NAME, "sleep", "600")
    try:
        engine.ok("kill", "killed")
        state = "{{.State.Status}} {{.RestartCount}}"
        assert until(lambda: engine.ok("inspect", "--format", state, "killed").split() == ["exited", "0"])
        assert not until(lambda: engine.ok("inspect", "--format", state, "killed").split() != ["exited", "0"], 3)
    finally:
        engine.docker("rm", "-f", "killed")


def test_network_commands(engine: Engine) -> None:
    """`docker network create/ls/inspect/connect/disconnect/rm` and containers reaching each other by name,
    against both (the private dockerd has no default bridge, but makes user networks)."""
    web = "mkdir -p /www && echo hello web > /www/index.html && exec httpd -f -p 80 -h /www"
    try:
        assert len(engine.ok("network", "create", "--subnet", "10.78.0.0/24", "cmpnet").strip()) == 64
        engine.ok("network", "create", "othernet")
        listed = set(engine.ok("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines())
        assert {"cmpnet bridge local", "othernet bridge local", "host host local", "none null local"} <= listed
        subnet = "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Driver}} {{.Internal}}"
        assert engine.ok("network", "inspect", "--format", subnet, "cmpnet").strip() == "10.78.0.0/24 bridge false"
        taken = engine.docker("network", "create", "cmpnet")
        assert (taken.returncode, taken.stderr) == (
            1,
            "Error response from daemon: network with name cmpnet already exists\n",
        )
        engine.ok("run", "-d", "--network", "cmpnet", "--name", "web", "-p", "18090:80", IMAGE_NAME, "sh", "-c", web)
        assert engine.ok("port", "web").splitlines()[0] == "80/tcp -> 0.0.0.0:18090"
        assert engine.ok("ps", "--format", "{{.Ports}}", "--filter", "name=web").startswith("0.0.0.0:18090->80/tcp")
        assert until(lambda: engine.netns.run("wget", "-qO-", "http://127.0.0.1:18090/").stdout == "hello web\n")
        engine.ok(
            "run", "-d", "--network", "cmpnet", "--name", "anyport", "--expose", "81", "-P", IMAGE_NAME, "sleep", "60"
        )
        assert re.fullmatch(r"81/tcp -> 0\.0\.0\.0:\d+", engine.ok("port", "anyport").splitlines()[0])
        engine.ok("rm", "-f", "anyport")
        engine.ok("run", "-d", "--network", "cmpnet", "--name", "anyport", "--expose", "82", IMAGE_NAME, "sleep", "60")
        assert engine.ok("ps", "--format", "{{.Ports}}", "--filter", "name=anyport").strip() == "82/tcp"
        exposed = engine.ok("inspect", "--format", "{{json .NetworkSettings.Ports}}", "anyport")
        assert json.loads(exposed) == {"82/tcp": None}, exposed
        engine.ok("rm", "-f", "anyport")
        got = engine.docker("run", "--rm", "--network", "cmpnet", IMAGE_NAME, "wget", "-qO-", "http://web/")
        assert (got.returncode, got.stdout) == (0, "hello web\n"), got.stderr
        engine.ok("run", "-d", "--network", "othernet", "--name", "late", IMAGE_NAME, "sleep", "600")
        apart = engine.docker("exec", "late", "wget", "-qO-", "-T", "2", "http://web/")
        assert apart.returncode != 0 and apart.stdout == ""  # not on cmpnet yet: no name, no route
        engine.ok("network", "connect", "cmpnet", "late")
        assert until(lambda: engine.docker("exec", "late", "wget", "-qO-", "http://web/").stdout == "hello web\n")
        members = "{{range .Containers}}{{.Name}} {{end}}"
        assert sorted(engine.ok("network", "inspect", "--format", members, "cmpnet").split()) == ["late", "web"]
        engine.ok("network", "disconnect", "cmpnet", "late")
        assert engine.ok("network", "inspect", "--format", members, "cmpnet").split() == ["web"]
        busy = engine.docker("network", "rm", "cmpnet")
        assert busy.returncode == 1 and "has active endpoints" in busy.stderr
        unknown = engine.docker("run", "--rm", "--network", "no-such-net", IMAGE_NAME, "true")
        assert unknown.returncode == 125 and "network no-such-net not found" in unknown.stderr
        engine.ok("rm", "-f", "web", "late")
        assert engine.ok("network", "rm", "cmpnet", "othernet").split() == ["cmpnet", "othernet"]
        missing = engine.docker("network", "inspect", "cmpnet")
        assert missing.returncode == 1 and "network cmpnet not found" in missing.stderr
    finally:
        engine.docker("rm", "-f", "web", "late", "anyport")
        engine.docker("network", "rm", "cmpnet", "othernet")


def test_connected_networks_stay_across_restart_and_start(engine: Engine) -> None:
    """dockerd keeps every network a container was connected to, with its aliases, across restart and
    stop/start; a disconnect while stopped takes one off for the next start, a connect while stopped adds one."""
    members = "{{range .Containers}}{{.Name}} {{end}}"

    def links() -> list[str]:
        return sorted(n for n in engine.ok("exec", "keeper", "ls", "/sys/class/net").split() if n.startswith("eth"))

    try:
        engine.ok("network", "create", "firstnet")
        engine.ok("network", "create", "keptnet")
        engine.ok("run", "-d", "--network", "firstnet", "--name", "keeper", IMAGE_NAME, "sleep", "600")
        engine.ok("network", "connect", "--alias", "kept-alias", "keptnet", "keeper")
        engine.ok("restart", "-t", "1", "keeper")
        assert links() == ["eth0", "eth1"], engine.name
        assert engine.ok("network", "inspect", "--format", members, "keptnet").split() == ["keeper"]
        aliases = engine.ok("inspect", "--format", "{{json .NetworkSettings.Networks.keptnet.Aliases}}", "keeper")
        assert "kept-alias" in json.loads(aliases), aliases
        engine.ok("stop", "-t", "1", "keeper")
        stopped = json.loads(engine.ok("inspect", "--format", "{{json .NetworkSettings.Networks}}", "keeper"))
        assert sorted(stopped) == ["firstnet", "keptnet"] and stopped["keptnet"]["IPAddress"] == "", stopped
        assert "kept-alias" in stopped["keptnet"]["Aliases"], stopped
        engine.ok("start", "keeper")
        assert links() == ["eth0", "eth1"], engine.name
        engine.ok("stop", "-t", "1", "keeper")
        engine.ok("network", "disconnect", "keptnet", "keeper")
        engine.ok("start", "keeper")
        assert links() == ["eth0"], engine.name
        assert engine.ok("network", "inspect", "--format", members, "keptnet").split() == []
        engine.ok("stop", "-t", "1", "keeper")
        engine.ok("network", "connect", "keptnet", "keeper")
        engine.ok("start", "keeper")
        assert links() == ["eth0", "eth1"], engine.name
        assert engine.ok("network", "inspect", "--format", members, "keptnet").split() == ["keeper"]
    finally:
        engine.docker("rm", "-f", "keeper")
        engine.docker("network", "rm", "firstnet", "keptnet")


def test_a_container_waiting_to_restart_is_restarting(engine: Engine) -> None:
    """Between an exit and its policy's restart (the back-off) the container shows as dockerd shows it:
    restarting in inspect, ps (without -a too) and its status filter; rm refuses it; stop ends it."""
    engine.ok("run", "-d", *NONE, "--name", "bouncing", "--restart", "always", IMAGE_NAME, "sh", "-c", "exit 3")
    try:
        state = "{{.State.Status}} {{.State.Running}} {{.State.Restarting}} {{.State.ExitCode}} {{.State.Pid}}"
        waiting = ["restarting", "true", "true", "3", "0"]
        # after five restarts the back-off is 3.2 s: long enough for the commands below, even on a busy machine
        count = "{{.RestartCount}}"
        assert until(lambda: int(engine.ok("inspect", "--format", count, "bouncing")) >= 5, 60)
        assert until(lambda: engine.ok("inspect", "--format", state, "bouncing").split() == waiting, 60)
        row = engine.ok("ps", "--filter", "status=restarting", "--format", "{{.Names}} {{.State}} {{.Status}}")
        assert row.startswith("bouncing restarting Restarting (3) "), row
        assert "bouncing" in engine.ok("ps", "--format", "{{.Names}}").split()
        # refused while restarting (a restart can come between the last look and this one: then it runs)
        assert until(lambda: "You cannot remove a restarting container" in engine.docker("rm", "bouncing").stderr)
        assert engine.ok("stop", "bouncing").strip() == "bouncing"
        assert until(lambda: engine.ok("inspect", "--format", state, "bouncing").split()[:3] == [
            "exited", "false", "false"
        ])  # fmt: skip
        assert engine.ok("rm", "bouncing").strip() == "bouncing"
    finally:
        engine.docker("rm", "-f", "bouncing")


def test_a_long_run_resets_the_restart_back_off(berth_api: Engine, dockerd: Engine) -> None:
    """As dockerd's: the back-off doubles with each quick exit (0.1 s, 0.2 s, ... 3.2 s after six), and a run
    of ten seconds or more sets it back to 0.1 s rather than going on to 6.4 s. Both engines at once."""
    script = 'n=$(cat /n 2>/dev/null || echo 0); echo $((n+1)) > /n; [ "$n" -eq 6 ] && sleep 10.5; exit 1'
    since = f"{time.time():.6f}"
    engines = (berth_api, dockerd)

    def history(engine: Engine) -> tuple[list[float], list[float]]:
        """The times of the container's starts and of its exits."""
        lines = engine.ok(
            "events", "--since", since, "--until", f"{time.time():.6f}", "--filter", "container=crashy",
            "--filter", "event=start", "--filter", "event=die", "--format", "{{.Action}} {{.TimeNano}}",
        ).split("\n")  # fmt: skip
        events = [(action, int(nanos) / 1e9) for action, nanos in (line.split() for line in lines if line)]
        return [t for a, t in events if a == "start"], [t for a, t in events if a == "die"]

    for engine in engines:
        engine.ok("run", "-d", *NONE, "--name", "crashy", "--restart", "always", IMAGE_NAME, "sh", "-c", script)
    try:
        for engine in engines:
            assert until(lambda e=engine: len(history(e)[0]) >= 8, 90), (engine.name, history(engine))
            starts, dies = history(engine)
            assert dies[6] - starts[6] >= 10  # the long run
            assert starts[7] - dies[6] < 3, (engine.name, starts[7] - dies[6])  # not 6.4 s
            assert starts[6] - dies[5] >= 3.2 - 0.2, (engine.name, starts[6] - dies[5])  # the back-off had grown
    finally:
        for engine in engines:
            engine.docker("rm", "-f", "crashy")
