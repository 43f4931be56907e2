"""tests/bench/bench_upstream.py's `--link-mbit`: a rate tc is given only if it is a sane whole number."""

from __future__ import annotations

import pytest

from tests.bench.bench_upstream import MAX_LINK_MBIT, arguments


@pytest.mark.parametrize(
    "value", ["0", "-1", str(MAX_LINK_MBIT + 1), "1e3", "1.5", "abc", "", "1000mbit", "nan", "9" * 5000, "10;reboot"]
)
def test_link_mbit_refuses_what_is_not_a_sane_rate(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        arguments(["--link-mbit", value])
    assert exited.value.code == 2
    assert "--link-mbit" in capsys.readouterr().err


def test_link_mbit_takes_a_rate_and_is_off_by_default() -> None:
    assert arguments(["--link-mbit", "1000"]).link_mbit == 1000
    assert arguments([]).link_mbit is None
