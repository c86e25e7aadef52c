"""Tokens shared by the processes of one machine through files: :class:`FileTokenCache`.

Each ``(server_name, config_id)`` is one file ``<sha256>.token`` in a per-user
directory (mode 0700, files 0600), next to a lock file ``<sha256>.lock``. A process
about to fetch a token takes an advisory ``fcntl.flock`` on the lock file, so the
other processes wait and then read its token instead of fetching their own; the
kernel releases the lock when its holder exits, even on ``SIGKILL``. Files are
replaced atomically (temporary file, fsync, rename), and a file that cannot be read
back (truncated, corrupt, another key's, another encryption key's) is a miss that
the next fetch replaces. No dependency beyond the standard library; POSIX only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Set

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows; FileTokenCache() says so
    fcntl = None  # type: ignore[assignment]

from .._helpers import replace_bytes
from ..cache import DEFAULT_MAXSIZE, Key
from ..exceptions import ConfigError
from .store import DEFAULT_WAIT_TIMEOUT, MAX_ENTRY_BYTES, SharedTokenCache, acquire_polling, key_digest

log = logging.getLogger("oauth_gateway")

#: Mode of the cache directory created by :class:`FileTokenCache`.
DIR_MODE = 0o700
#: Mode of token and lock files.
FILE_MODE = 0o600
#: Name of the cache directory under ``$XDG_CACHE_HOME`` (or ``~/.cache``).
DIR_NAME = "oauth-gateway"

_TOKEN_SUFFIX = ".token"
_LOCK_SUFFIX = ".lock"


def default_cache_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Return ``$XDG_CACHE_HOME/oauth-gateway``, or ``~/.cache/oauth-gateway``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory spec says.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, DIR_NAME)


class FileTokenCache(SharedTokenCache):
    """Tokens in files that the processes of one user on one machine share. Thread-safe.

    A hit is served from local memory (a :class:`~oauth_gateway.MemoryTokenCache`
    in front of the files) without I/O; the files are read on a local miss and
    written after a fetch.

    Args:
        path: the directory; :func:`default_cache_dir` when None. It is created with
            mode 0700 and must belong to this user and not be writable by others.
        encryption_key: Fernet key(s) to encrypt the files (needs ``cryptography``).
        wait_timeout: seconds to wait for another process's fetch of the same key
            before fetching anyway.
        maxsize: bound on the tokens kept in local memory.
        clock: monotonic seconds, the manager's clock.
        wall_clock: epoch seconds, for the times written to the files.
        sleep: waits between attempts to take a busy lock.

    Raises:
        ConfigError: no ``fcntl`` on this platform, or the directory is not safe to use.
        OSError: the directory cannot be created.
    """

    store_name = "file cache"

    def __init__(
        self,
        path: Optional[str] = None,
        *,
        encryption_key: Any = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Optional[Callable[[], float]] = None,
        wall_clock: Optional[Callable[[], float]] = None,
        sleep: Optional[Callable[[float], None]] = None,
    ):
        if fcntl is None:
            raise ConfigError(
                "the file token cache needs fcntl.flock, which this platform (%s) does not have" % os.name,
                "",
                "use the memory cache, or Redis to share tokens between processes",
            )
        super().__init__(encryption_key=encryption_key, maxsize=maxsize, clock=clock, wall_clock=wall_clock)
        self.path = os.path.abspath(path or default_cache_dir())
        self._wait_timeout = float(wait_timeout)
        self._sleep = sleep or time.sleep
        # Lock files open right now, closed in a forked child (see reset_after_fork).
        self._open_locks: Set[int] = set()
        self._open_locks_guard = threading.Lock()
        self._prepare_directory()

    def _prepare_directory(self) -> None:
        os.makedirs(self.path, mode=DIR_MODE, exist_ok=True)
        info = os.stat(self.path)
        where = "FileTokenCache(path=%r)" % self.path
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigError("is not a directory", where, "point the file cache at a directory")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ConfigError(
                "belongs to another user (uid %d), who could read or plant tokens there" % info.st_uid,
                where,
                "use a directory of your own, such as the default %s" % default_cache_dir(),
            )
        if stat.S_IMODE(info.st_mode) & 0o022:
            raise ConfigError(
                "is writable by group or others (mode %o), who could plant tokens there" % stat.S_IMODE(info.st_mode),
                where,
                "chmod 700 it, or use a directory of your own such as the default %s" % default_cache_dir(),
            )

    def _file(self, key: Key, suffix: str) -> str:
        return os.path.join(self.path, key_digest(key) + suffix)

    # -- the store

    def _read(self, key: Key) -> Optional[bytes]:
        try:
            with open(self._file(key, _TOKEN_SUFFIX), "rb") as handle:
                return handle.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None

    def _write(self, key: Key, data: bytes, ttl: float) -> None:
        # Temporary file, fsync, rename: readers see the old file or the new one, never
        # a part. The directory is not fsynced: losing the rename in a crash is a miss.
        replace_bytes(self._file(key, _TOKEN_SUFFIX), data, FILE_MODE)

    def _delete(self, key: Key) -> None:
        try:
            os.unlink(self._file(key, _TOKEN_SUFFIX))
        except FileNotFoundError:
            pass

    @contextlib.contextmanager
    def lock(self, key: Key) -> Iterator[None]:
        """Hold the advisory lock of ``key``'s lock file (``flock``), waiting at most ``wait_timeout``.

        Raises:
            TimeoutError: another process held it for longer than ``wait_timeout``.
            OSError: the lock file cannot be opened.
        """
        fd = os.open(self._file(key, _LOCK_SUFFIX), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        with self._open_locks_guard:
            self._open_locks.add(fd)
        try:

            def attempt() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            what = "the file lock of %s (config: %s)" % key
            acquire_polling(attempt, self._wait_timeout, self._clock, self._sleep, what)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            with self._open_locks_guard:
                self._open_locks.discard(fd)
            os.close(fd)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        # A lock file open in the parent at fork time: closing the child's copy leaves the
        # parent's lock alone, and keeps the child from holding it after the parent dies.
        for fd in list(self._open_locks):
            try:
                os.close(fd)
            except OSError:
                pass
        self._open_locks = set()
        self._open_locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return "FileTokenCache(path=%r, encrypted=%r, tokens=%d)" % (self.path, self.encrypted, len(self))
