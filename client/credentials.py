"""Registry credentials where docker and podman keep them, so one `docker login` serves berth too.

Lookup order, as docker's: `credHelpers[host]`, then `credsStore`, then `auths` in
`$DOCKER_CONFIG/config.json` (default `~/.docker`); then podman's `auth.json`
(`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
`~/.config/containers/auth.json`). Helpers are `docker-credential-NAME get|store|erase`
speaking JSON on stdin/stdout.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from client.errors import AuthError, UsageError
from client.files import atomic_write

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class Credentials(NamedTuple):
    """A registry login as docker's credential stores keep it."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    """An OAuth2 refresh token: docker stores it instead of a password for some registries."""


def config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _podman_paths() -> list[Path]:
    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        paths.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    paths.append(Path.home() / ".config" / "containers" / "auth.json")
    return paths


def server_key(registry: str) -> str:
    """The key docker files a registry under: Docker Hub keeps its historic URL."""
    return DOCKER_HUB_KEY if registry in _HUB_NAMES else registry


def _normalize(key: str) -> str:
    """`https://host/v1/` and `host` name the same registry in an `auths` map."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in _HUB_NAMES else host


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _from_auths(auths: Any, registry: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    wanted = _normalize(registry)
    for key, entry in auths.items():
        if _normalize(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(identity_token=entry["identitytoken"])
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    return None


def _helper(name: str, action: str, payload: str) -> str | None:
    """Run `docker-credential-NAME ACTION`; None when the helper has nothing for that registry."""
    import subprocess  # only here: most registries need no helper, and every pull imports this module

    try:
        done = subprocess.run(
            [f"docker-credential-{name}", action], input=payload, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise AuthError(f"credential helper docker-credential-{name} is not installed") from None
    if done.returncode != 0:
        message = (done.stdout or done.stderr).strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthError(f"docker-credential-{name} {action} failed: {message}")
    return done.stdout


def _helper_get(name: str, registry: str) -> Credentials | None:
    out = _helper(name, "get", server_key(registry))
    if not out or not out.strip():
        return None
    data = json.loads(out)
    if data.get("Username") == "<token>":
        return Credentials(identity_token=data.get("Secret"))
    return Credentials(data.get("Username"), data.get("Secret"))


def _helper_name(config: dict[str, Any], registry: str) -> str | None:
    helpers = config.get("credHelpers") or {}
    for key, name in helpers.items():
        if _normalize(key) == _normalize(registry):
            return str(name)
    store = config.get("credsStore")
    return str(store) if store else None


def load_credentials(registry: str) -> Credentials | None:
    config = _read_json(config_path())
    helper = _helper_name(config, registry)
    if helper:
        found = _helper_get(helper, registry)
        if found:
            return found
    found = _from_auths(config.get("auths"), registry)
    if found:
        return found
    for path in _podman_paths():
        found = _from_auths(_read_json(path).get("auths"), registry)
        if found:
            return found
    return None


def store_credentials(registry: str, credentials: Credentials) -> str:
    """Save as docker does (helper if configured, else base64 in `auths`, file mode 0600); return where."""
    path = config_path()
    config = _read_json(path)
    helper = _helper_name(config, registry)
    if helper:
        secret = credentials.identity_token or credentials.password or ""
        username = "<token>" if credentials.identity_token else credentials.username
        payload = json.dumps({"ServerURL": server_key(registry), "Username": username, "Secret": secret})
        _helper(helper, "store", payload)
        auths = config.setdefault("auths", {})
        auths.setdefault(server_key(registry), {})
        where = f"docker-credential-{helper}"
    else:
        entry: dict[str, str] = {}
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
        else:
            pair = f"{credentials.username}:{credentials.password}".encode()
            entry["auth"] = base64.b64encode(pair).decode()
        auths = {k: v for k, v in (config.get("auths") or {}).items() if _normalize(k) != _normalize(registry)}
        auths[server_key(registry)] = entry
        config["auths"] = auths
        where = str(path)
    atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
    return where


def erase_credentials(registry: str) -> bool:
    """Forget a registry's credentials; False when there were none."""
    path = config_path()
    config = _read_json(path)
    helper = _helper_name(config, registry)
    found = False
    if helper:
        found = _helper(helper, "erase", server_key(registry)) is not None
    auths = config.get("auths") or {}
    kept = {k: v for k, v in auths.items() if _normalize(k) != _normalize(registry)}
    if len(kept) != len(auths):
        found = True
        config["auths"] = kept
        atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
    return found
