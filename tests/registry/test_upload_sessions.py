"""Upload ids are signed for one repository and expire: a forged, moved or old id is unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry.service.uploads import SessionIds
from tests.registry.conftest import ManualClock


def test_issued_id_is_valid_only_for_its_repository() -> None:
    ids = SessionIds(b"secret", timedelta(hours=1))
    upload_id = ids.issue("team/app")
    started = ids.started("team/app", upload_id)
    assert started is not None and abs((datetime.now(UTC) - started).total_seconds()) < 5
    assert ids.started("team/other", upload_id) is None
    assert SessionIds(b"another secret", timedelta(hours=1)).started("team/app", upload_id) is None


def test_tampered_and_malformed_ids_are_refused() -> None:
    ids = SessionIds(b"secret", timedelta(hours=1))
    upload_id = ids.issue("app")
    body, _, mac = upload_id.rpartition(".")
    uuid_part, _, started = body.rpartition(".")
    later = f"{int(started, 16) + 1:x}"
    for forged in (
        f"{uuid_part}.{later}.{mac}",
        f"{uuid_part[::-1]}.{started}.{mac}",
        upload_id + "0",
        "",
        "...",
        "not-an-id",
        f"{uuid_part}.zz.{mac}",
        "\u00e9" + upload_id,
    ):
        assert ids.started("app", forged) is None, forged


def test_ids_expire_after_their_lifetime() -> None:
    clock = ManualClock()
    ids = SessionIds(b"secret", timedelta(hours=1), clock)
    upload_id = ids.issue("app")
    clock.advance(timedelta(minutes=58))
    assert ids.started("app", upload_id) is not None
    clock.advance(timedelta(minutes=3))
    assert ids.started("app", upload_id) is None
