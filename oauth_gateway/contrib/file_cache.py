"""Tokens shared by the processes of one machine through files: :class:`FileTokenCache`.

Each ``(server_name, config_id)`` is one file ``<sha256>.token`` in a per-user
directory (mode 0700, files 0600), next to a lock file ``<sha256>.lock``. A process
about to fetch a token takes an advisory ``fcntl.flock`` on the lock file, so the
other processes wait and then read its token instead of fetching their own; the
kernel releases the lock when its holder exits, even on ``SIGKILL``. Files are
replaced atomically (temporary file, fsync, rename), and a file that cannot be read
back (truncated, corrupt, another key's, another encryption key's) is a miss that
the next fetch replaces. No dependency beyond the standard library; POSIX only.

The directory is checked once, as OpenSSH's ``StrictModes`` checks ``~/.ssh``: it
must belong to this user, may not be a symlink or writable by group or others, and
every directory above it must belong to root or this user and not be writable by
others (a sticky directory such as ``/tmp`` is accepted, since others cannot replace
what they do not own there). The directory is then held open and every file is
opened, renamed and removed relative to that descriptor, never through the path
again, so nobody can re-point the cache later. Token and lock files are opened with
``O_NOFOLLOW | O_NONBLOCK`` and used only when they are regular files of this user:
a symlink, FIFO or device planted there is refused without blocking.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List, Mapping, Optional, Set

__all__ = ("FileTokenCache",)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows; FileTokenCache() says so
    fcntl = None  # type: ignore[assignment]

from ..cache import DEFAULT_MAXSIZE, Key
from ..exceptions import ConfigError
from .store import DEFAULT_WAIT_TIMEOUT, MAX_ENTRY_BYTES, SharedTokenCache, acquire_polling, key_digest

_log = logging.getLogger("oauth_gateway")

#: Mode of the cache directory created by :class:`FileTokenCache`.
_DIR_MODE = 0o700
#: Mode of token and lock files.
_FILE_MODE = 0o600
#: Name of the cache directory under ``$XDG_CACHE_HOME`` (or ``~/.cache``).
_DIR_NAME = "oauth-gateway"

_TOKEN_SUFFIX = ".token"
_LOCK_SUFFIX = ".lock"
# Symlinks followed while resolving the directory's parents, as the kernel's MAXSYMLINKS.
_MAX_SYMLINKS = 40
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Token and lock files: never through a symlink, never blocking on a FIFO or device.
_FILE_FLAGS = _NOFOLLOW | _NONBLOCK | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC


def _default_cache_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Return ``$XDG_CACHE_HOME/oauth-gateway``, or ``~/.cache/oauth-gateway``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory spec says.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, _DIR_NAME)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kind(mode: int) -> str:
    """Name the file type of ``mode`` for messages: ``a FIFO``, ``a directory``..."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of an unknown type"


