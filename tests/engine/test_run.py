"""`berth run` in the foreground: isolation, image config, exit codes and signals, with real namespaces."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.engine.conftest import Berth
from tests.engine.images import IMAGE
from tests.engine.netns import session_netns

pytestmark = pytest.mark.root


def sh(berth: Berth, script: str, *options: str) -> tuple[int, str, str]:
    result = berth("run", "--rm", *options, IMAGE, "sh", "-c", script)
    return result.returncode, result.stdout, result.stderr


def test_pid1_is_the_command_and_host_processes_are_invisible(berth: Berth) -> None:
    code, out, err = sh(berth, "echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0, err
    pid, count, cmdline = out.splitlines()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls and grep at most: none of the host's processes
    assert cmdline.startswith("sh -c")
    assert str(os.getpid()) not in out


def test_hostname_and_etc_files(berth: Berth) -> None:
    code, out, err = sh(berth, "hostname; cat /etc/hostname; grep -c localhost /etc/hosts", "--hostname", "boat")
    assert code == 0, err
    assert out.split() == ["boat", "boat", "2"]


def test_default_hostname_is_the_short_id(berth: Berth) -> None:
    result = berth("run", "-d", IMAGE, "hostname")
    container_id = result.stdout.strip()
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    while berth("logs", container_id).stdout == "" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert berth("logs", container_id).stdout.strip() == container_id[:12]
    assert berth("rm", "-f", container_id).returncode == 0


def test_network_none_has_only_lo_up(berth: Berth) -> None:
    code, out, err = sh(berth, "ls /sys/class/net; ip -o link", "--network", "none")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "lo" and len([ln for ln in lines if ": " in ln]) == 1
    assert "UP" in lines[-1] or "LOWER_UP" in lines[-1]


def test_network_host_sees_host_interfaces(berth: Berth) -> None:
    code, out, _ = sh(berth, "ls /sys/class/net; hostname", "--network", "host")
    assert code == 0
    *interfaces, hostname = out.split()
    # berth runs in the tests' network namespace: its links, as /proc/net/dev there lists them
    listed = session_netns().run("cat", "/proc/net/dev").stdout.splitlines()[2:]
    assert sorted(interfaces) == sorted(line.split(":")[0].strip() for line in listed)
    assert hostname == os.uname().nodename


def test_layers_whiteouts_and_image_config(berth: Berth) -> None:
    code, out, err = sh(berth, "pwd; echo $FROM_IMAGE; cat /data/hello; ls /etc; ls /opaque")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "/data"
    assert lines[1] == "yes"
    assert lines[2] == "hello from layer three"
    assert "deleteme" not in lines and "keep" in lines and "added" in lines
    assert lines[-1] == "new"  # the opaque directory hides the base layer's "old"


def test_the_callers_umask_does_not_reach_the_container(berth: Berth) -> None:
    """Under a private umask (077) the working directory berth creates must still be enterable
    by the container's user, as under docker (dockerd sets 022 itself)."""
    result = berth("run", "--rm", "-w", "/tmp/umask-work", "-u", "app", IMAGE, "pwd", umask=0o077)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/tmp/umask-work\n"


