"""Times as docker takes them: unix seconds with an optional fraction (what the API gets), and what the
CLI accepts for `--since`/`--until` and turns into those (`10m`, RFC 3339, unix seconds)."""

from __future__ import annotations

import datetime
import re
import time

_DURATION = re.compile(r"^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_UNIX = re.compile(r"^(-?\d{1,18})(?:\.(\d{1,18}))?$")


class BadTime(ValueError):
    pass


def cli_time(text: str, now_ns: int | None = None) -> int:
    """A time as docker's CLI takes it for `--since`/`--until`, in unix nanoseconds: a duration back
    from now (`10m`, `1h30m`), an RFC 3339 date or time (local time without a zone), or unix seconds."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    found = _DURATION.match(text)
    if found and text != "0":
        nanos = sum(int(float(number) * _UNITS[unit]) for number, unit in _PART.findall(text))
        return now_ns - (-nanos if found.group(1) == "-" else nanos)
    if "-" in text[1:] or "T" in text:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise BadTime(f"cannot parse {text[:60]!r} as an RFC 3339 time") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time, as docker's CLI reads a time without a zone
        return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    try:
        return unix_ns(text)
    except BadTime:
        raise BadTime(f"failed to parse value as time or duration: {text[:60]!r}") from None


def unix_ns(text: str) -> int:
    """Unix seconds with an optional fraction (`1700000000.5`), as dockerd's API takes them, in nanoseconds;
    fraction digits past the ninth are dropped, as dockerd does."""
    found = _UNIX.match(text)
    if found is None:
        raise BadTime(f"{text[:60]!r} is not a unix timestamp (seconds[.fraction])")
    seconds, fraction = found.groups()
    nanos = int((fraction or "0").ljust(9, "0")[:9])
    return int(seconds) * 10**9 + (-nanos if seconds.startswith("-") else nanos)


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, which docker's STATUS and CREATED columns use."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
