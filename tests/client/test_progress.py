"""Progress output: rich bars on a terminal, one line per blob otherwise, nothing when quiet."""

from __future__ import annotations

import io

from client.progress import PlainReporter, QuietReporter, RichReporter, human_size, make_reporter
from registry.oci.manifest import Descriptor

BLOB = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "ab" * 32, 2_500_000)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_kind_follows_the_stream() -> None:
    assert isinstance(make_reporter(True, Terminal()), QuietReporter)
    assert isinstance(make_reporter(False, io.StringIO()), PlainReporter)
    reporter = make_reporter(False, Terminal())
    assert isinstance(reporter, RichReporter)
    reporter.close()


def test_rich_bars_show_each_blob() -> None:
    out = Terminal()
    reporter = RichReporter(out)
    advance = reporter.start(BLOB)
    advance(1_000_000)
    advance(1_500_000)
    reporter.finish(BLOB, "pushed")
    reporter.close()
    text = out.getvalue()
    assert "abababababab pushed" in text and "2.5" in text


def test_plain_lines() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.start(BLOB)(100)
    reporter.finish(BLOB, "exists")
    assert out.getvalue() == "abababababab: exists (2.5 MB)\n"
    assert human_size(999) == "999 B" and human_size(1_234_567_890) == "1.2 GB"
