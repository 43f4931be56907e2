"""The log format (`runtime/output.py` writes, `service/logs.py` reads): round trips of any bytes,
partial lines, tail, since/until, hostile lines; and docker's CLI time forms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.runtime.output import Capture, encode
from engine.service.logs import Reader, Record, parse, seek_tail
from engine.service.times import BadTime, cli_time, unix_ns

T = 1_700_000_000_123_456_789


def test_pieces_round_trip_exactly() -> None:
    pieces = [(1, b"one\ntwo\n"), (2, b"\xff\xfe not utf-8\n"), (1, b"no newline"), (1, b" continued\n"), (2, b"\n")]
    log = b"".join(encode(stream, data, T + n) for n, (stream, data) in enumerate(pieces))
    records = parse(log)
    assert b"".join(r.data for r in records if r.stream == 1) == b"one\ntwo\nno newline continued\n"
    assert b"".join(r.data for r in records if r.stream == 2) == b"\xff\xfe not utf-8\n\n"
    assert [r.time_ns for r in records] == [T, T, T + 1, T + 2, T + 3, T + 4]
    assert records[0].timestamp() == b"2023-11-14T22:13:20.123456789Z "


def test_hostile_lines_are_skipped() -> None:
    good = encode(1, b"kept\n", T)
    junk = b"\n".join([b"", b"x" * 30, b"1700000000123456789 q payload", b"17000000001234567x9 o payload", b"short"])
    assert parse(junk + b"\n" + good) == [Record(T, 1, b"kept\n")]


def test_tail_counts_records_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b"".join(encode(1, b"%d\n" % n, T + n) for n in range(5000)) + encode(2, b"last", T + 9999))
    fd = os.open(path, os.O_RDONLY)
    try:
        for count, first in ((1, b"last"), (3, b"4998\n"), (5001, b"0\n"), (10**6, b"0\n")):
            seek_tail(fd, count)
            records = Reader(fd, {1, 2}).read()
            assert records[0].data == first and len(records) == min(count, 5001)
        seek_tail(fd, 0)
        assert Reader(fd, {1, 2}).read() == []
    finally:
        os.close(fd)


def test_reader_filters_streams_and_times_and_waits_for_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(encode(1, b"a\n", T) + encode(2, b"b\n", T + 10) + encode(1, b"c\n", T + 20))
    with open(path, "ab") as f:
        f.write(encode(1, b"d\n", T + 30)[:10])
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = Reader(fd, {1}, since_ns=T + 5, until_ns=T + 25)
        assert [r.data for r in reader.read()] == [b"c\n"] and not reader.past_until
        with open(path, "ab") as f:
            f.write(encode(1, b"d\n", T + 30)[10:])
        assert reader.read() == [] and reader.past_until
    finally:
        os.close(fd)


def test_capture_keeps_streams_apart_and_finishes_the_log(tmp_path: Path) -> None:
    log = os.open(tmp_path / "container.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    capture = Capture.start(log)
    os.close(log)
    os.write(capture.stdout, b"out\n")
    os.write(capture.stderr, b"err")
    capture.finish()  # returns once the copier has written everything and exited
    records = parse((tmp_path / "container.log").read_bytes())
    assert sorted((r.stream, r.data) for r in records) == [(1, b"out\n"), (2, b"err")]


def test_cli_times() -> None:
    now = 1_700_000_000 * 10**9
    assert cli_time("10m", now) == now - 600 * 10**9
    assert cli_time("1h30m", now) == now - 5400 * 10**9
    assert cli_time("1.5", now) == 1_500_000_000
    assert cli_time("2020-01-01T00:00:00Z", now) == 1_577_836_800 * 10**9
    assert cli_time("2020-01-01T00:00:00.25+01:00", now) == 1_577_833_200 * 10**9 + 250_000_000
    for bad in ("garbage", "1e5", "2020-13-01", "10x", "", "1.2.3", "9" * 40, "T"):
        with pytest.raises(BadTime):
            cli_time(bad, now)
    assert unix_ns("12.0000000019") == 12 * 10**9 + 1  # dockerd drops digits past the ninth
    for bad in ("10m", " 1", "1.", ".5", "+1", "1_0"):
        with pytest.raises(BadTime):
            unix_ns(bad)
