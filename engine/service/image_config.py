"""The image config a build writes: metadata instructions applied to docker's `config` object.

Pure: each function takes the instruction's expanded arguments and changes the config dict,
with docker's rules (ENTRYPOINT resets an inherited CMD, EXPOSE defaults to tcp, HEALTHCHECK
durations in nanoseconds, ONBUILD stored as written).
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = frozenset(
    {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy"}
    | {"ALL_PROXY", "all_proxy"}
)
"""Docker's predefined ARGs: usable without an ARG line, and never written to history or the cache key."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class ConfigError(ValueError):
    """An instruction's arguments cannot describe the config (a bad port, duration, or signal)."""


def env_dict(env: list[str]) -> dict[str, str]:
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def set_env(config: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    env = env_dict(config.get("Env") or [])
    for key, value in pairs:
        if not key:
            raise ConfigError("ENV names must not be empty")
        env[key] = value
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def set_labels(config: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(pairs)
    config["Labels"] = labels


def expose(config: dict[str, Any], ports: list[str]) -> None:
    exposed = dict(config.get("ExposedPorts") or {})
    for port in ports:
        number, _, proto = port.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = number.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or proto not in ("tcp", "udp", "sctp"):
            raise ConfigError(f"invalid port {port!r}")
        for value in range(int(low), int(high or low) + 1):
            if not 0 < value < 65536:
                raise ConfigError(f"invalid port {port!r}")
            exposed[f"{value}/{proto}"] = {}
    config["ExposedPorts"] = exposed


def add_volumes(config: dict[str, Any], paths: list[str]) -> None:
    volumes = dict(config.get("Volumes") or {})
    for path in paths:
        if not path:
            raise ConfigError("VOLUME paths must not be empty")
        volumes[path] = {}
    config["Volumes"] = volumes


def command(args: str, exec_form: list[str] | None, shell: list[str]) -> list[str]:
    """CMD, ENTRYPOINT and RUN: the JSON array as written, or the shell form through SHELL."""
    return list(exec_form) if exec_form is not None else [*shell, args]


def duration(text: str) -> int:
    """A Go duration (`30s`, `1m30s`) in nanoseconds."""
    if not text or _DURATION.sub("", text):
        raise ConfigError(f"invalid duration {text!r}")
    return sum(int(float(n) * _UNITS[unit]) for n, unit in _DURATION.findall(text))


def healthcheck(args: str, exec_form: list[str] | None, flags: dict[str, str], shell: list[str]) -> dict[str, Any]:
    word, _, rest = args.partition(" ")
    if word.upper() == "NONE":
        if rest.strip() or flags:
            raise ConfigError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if word.upper() != "CMD":
        raise ConfigError("HEALTHCHECK must be NONE or CMD ...")
    rest = rest.strip()
    from engine.service.dockerfile import _json_array

    as_json = _json_array(rest)
    test = ["CMD", *as_json] if as_json is not None else ["CMD-SHELL", rest]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        if flag in flags:
            check[key] = duration(flags[flag])
    if "retries" in flags:
        if not flags["retries"].isdigit():
            raise ConfigError(f"invalid --retries {flags['retries']!r}")
        check["Retries"] = int(flags["retries"])
    return check


def history(created: str, created_by: str, empty: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"created_by": created_by, "comment": "buildkit.dockerfile.v0"}
    if created:
        entry["created"] = created
    if empty:
        entry["empty_layer"] = True
    return entry


def clean(config: dict[str, Any]) -> dict[str, Any]:
    """The config as written: empty values dropped, as docker omits them."""
    return {k: v for k, v in config.items() if v not in (None, [], {}, "")}
