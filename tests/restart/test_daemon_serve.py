"""daemon.serve: the one place the plain daemon and a restartable child run a session.

Its three outcomes decide the exit status of both (run_daemon: 0 or 1 with
"session failed; see the log"; run_child: EXIT_UNMOUNTED or 1, which makes the
supervisor start another child).
"""

from __future__ import annotations

import logging

import pytest

from mount.server.daemon import serve


class FakeSession:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc
        self.ran = False

    async def serve(self) -> None:
        self.ran = True
        if self.exc is not None:
            raise self.exc


def test_a_session_that_ends_is_a_success() -> None:
    s = FakeSession(None)
    assert serve(s) is True  # type: ignore[arg-type]
    assert s.ran


def test_sigint_in_the_foreground_is_an_ordinary_end() -> None:
    assert serve(FakeSession(KeyboardInterrupt())) is True  # type: ignore[arg-type]


def test_a_failing_session_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="shmfs"):
        assert serve(FakeSession(RuntimeError("boom"))) is False  # type: ignore[arg-type]
    rec = [r for r in caplog.records if r.getMessage() == "session failed"]
    assert rec and rec[0].exc_info is not None and "boom" in str(rec[0].exc_info[1])
