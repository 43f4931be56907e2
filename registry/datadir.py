"""Keeping the registry's files private to the user it runs as.

The SQLite database holds the ES256 token-signing key, the upload-id secret and the password
hashes: anyone who can read it can forge a push token. So the data directory, the blob store,
the database (and its `-wal`/`-shm`/lock files), the TLS keys and the metrics folder are made
private (0700 directories, 0600 files), and everything written later is private too (umask
077). PostgreSQL and S3 keep nothing on this machine's disk and are left alone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from registry.config import Settings

PRIVATE_UMASK = 0o077
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal", ".write-lock", ".migrate-lock")


class ExposedSecrets(RuntimeError):
    """The database with the signing key is readable by other users and could not be made private."""


@dataclass
class Tightening:
    """What `make_private` changed (one line each, for the log) and what it could not change."""

    changed: list[str] = field(default_factory=list)
    failed: list[tuple[Path, int, OSError]] = field(default_factory=list)


def sqlite_files(database_url: str) -> list[Path]:
    """The files of a SQLite database (the database and the files SQLite and we keep beside it)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return []
    path = Path(url.database)
    return [path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS]


def storage_root(storage_url: str) -> Path | None:
    parsed = urlparse(storage_url)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path or storage_url)
    return None


def make_private(settings: Settings) -> Tightening:
    """Create the registry's directories private, and tighten existing ones and the database files.

    Sets the process umask, so every file the registry (and its worker processes) creates from
    now on is private as well. Directories are not walked: a private directory keeps others out
    of everything below it.
    """
    os.umask(PRIVATE_UMASK)
    result = Tightening()
    directories = [settings.data_dir]
    root = storage_root(settings.effective_storage)
    if root is not None:
        directories.append(root)
    for directory in directories:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
        _tighten(directory, result)
    make_database_private(settings.effective_database_url, result)
    return result


def make_database_private(database_url: str, result: Tightening) -> None:
    """The SQLite database's files only (what the admin commands touch); sets the umask too."""
    os.umask(PRIVATE_UMASK)
    files = sqlite_files(database_url)
    if files:
        files[0].parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in files:
        if path.exists():
            _tighten(path, result)


def check_secrets_private(settings: Settings, result: Tightening) -> None:
    """Raise ExposedSecrets if a database file holding the signing key is still readable by others."""
    for path in sqlite_files(settings.effective_database_url):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            reason = next((str(error) for failed, _, error in result.failed if failed == path), "")
            raise ExposedSecrets(
                f"{path} holds the token-signing key and password hashes but is open to other users "
                f"(mode {stat.S_IMODE(mode):04o}) and could not be made private"
                + (f" ({reason})" if reason else "")
                + f"; run `chmod 600 {path}` as its owner, or move the database"
            )


def _tighten(path: Path, result: Tightening) -> None:
    """Take the group's and others' bits away (a directory becomes 0700, a file 0600)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    private = mode & ~0o077
    try:
        path.chmod(private)
    except OSError as error:
        result.failed.append((path, mode, error))
        return
    result.changed.append(f"{path}: {mode:04o} -> {private:04o} (it was open to other users)")
