"""The command line's progress lines: what a command is waiting for, and how many attempts it made."""

from __future__ import annotations

import time
from typing import IO, Callable, Optional, Tuple

from ._cli_reporters import PROG as _PROG
from ._helpers import redact_url

__all__ = ("RetryProgress", "gave_up_suffix", "isatty")


class RetryProgress:
    """Says on stderr what the command is waiting for: one line per retry.

    Give :meth:`on_retry` and :meth:`sleep` to the :class:`~oauth_gateway.TokenManager`;
    the manager calls ``on_retry`` before a retry and then ``sleep`` with its wait, and
    the line is printed then::

        oauth-gateway: HTTP 503 from https://idp.example.com/token; retrying in 4 s (attempt 2 of 4)

    Args:
        err: where the lines go.
        enabled: print them (a terminal, or ``-v``); the attempts are counted either way.
        sleep: the wait itself.
    """

    def __init__(self, err: IO[str], enabled: bool, sleep: Callable[[float], None] = time.sleep):
        self.url = ""
        self.attempts = 1
        self._err = err
        self._enabled = enabled
        self._sleep = sleep
        self._pending: Optional[Tuple[int, int, str]] = None

    def on_retry(self, server_name: str, attempt: int, total: int, reason: str) -> None:
        """Note the retry about to be made (its line is printed with its wait)."""
        self.flush()
        self.attempts = attempt
        self._pending = (attempt, total, reason)

    def sleep(self, seconds: float) -> None:
        """Print the pending retry's line with its wait, then wait."""
        self._say("retrying in %g s" % round(seconds, 2))
        self._sleep(seconds)

    def flush(self) -> None:
        """Print a retry that was made without a wait."""
        self._say("retrying at once")

    def announce(self, what: str) -> None:
        """Say what the command does now (``fetching https://...``), when lines are printed."""
        self.flush()
        if self._enabled:
            self._err.write("%s: %s\n" % (_PROG, what))
            self._err.flush()

    def _say(self, when: str) -> None:
        if self._pending is None:
            return
        attempt, total, reason = self._pending
        self._pending = None
        if self._enabled:
            where = " from %s" % redact_url(self.url) if self.url else ""
            self._err.write("%s: %s%s; %s (attempt %d of %d)\n" % (_PROG, reason, where, when, attempt, total))
            self._err.flush()


def gave_up_suffix(message: str, attempts: int) -> str:
    """What a final error line adds about the attempts: ``"; gave up after 4 attempts"``.

    Pure: nothing when one attempt was made (the message says what failed; "after 1
    attempt" adds nothing), when the message counts them already, or when no request
    was made.
    """
    if attempts <= 1 or "no request was made" in message or " attempt" in message:
        return ""
    return "; gave up after %d attempts" % attempts


def isatty(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or unusual stream)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
