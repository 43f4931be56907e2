from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from registry.config import load_settings


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "berth.toml"
    config.write_text('listen = "127.0.0.1:6000"\nworkers = 3\ndata_dir = "/srv/berth"\n')
    settings = load_settings(config)
    assert (settings.listen, settings.workers, settings.data_dir) == ("127.0.0.1:6000", 3, Path("/srv/berth"))
    monkeypatch.setenv("BERTH_WORKERS", "5")
    monkeypatch.setenv("BERTH_DATA_DIR", str(tmp_path))
    settings = load_settings(config)
    assert settings.workers == 5 and settings.data_dir == tmp_path
    settings = load_settings(config, workers=7, listen=None)
    assert settings.workers == 7 and settings.listen == "127.0.0.1:6000"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'registry.db'}"
    assert (settings.host, settings.port) == ("127.0.0.1", 6000)


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "berth.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="colour"):
        load_settings(config)


def test_upload_sessions_live_as_long_as_the_grace_but_at_least_an_hour() -> None:
    assert load_settings(None, gc_grace="48h").upload_session_lifetime == timedelta(hours=48)
    assert load_settings(None, gc_grace="0").upload_session_lifetime == timedelta(hours=1)
    assert load_settings(None, gc_grace="5m").upload_session_lifetime == timedelta(hours=1)