def test_env_workdir_user_and_entrypoint(berth: Berth, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\nFROM_IMAGE=file\n")
    code, out, err = sh(
        berth,
        "echo $FROM_IMAGE $FROM_FILE $EXTRA; pwd; id -u; id -G; echo $HOME",
        "--env-file",
        str(env_file),
        "-e",
        "EXTRA=x",
        "-w",
        "/tmp/work",
        "-u",
        "app",
    )
    assert code == 0, err
    assert out.splitlines() == ["file 1 x", "/tmp/work", "1000", "1000 2000", "/home/app"]
    result = berth("run", "--rm", "--entrypoint", "echo", IMAGE, "via", "entrypoint")
    assert result.stdout == "via entrypoint\n"
    result = berth("run", "--rm", "-u", "4242:4343", IMAGE, "id")
    assert result.stdout.strip().startswith("uid=4242 gid=4343")


def test_exit_codes_and_command_errors(berth: Berth) -> None:
    assert sh(berth, "exit 42")[0] == 42
    assert sh(berth, "kill -9 $$", "--init")[0] == 137  # PID 1 itself would ignore its own SIGKILL
    missing = berth("run", "--rm", IMAGE, "no-such-command")
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr
    not_executable = berth("run", "--rm", IMAGE, "/etc/passwd")
    assert not_executable.returncode == 126
    bad_user = berth("run", "--rm", "-u", "ghost", IMAGE, "true")
    assert bad_user.returncode == 125 and "ghost" in bad_user.stderr


def test_signals_reach_pid1(berth: Berth) -> None:
    process = berth.popen(
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 42
    assert "got TERM" in out


def test_init_reaps_and_forwards(berth: Berth) -> None:
    # The subshell's sleep is orphaned: only an init that reaps keeps it from staying a zombie.
    script = (
        "(sleep 0.1 &); sleep 0.6; echo zombies $(ps -o stat | grep -c Z); cat /proc/1/cmdline | tr '\\0' ' '; exit 3"
    )
    code, out, err = sh(berth, script, "--init")
    assert code == 3, err
    assert "zombies 0" in out
    assert "python" in out.splitlines()[-1].split()[0]


def host_readable(kind: str, major: int, minor: int, where: Path) -> bool:
    """Whether berth's own host side can read such a node: the control that makes a refusal mean something."""
    node = where / f"{kind}-{major}-{minor}"
    os.mknod(node, (stat.S_IFBLK if kind == "b" else stat.S_IFCHR) | 0o600, os.makedev(major, minor))
    try:
        with open(node, "rb", buffering=0) as f:
            f.read(1)
        return True
    except OSError:
        return False
    finally:
        node.unlink()


def test_device_nodes_made_inside_cannot_be_opened(berth: Berth, tmp_path: Path) -> None:
    root_dev = os.stat("/").st_dev
    devices = [("b", os.major(root_dev), os.minor(root_dev)), ("b", 7, 0), ("c", 1, 11)]  # disk, loop0, kmsg
    script = "; ".join(
        f"mknod /tmp/{kind}{major}x{minor} {kind} {major} {minor} && echo MADE; "
        f"head -c 1 /tmp/{kind}{major}x{minor} > /dev/null && echo READ {kind} {major}:{minor}"
        for kind, major, minor in devices
    )
    code, out, err = sh(berth, script + "; head -c 1 /dev/urandom > /dev/null && echo URANDOM")
    assert "READ" not in out, out
    assert out.count("MADE") == len(devices)  # CAP_MKNOD is docker's default; opening is what the cgroup stops
    assert "URANDOM" in out
    if not any(host_readable(*device, tmp_path) for device in devices):
        pytest.skip("no control: this host cannot read any of these devices itself")


def test_privileges_are_dropped(berth: Berth) -> None:
    script = (
        "mount -t tmpfs none /tmp && echo MOUNTED; "
        "echo c > /proc/sysrq-trigger && echo SYSRQ; "
        "echo 1 > /proc/sys/kernel/panic_on_oops && echo SYSCTL; "
        "echo KCORE $(head -c 1 /proc/kcore | wc -c); "
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    )
    code, out, _ = sh(berth, script)
    assert "MOUNTED" not in out
    assert "SYSRQ" not in out
    assert "SYSCTL" not in out
    assert "KCORE 0" in out
    status = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0xA80425FB  # docker's default set
    assert sh(berth, "id", "-u", "app")[1].startswith("uid=1000")
    assert "CapEff:\t0000000000000000" in sh(berth, "grep CapEff /proc/self/status", "-u", "app")[1]


def test_read_only_rootfs_and_volumes(berth: Berth, tmp_path: Path) -> None:
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "given").write_text("from host\n")
    code, out, err = sh(
        berth,
        "touch /rootfile 2>/dev/null && echo ROOT_WRITABLE; cat /ro/given; touch /ro/x 2>/dev/null && echo RO_WRITABLE;"
        " echo hi > /rw/out; echo > /dev/shm/ok && echo SHM_OK",
        "--read-only",
        "-v",
        f"{tmp_path / 'rw'}:/rw",
        "-v",
        f"{tmp_path / 'ro'}:/ro:ro",
    )
    assert code == 0, err
    assert out.splitlines() == ["from host", "SHM_OK"]
    assert (tmp_path / "rw" / "out").read_text() == "hi\n"


def test_writes_stay_in_the_container(berth: Berth, berth_root: Path) -> None:
    assert sh(berth, "echo scribble > /etc/keep; rm /etc/passwd")[0] == 0
    code, out, _ = sh(berth, "cat /etc/keep; ls /etc/passwd")
    assert out.splitlines() == ["kept", "/etc/passwd"]


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from engine.commands import run

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(run, ["--rm", IMAGE, "true"])
    assert result.exit_code == 125
    assert "needs root" in result.output and "sudo" in result.output


def test_missing_image_and_other_platform(berth: Berth, berth_root: Path) -> None:
    from tests.engine.images import TarBuilder, write_image

    write_image(
        berth_root,
        "127.0.0.1:5000/test/arm:latest",
        [(TarBuilder().file("x").bytes(), "none")],
        {"Cmd": ["true"]},
        architecture="arm64",
    )
    result = berth("run", "--rm", "127.0.0.1:5000/test/arm", "true")
    assert result.returncode == 125
    assert "linux/arm64" in result.stderr and "amd64" in result.stderr
    result = berth("run", "--rm", "-q", "127.0.0.1:9/test/absent", "true")
    assert result.returncode == 125
    assert "absent" in result.stderr


def test_stdin_only_with_interactive(berth: Berth) -> None:
    assert berth("run", "--rm", IMAGE, "cat", input="typed\n").stdout == ""
    assert berth("run", "--rm", "-i", IMAGE, "cat", input="typed\n").stdout == "typed\n"
    no_tty = berth("run", "--rm", "-t", IMAGE, "true", input="")
    assert no_tty.returncode == 125 and "not a TTY" in no_tty.stderr
