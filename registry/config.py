"""Settings for every server-side command, from defaults, a TOML file, `BERTH_*` and flags.

Later sources win: defaults < `--config FILE` < environment < command-line flags, so
`serve`, `db` and the admin commands all act on the same registry.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/berth/registry")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "berth" / "registry"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    listen: str = "127.0.0.1:5000"
    workers: int = 0
    database_url: str = ""
    storage: str = ""
    s3_endpoint: str = ""
    s3_redirect: bool = False
    auth_service: str = "berth"
    trust_proxy: str = ""  # proxies whose forwarded headers are believed: addresses and networks, comma-separated
    refresh_tokens: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_self_signed: str = ""
    gc_interval: str = "1h"
    gc_grace: str = "24h"
    gc_untagged: bool = False
    webhook_urls: str = ""
    webhook_secret: str = ""
    default_upstream: str = ""
    log_level: str = "info"
    max_connections: int = 1024
    client_timeout: str = "60s"
    ui: bool = True

    @property
    def host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'registry.db'}"

    @property
    def effective_storage(self) -> str:
        return self.storage or f"file://{self.data_dir / 'blobs'}"

    @property
    def effective_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def upload_session_lifetime(self) -> timedelta:
        """How long an upload id stays valid: the collection grace, but never under an hour,
        so a short grace cannot expire a session between its POST and its PUT."""
        return max(parse_duration(self.gc_grace), MIN_UPLOAD_SESSION)

    def to_json(self) -> str:
        values = asdict(self)
        values["data_dir"] = str(self.data_dir)
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        values = json.loads(text)
        values["data_dir"] = Path(values["data_dir"])
        return cls(**values)


MIN_UPLOAD_SESSION = timedelta(hours=1)
KEYS = {f.name for f in fields(Settings)}
BOOLEANS = {"s3_redirect", "gc_untagged", "ui", "refresh_tokens"}
DURATION = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `30d`, `2w`, or `0` for none."""
    if text.strip() == "0":
        return timedelta(0)
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 30m or 90s")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
POWERS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(text: str) -> int:
    """`50GiB`, `500MB`, `1073741824`: binary units with `i`, decimal without."""
    match = SIZE.fullmatch(text) if len(text) <= 64 else None
    if not match:
        raise ValueError(f"{text[:64]!r} is not a size like 50GiB or 500MB")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    if "I" in unit:
        return int(number * 1024 ** ("BKMGT".index(unit[0])))
    return int(number * POWERS[unit[:1]])


def _coerce(name: str, value: Any) -> Any:
    if name == "data_dir":
        return Path(value).expanduser()
    if name in ("workers", "max_connections"):
        return int(value)
    if name == "trust_proxy":
        from registry.auth.proxies import parse_trusted

        return parse_trusted(str(value).lower() if isinstance(value, bool) else str(value))
    if name in BOOLEANS:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    return str(value)


def load_settings(config_file: str | os.PathLike[str] | None = None, **flags: Any) -> Settings:
    """Merge defaults, the TOML file, `BERTH_<KEY>` variables and explicit flags (None = not given)."""
    values: dict[str, Any] = {"data_dir": default_data_dir()}
    config_file = config_file or os.environ.get("BERTH_CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            document = tomllib.load(fh)
        unknown = set(document) - KEYS
        if unknown:
            raise ValueError(f"{config_file}: unknown settings {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v) for k, v in document.items()})
    for key in KEYS:
        env = os.environ.get(f"BERTH_{key.upper()}")
        if env is not None:
            values[key] = _coerce(key, env)
    values.update({k: _coerce(k, v) for k, v in flags.items() if v is not None})
    return Settings(**values)