class FileTokenCache(SharedTokenCache):
    """Tokens in files that the processes of one user on one machine share. Thread-safe.

    A hit is served from local memory (a :class:`~oauth_gateway.cache.MemoryTokenCache`
    in front of the files) without I/O; the files are read on a local miss and
    written after a fetch.

    The directory is checked and opened once (see the module's docstring) and used
    through that descriptor; a forked child opens it again, checking it again. An
    existing directory of this user that group or others may read or enter (0755)
    is tightened to 0700 with a warning; one they may write to is refused, since
    they may already have planted files in it.

    Args:
        path: the directory; :func:`default_cache_dir` when None. It is created with
            mode 0700 (missing parents too) and must belong to this user.
        encryption_key: Fernet key(s) to encrypt the files (needs ``cryptography``).
        wait_timeout: seconds to wait for another process's fetch of the same key
            before fetching anyway.
        maxsize: bound on the tokens kept in local memory.
        clock: monotonic seconds, the manager's clock.
        wall_clock: epoch seconds, for the times written to the files.
        sleep: waits between attempts to take a busy lock.

    Raises:
        ConfigError: no ``fcntl`` on this platform, or the directory is not safe to use
            (a symlink, another user's, writable by others, or below a directory that
            others could change); the message names the path and the fix.
        OSError: the directory cannot be created or opened.
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
        self.path = os.path.abspath(path or _default_cache_dir())
        self._wait_timeout = float(wait_timeout)
        self._sleep = sleep or time.sleep
        # Lock files open right now, closed in a forked child (see reset_after_fork).
        self._open_locks: Set[int] = set()
        self._open_locks_guard = threading.Lock()
        # The directory's descriptor, the process that opened it, and what closes it.
        self._dir_guard = threading.Lock()
        self._dir_fd: Optional[int] = None
        self._dir_pid = 0
        self._dir_closer: Optional[weakref.finalize[[int], FileTokenCache]] = None
        self._directory()

    # -- the directory

    def _refuse(self, problem: str, hint: str) -> ConfigError:
        return ConfigError(problem, "FileTokenCache(path=%r)" % self.path, hint)

    def _directory(self) -> int:
        """Return the descriptor of the checked directory, opening it in a new process.

        Raises:
            ConfigError: the directory is not safe to use.
            OSError: it cannot be created or opened.
        """
        fd = self._dir_fd
        if fd is not None and self._dir_pid == os.getpid():
            return fd
        with self._dir_guard:
            if self._dir_fd is not None and self._dir_pid == os.getpid():
                return self._dir_fd
            if self._dir_closer is not None:
                # The parent's descriptor, in a child that reset_after_fork did not reach: left
                # open rather than closed, since the child may have reused its number already.
                self._dir_closer.detach()
            fd = self._open_directory()
            self._dir_closer = weakref.finalize(self, _close_quietly, fd)
            self._dir_pid = os.getpid()
            self._dir_fd = fd
            return fd

    def _open_directory(self) -> int:
        """Walk from ``/`` to the cache directory, checking each step, and return its descriptor.

        Each directory looked into must belong to root or this user and not be writable
        by others unless sticky; in a sticky one, what we take from it must belong to
        root or this user. Symlinks above the cache directory are followed under the
        same rules; the cache directory itself may not be one. Missing directories are
        created with mode 0700.
        """
        euid = os.geteuid()
        parts: List[str] = [part for part in self.path.split(os.sep) if part]
        if not parts:
            raise self._refuse("is the root directory", "use a directory of your own such as %s" % _default_cache_dir())
        fd = os.open(os.sep, _DIR_FLAGS)
        stack = [(fd, os.sep)]  # descriptors of the directories walked through, and their paths
        symlinks = 0
        try:
            while parts:
                name = parts.pop(0)
                last = not parts
                current, where = stack[-1]
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                here = self._check_parent(current, where, euid)
                path = os.path.join(where, name)
                try:
                    info = os.stat(name, dir_fd=current, follow_symlinks=False)
                except FileNotFoundError:
                    try:
                        os.mkdir(name, _DIR_MODE, dir_fd=current)
                    except FileExistsError:  # made meanwhile by another process: checked below
                        pass
                    info = os.stat(name, dir_fd=current, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode) and last:
                    raise self._refuse(
                        "is a symlink (to %r); the file cache never follows one, since whoever can change it "
                        "could point the cache elsewhere" % os.readlink(name, dir_fd=current),
                        "point the file cache at the real directory, which must belong to you",
                    )
                if here.st_mode & stat.S_ISVTX and info.st_uid not in (0, euid):
                    raise self._refuse(
                        "%s belongs to uid %d, in the shared directory %s" % (path, info.st_uid, where),
                        "use a directory of your own such as %s" % _default_cache_dir(),
                    )
                if stat.S_ISLNK(info.st_mode):
                    if info.st_uid not in (0, euid):
                        raise self._refuse(
                            "%s is a symlink of uid %d, who could re-point the cache" % (path, info.st_uid),
                            "use a path without it, such as the default %s" % _default_cache_dir(),
                        )
                    symlinks += 1
                    if symlinks > _MAX_SYMLINKS:
                        raise self._refuse("has too many levels of symlinks", "use the real path of the directory")
                    target = os.readlink(name, dir_fd=current)
                    if target.startswith(os.sep):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    parts[:0] = [part for part in target.split(os.sep) if part]
                    continue
                if not stat.S_ISDIR(info.st_mode):
                    raise self._refuse("%s is %s" % (path, _kind(info.st_mode)), "point the file cache at a directory")
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=current)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a symlink meanwhile
                        raise self._refuse("%s changed while it was checked" % path, "try again") from None
                    raise
                stack.append((child, path))
            fd, where = stack.pop()
            self._check_cache_directory(fd, where, euid)
            return fd
        finally:
            for other, _ in stack:
                os.close(other)

    def _check_parent(self, fd: int, where: str, euid: int) -> os.stat_result:
        """Check a directory the path goes through (StrictModes): root's or ours, not writable by others."""
        info = os.fstat(fd)
        if info.st_uid not in (0, euid):
            raise self._refuse(
                "%s, above the cache, belongs to uid %d, who could replace what is below it" % (where, info.st_uid),
                "use a directory whose parents belong to root or to you, such as the default %s" % _default_cache_dir(),
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022 and not mode & stat.S_ISVTX:
            raise self._refuse(
                "%s, above the cache, is writable by group or others (mode %o), who could replace what is "
                "below it" % (where, mode),
                "chmod go-w %s, or use a directory such as the default %s" % (where, _default_cache_dir()),
            )
        return info

    def _check_cache_directory(self, fd: int, where: str, euid: int) -> None:
        """Require our own directory that others cannot write; tighten one they can read to 0700."""
        info = os.fstat(fd)
        if info.st_uid != euid:
            raise self._refuse(
                "belongs to another user (uid %d), who could read or plant tokens there" % info.st_uid,
                "use a directory of your own, such as the default %s" % _default_cache_dir(),
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            raise self._refuse(
                "is writable by group or others (mode %o), who could plant tokens there" % mode,
                "chmod 700 it, or use a directory of your own such as the default %s" % _default_cache_dir(),
            )
        if mode & 0o077:
            os.fchmod(fd, mode & ~0o077)
            _log.warning(
                "The file cache directory %s was readable by group or others (mode %o); tightened it to %o",
                where,
                mode,
                mode & ~0o077,
            )

    # -- files, always relative to the directory's descriptor

    def _open(self, name: str, flags: int) -> int:
        """Open ``name`` in the directory: no symlink, no blocking, a regular file of this user.

        Raises:
            FileNotFoundError: it does not exist (and ``flags`` do not create it).
            OSError: it is something else; the message says what and how to fix it.
        """
        directory = self._directory()
        try:
            # Refuse a FIFO or device before opening it (opening a device can do things);
            # the fstat below closes the race with a swap.
            self._require_regular(name, os.stat(name, dir_fd=directory, follow_symlinks=False))
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
        try:
            fd = os.open(name, flags | _FILE_FLAGS, _FILE_MODE, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(
                    "%s is a symlink, which the file cache never follows; remove it" % os.path.join(self.path, name)
                ) from None
            raise
        try:
            self._require_regular(name, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _require_regular(self, name: str, info: os.stat_result) -> None:
        path = os.path.join(self.path, name)
        if stat.S_ISLNK(info.st_mode):
            raise OSError("%s is a symlink, which the file cache never follows; remove it" % path)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("%s is %s, not a regular file; remove it" % (path, _kind(info.st_mode)))
        if info.st_uid != os.geteuid():
            raise OSError("%s belongs to uid %d, not to this user; remove it" % (path, info.st_uid))

    def _read(self, key: Key) -> Optional[bytes]:
        try:
            fd = self._open(key_digest(key) + _TOKEN_SUFFIX, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            left = MAX_ENTRY_BYTES + 1
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _write(self, key: Key, data: bytes, ttl: float) -> None:
        # Temporary file, fsync, rename: readers see the old file or the new one, never
        # a part. The directory is not fsynced: losing the rename in a crash is a miss.
        directory = self._directory()
        name = key_digest(key) + _TOKEN_SUFFIX
        temp = ".%s.%s.tmp" % (name, secrets.token_hex(8))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, _FILE_MODE, dir_fd=directory)
        try:
            try:
                os.fchmod(fd, _FILE_MODE)  # whatever the umask: never readable by others
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=directory)
            except OSError:
                pass
            raise

    def _delete(self, key: Key) -> None:
        try:
            os.unlink(key_digest(key) + _TOKEN_SUFFIX, dir_fd=self._directory())
        except FileNotFoundError:
            pass

    @contextlib.contextmanager
    def lock(self, key: Key) -> Iterator[None]:
        """Hold the advisory lock of ``key``'s lock file (``flock``), waiting at most ``wait_timeout``.

        Raises:
            TimeoutError: another process held it for longer than ``wait_timeout``.
            OSError: the lock file cannot be opened, or is not a regular file of this user.
        """
        fd = self._open(key_digest(key) + _LOCK_SUFFIX, os.O_RDWR | os.O_CREAT)
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
            _close_quietly(fd)
        self._open_locks = set()
        self._open_locks_guard = threading.Lock()
        # The child checks and opens the directory again on first use (a child that
        # closes inherited descriptors could otherwise reuse the number for another file).
        self._dir_guard = threading.Lock()
        if self._dir_fd is not None and self._dir_pid != os.getpid():
            if self._dir_closer is not None:
                self._dir_closer.detach()
                self._dir_closer = None
            _close_quietly(self._dir_fd)
            self._dir_fd = None

    def __repr__(self) -> str:
        return "FileTokenCache(path=%r, encrypted=%r, tokens=%d)" % (self.path, self.encrypted, len(self))
