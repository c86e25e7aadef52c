"""FileTokenCache and cache_from_settings: files, locks, corruption, clocks, encryption, settings.

Two managers with two caches on one directory stand for two processes here (each has
its own local memory layer); tests/test_many_workers.py runs real processes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import stat
import sys
import time
import warnings

import pytest

import oauth_gateway as og
from fakes import FakeClock, RecordingSleep
from oauth_gateway.cache import CacheEntry, MemoryTokenCache
from oauth_gateway.contrib import file_cache, store
from oauth_gateway.contrib.cache_settings import cache_from_settings
from oauth_gateway.contrib.file_cache import FileTokenCache, _default_cache_dir

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*no longer supported.*")
    from cryptography.fernet import Fernet

#: A wall clock (epoch seconds) that tests move by hand.
EPOCH = 1700000000.0


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "tokens")


@pytest.fixture
def config(auth_server, make_block):
    return og.OAuthConfig.from_dict(make_block(auth_server))


def _token_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".token"))


def _manager(directory, clock=None, wall=None, **options):
    cache = FileTokenCache(directory, clock=clock, wall_clock=wall, **options)
    return og.TokenManager(cache=cache, clock=clock) if clock is not None else og.TokenManager(cache=cache)


# --------------------------------------------------------------------------- sharing


def test_a_second_process_reads_the_token_from_the_file(cache_dir, config, auth_server):
    first = _manager(cache_dir).get_token("oauth-api", config)
    other = _manager(cache_dir)
    second = other.get_token("oauth-api", config)
    assert auth_server.count() == 1
    assert second.access_token == first.access_token
    assert second.scopes == first.scopes and second.token_type == "Bearer"
    # The entry read from the file is now served from local memory, counted as a hit.
    assert other.get_token("oauth-api", config) is second
    assert other.get_metrics()["token_cache_hits"] == 1


def test_files_are_private_and_named_by_a_hash(cache_dir, config):
    _manager(cache_dir).get_token("oauth-api", config)
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    names = os.listdir(cache_dir)
    assert len(_token_files(cache_dir)) == 1
    for name in names:
        assert "oauth-api" not in name
        assert stat.S_IMODE(os.stat(os.path.join(cache_dir, name)).st_mode) == 0o600


def test_an_edited_config_does_not_get_the_stored_token(cache_dir, auth_server, make_block):
    _manager(cache_dir).get_token("oauth-api", og.OAuthConfig.from_dict(make_block(auth_server)))
    edited = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_SCOPE="read"))
    _manager(cache_dir).get_token("oauth-api", edited)
    assert auth_server.count() == 2


def test_keys_are_separate(cache_dir, config, auth_server):
    manager = _manager(cache_dir)
    a = manager.get_token("oauth-api", config, config_id="one")
    b = manager.get_token("oauth-api", config, config_id="two")
    assert a.access_token != b.access_token
    assert len(_token_files(cache_dir)) == 2


def test_invalidate_removes_the_file(cache_dir, config, auth_server):
    manager = _manager(cache_dir)
    manager.get_token("oauth-api", config)
    manager.invalidate("oauth-api")
    assert _token_files(cache_dir) == []
    _manager(cache_dir).get_token("oauth-api", config)
    assert auth_server.count() == 2


# --------------------------------------------------------------------------- clocks


def test_times_are_carried_across_monotonic_clocks_as_wall_clock(cache_dir, config, auth_server):
    clock_a, clock_b = FakeClock(1000.0), FakeClock(50.0)
    wall = FakeClock(EPOCH)
    token_a = _manager(cache_dir, clock_a, wall).get_token("oauth-api", config)
    assert token_a.expires_at_monotonic == pytest.approx(1000.0 + 3600)
    wall.advance(10)
    clock_b.advance(10)
    manager_b = _manager(cache_dir, clock_b, wall)
    token_b = manager_b.get_token("oauth-api", config)
    assert auth_server.count() == 1
    # 10 s later on another clock: 3590 s left, on B's clock.
    assert token_b.expires_at_monotonic == pytest.approx(60.0 + 3590, abs=1e-3)
    assert token_b.issued_at == pytest.approx(60.0 - 10, abs=1e-3)
    assert token_b.refresh_at == pytest.approx(token_b.expires_at_monotonic - 300, abs=1e-3)


def test_an_entry_past_its_refresh_time_is_fetched_again(cache_dir, config, auth_server):
    clock, wall = FakeClock(1000.0), FakeClock(EPOCH)
    _manager(cache_dir, clock, wall).get_token("oauth-api", config)
    wall.advance(3600 - 300)  # another process, starting when the token should be refreshed
    _manager(cache_dir, FakeClock(5.0), wall).get_token("oauth-api", config)
    assert auth_server.count() == 2


def test_an_expired_entry_is_a_miss(cache_dir, config):
    clock, wall = FakeClock(1000.0), FakeClock(EPOCH)
    _manager(cache_dir, clock, wall).get_token("oauth-api", config)
    wall.advance(3600)
    later = FileTokenCache(cache_dir, clock=FakeClock(1.0), wall_clock=wall)
    assert later.load(("oauth-api", "default")) is None


# --------------------------------------------------------------------------- damaged files


def _only_token_file(directory):
    (name,) = _token_files(directory)
    return os.path.join(directory, name)


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "garbage", "wrong_format", "wrong_key", "missing_field"],
)
def test_a_damaged_file_is_ignored_and_replaced(cache_dir, config, auth_server, damage, caplog):
    manager = _manager(cache_dir)
    first = manager.get_token("oauth-api", config)
    path = _only_token_file(cache_dir)
    with open(path, "rb") as handle:
        good = handle.read()
    document = json.loads(good)
    if damage == "truncated":
        data = good[: len(good) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "garbage":
        data = os.urandom(64)
    elif damage == "wrong_format":
        data = json.dumps(dict(document, v=99)).encode()
    elif damage == "wrong_key":
        data = json.dumps(dict(document, key=["other-api", "default"])).encode()
    else:
        data = json.dumps({k: v for k, v in document.items() if k != "expires_at"}).encode()
    with open(path, "wb") as handle:
        handle.write(data)

    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        again = _manager(cache_dir).get_token("oauth-api", config)
    assert auth_server.count() == 2
    assert again.access_token != first.access_token
    assert any("Ignoring the file cache entry for oauth-api" in r.getMessage() for r in caplog.records)
    # Replaced by a good entry that a third process reads without a request.
    assert _manager(cache_dir).get_token("oauth-api", config).access_token == again.access_token
    assert auth_server.count() == 2


def test_a_store_that_fails_falls_back_to_fetching_and_counts_it(cache_dir, config, auth_server, caplog):
    cache = FileTokenCache(cache_dir)
    # A directory where the token file should be: reading and replacing it both fail.
    os.mkdir(os.path.join(cache_dir, store.key_digest(("oauth-api", "default")) + ".token"))
    manager = og.TokenManager(cache=cache)
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        token = manager.get_token("oauth-api", config)
        assert manager.get_token("oauth-api", config) is token  # kept in local memory anyway
    assert auth_server.count() == 1
    metrics = manager.get_metrics()
    assert metrics["cache_errors"] == 3  # read before the lock, read under it, write
    assert metrics["servers"]["oauth-api"]["cache_errors"] == 3
    assert metrics["token_acquisitions_total"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Token cache write failed for oauth-api (IsADirectoryError") for m in messages)
    assert not any(token.access_token in m for m in messages)


# --------------------------------------------------------------------------- locks


def test_the_lock_waits_a_bounded_time(cache_dir):
    clock = FakeClock()
    sleeps = RecordingSleep(clock)
    holder = FileTokenCache(cache_dir)
    waiter = FileTokenCache(cache_dir, wait_timeout=2.0, clock=clock, sleep=sleeps)
    key = ("oauth-api", "default")
    with holder.lock(key):
        with pytest.raises(TimeoutError) as caught:
            with waiter.lock(key):
                pass  # pragma: no cover - never entered
    assert "file lock of oauth-api (config: default)" in str(caught.value)
    assert sleeps.total == pytest.approx(2.0)
    assert sleeps.calls[0] == pytest.approx(0.005) and max(sleeps.calls) <= 0.1
    with waiter.lock(key):  # released by the holder: taken at once
        pass


def test_a_manager_fetches_anyway_when_the_lock_is_held_too_long(cache_dir, config, auth_server):
    clock = FakeClock()
    holder = FileTokenCache(cache_dir)
    manager = og.TokenManager(
        cache=FileTokenCache(cache_dir, wait_timeout=1.0, clock=clock, sleep=RecordingSleep(clock)), clock=clock
    )
    with holder.lock(("oauth-api", "default")):
        token = manager.get_token("oauth-api", config)
    assert token.access_token and auth_server.count() == 1
    assert manager.get_metrics()["cache_errors"] == 1


def test_after_a_lock_timeout_the_file_is_read_again(cache_dir, config, auth_server):
    clock = FakeClock()
    key = ("oauth-api", "default")
    writer = FileTokenCache(cache_dir)
    planted = og.Token("planted-token-0123456789", expires_in=3600, issued_at=time.monotonic())

    class HolderFinishesWhileWeWait(RecordingSleep):
        def __call__(self, seconds):
            super().__call__(seconds)
            if len(self.calls) == 1:
                writer.store(key, CacheEntry(config.fingerprint, planted, itertools.count(), planted.refresh_at))

    waiter = FileTokenCache(cache_dir, wait_timeout=1.0, clock=clock, sleep=HolderFinishesWhileWeWait(clock))
    manager = og.TokenManager(cache=waiter, clock=clock)
    with FileTokenCache(cache_dir).lock(key):
        token = manager.get_token("oauth-api", config)
    assert token.access_token == planted.access_token
    assert auth_server.count() == 0
    assert manager.get_metrics()["cache_errors"] == 1  # the lock timeout


def test_lock_files_are_closed_after_use(cache_dir):
    cache = FileTokenCache(cache_dir)
    with cache.lock(("oauth-api", "default")):
        assert len(cache._open_locks) == 1
    assert cache._open_locks == set()


# --------------------------------------------------------------------------- encryption


def test_an_encrypted_file_holds_no_token(cache_dir, config, auth_server):
    key = Fernet.generate_key().decode()
    token = _manager(cache_dir, encryption_key=key).get_token("oauth-api", config)
    with open(_only_token_file(cache_dir), "rb") as handle:
        raw = handle.read()
    assert token.access_token.encode() not in raw and b"access_token" not in raw
    assert _manager(cache_dir, encryption_key=key).get_token("oauth-api", config).access_token == token.access_token
    assert auth_server.count() == 1


def test_a_rotated_key_still_reads_old_entries_and_a_wrong_key_refetches(cache_dir, config, auth_server):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = _manager(cache_dir, encryption_key=old).get_token("oauth-api", config)
    rotated = _manager(cache_dir, encryption_key="%s,%s" % (new, old)).get_token("oauth-api", config)
    assert rotated.access_token == token.access_token and auth_server.count() == 1
    _manager(cache_dir, encryption_key=Fernet.generate_key().decode()).get_token("oauth-api", config)
    assert auth_server.count() == 2


def test_a_malformed_encryption_key_is_a_config_error_that_hides_it(cache_dir):
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("file:" + cache_dir, encryption_key="not-a-key-but-a-secret", environ={})
    message = str(caught.value)
    assert message.startswith("$.common_mcp_gateway_config.oauth_token_cache_encryption_key: is not a Fernet key")
    assert "Fernet.generate_key()" in message
    assert "not-a-key-but-a-secret" not in message


# --------------------------------------------------------------------------- the directory


def test_the_default_directory_follows_xdg(tmp_path):
    assert _default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "oauth-gateway")
    home_default = os.path.join(os.path.expanduser("~"), ".cache", "oauth-gateway")
    assert _default_cache_dir({"XDG_CACHE_HOME": "relative/dir"}) == home_default
    assert _default_cache_dir({}) == home_default


def test_the_default_directory_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = FileTokenCache()
    assert cache.path == str(tmp_path / "oauth-gateway")
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o700


def test_a_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    with pytest.raises(og.ConfigError) as caught:
        FileTokenCache(str(shared))
    assert "is writable by group or others (mode 777)" in str(caught.value)
    assert "chmod 700" in str(caught.value)


# --------------------------------------------------------------------------- a shared directory (StrictModes)

#: The uid that stands for another local user; files get it through chown, as root.
OTHER_UID = 65534


def _as_another_user(path):
    """Give ``path`` (not following a symlink) to another user, which only root can do."""
    if os.geteuid() != 0:
        pytest.skip("making a file that belongs to another user needs root (the suite's CI runs as root)")
    os.lchown(str(path), OTHER_UID, OTHER_UID)


def _get_token_within(manager, config, seconds=10.0):
    """Run ``get_token`` in a thread and return its token, failing if it takes longer than ``seconds``."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["token"] = manager.get_token("oauth-api", config)
        except BaseException as exc:  # pragma: no cover - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "get_token was still blocked after %.0fs" % seconds
    assert "error" not in outcome, outcome.get("error")
    return outcome["token"]


def _release_fifo_readers(path):
    """Let a reader blocked on opening the FIFO ``path`` go (the old code's hang), so the thread ends."""
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader waiting: nothing to release
        return
    os.close(fd)


def test_a_symlink_planted_by_another_user_is_refused(tmp_path):
    # /tmp-like: sticky and writable by all, so another user could plant the symlink.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    planted = shared / "oauth-gateway"
    os.symlink(str(mine), str(planted))  # points at a directory of ours, for now
    _as_another_user(planted)
    with pytest.raises(og.ConfigError) as caught:
        FileTokenCache(str(planted))
    message = str(caught.value)
    assert message.startswith("FileTokenCache(path=%r): is a symlink (to %r)" % (str(planted), str(mine)))
    assert "point the file cache at the real directory" in message
    assert os.listdir(str(mine)) == []


def test_a_symlink_of_our_own_in_place_of_the_directory_is_refused_too(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(str(real), str(link))
    with pytest.raises(og.ConfigError, match="is a symlink"):
        FileTokenCache(str(link))
    # Symlinks above the directory, owned by root or us, are followed (like /var/run -> /run).
    above = tmp_path / "above"
    os.symlink(str(tmp_path), str(above))
    assert FileTokenCache(str(above / "real")).path == str(above / "real")


def test_the_directory_is_held_open_so_a_later_swap_does_not_redirect_the_files(tmp_path, config, auth_server):
    cache_path = tmp_path / "tokens"
    cache = FileTokenCache(str(cache_path))
    # Afterwards the path is made to point elsewhere: the files still go where the cache was checked.
    moved = tmp_path / "moved"
    os.rename(str(cache_path), str(moved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(str(elsewhere), str(cache_path))
    og.TokenManager(cache=cache).get_token("oauth-api", config)
    assert os.listdir(str(elsewhere)) == []
    assert len(_token_files(str(moved))) == 1


def test_a_group_writable_component_above_the_directory_is_refused(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    os.chmod(str(team), 0o775)  # a group member could rename tokens/ and put their own in its place
    with pytest.raises(og.ConfigError) as caught:
        FileTokenCache(str(team / "tokens"))
    message = str(caught.value)
    assert message.startswith(
        "FileTokenCache(path=%r): %s, above the cache, is writable by group or others (mode 775)"
        % (str(team / "tokens"), str(team))
    )
    assert "chmod go-w %s" % team in message
    assert not (team / "tokens").exists()


def test_a_component_owned_by_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    (theirs / "tokens").mkdir(mode=0o700)  # ours, but inside a directory another user controls
    _as_another_user(theirs)
    with pytest.raises(og.ConfigError) as caught:
        FileTokenCache(str(theirs / "tokens"))
    message = str(caught.value)
    assert "%s, above the cache, belongs to uid %d" % (theirs, OTHER_UID) in message
    assert "use a directory whose parents belong to root or to you" in message


def test_a_directory_owned_by_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    _as_another_user(theirs)
    with pytest.raises(og.ConfigError, match=r"belongs to another user \(uid %d\)" % OTHER_UID):
        FileTokenCache(str(theirs))


def test_an_existing_0755_directory_is_tightened_to_0700(tmp_path, caplog):
    existing = tmp_path / "tokens"
    existing.mkdir()
    os.chmod(str(existing), 0o755)
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        FileTokenCache(str(existing))
    assert stat.S_IMODE(os.stat(str(existing)).st_mode) == 0o700
    assert any(
        "The file cache directory %s was readable by group or others (mode 755); tightened it to 700" % existing
        == r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("which", [".token", ".lock"])
def test_a_fifo_planted_as_a_token_or_lock_file_never_blocks_get_token(cache_dir, config, auth_server, which, caplog):
    cache = FileTokenCache(cache_dir)
    fifo = os.path.join(cache_dir, store.key_digest(("oauth-api", "default")) + which)
    os.mkfifo(fifo, 0o600)
    manager = og.TokenManager(cache=cache)
    try:
        with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
            token = _get_token_within(manager, config)
    finally:
        _release_fifo_readers(fifo)
    assert token.access_token and auth_server.count() == 1
    assert any("%s is a FIFO, not a regular file; remove it" % fifo in r.getMessage() for r in caplog.records)
    assert manager.get_metrics()["cache_errors"] >= 1
    if which == ".token":  # the fetched token replaced the FIFO
        assert stat.S_ISREG(os.lstat(fifo).st_mode)


def test_a_token_file_that_is_a_symlink_is_not_followed(tmp_path, config, auth_server, caplog):
    # Another directory holds a valid entry (say, a token of the planter's choosing) ...
    elsewhere = str(tmp_path / "elsewhere")
    planted = _manager(elsewhere).get_token("oauth-api", config)
    name = store.key_digest(("oauth-api", "default")) + ".token"
    # ... and a symlink to it is planted in our cache.
    ours = str(tmp_path / "ours")
    FileTokenCache(ours)
    os.symlink(os.path.join(elsewhere, name), os.path.join(ours, name))
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        token = _manager(ours).get_token("oauth-api", config)
    assert token.access_token != planted.access_token and auth_server.count() == 2
    assert any("is a symlink, which the file cache never follows" in r.getMessage() for r in caplog.records)
    assert stat.S_ISREG(os.lstat(os.path.join(ours, name)).st_mode)  # replaced, the target left alone
    assert FileTokenCache(elsewhere).load(("oauth-api", "default")).token.access_token == planted.access_token


def test_a_lock_file_symlink_never_makes_us_create_a_file_where_it_points(tmp_path, cache_dir, config, auth_server):
    cache = FileTokenCache(cache_dir)
    target = tmp_path / "chosen-by-someone-else"
    lock = os.path.join(cache_dir, store.key_digest(("oauth-api", "default")) + ".lock")
    os.symlink(str(target), lock)
    manager = og.TokenManager(cache=cache)
    assert manager.get_token("oauth-api", config).access_token
    assert not target.exists()
    assert manager.get_metrics()["cache_errors"] == 1  # the lock


def test_a_token_file_of_another_user_is_not_read(cache_dir, config, auth_server, caplog):
    _manager(cache_dir).get_token("oauth-api", config)
    _as_another_user(_only_token_file(cache_dir))
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        _manager(cache_dir).get_token("oauth-api", config)
    assert auth_server.count() == 2
    assert any("belongs to uid %d, not to this user; remove it" % OTHER_UID in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_opens_the_directory_again(cache_dir, config, auth_server):
    cache = FileTokenCache(cache_dir)
    manager = og.TokenManager(cache=cache)  # a manager resets its cache in a forked child
    parent_fd = cache._directory()
    key = ("oauth-api", "default")
    planted = og.Token("from-the-child-0123456789", expires_in=3600, issued_at=time.monotonic())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            closed = cache._dir_fd is None  # the parent's descriptor, closed at fork
            same = os.fstat(cache._directory())
            ours = os.stat(cache_dir)
            if closed and cache._dir_pid == os.getpid() and (same.st_dev, same.st_ino) == (ours.st_dev, ours.st_ino):
                cache.store(key, CacheEntry(config.fingerprint, planted, itertools.count(), planted.refresh_at))
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert cache._directory() == parent_fd  # the parent keeps its own
    # The parent reads what the child wrote through its own descriptor.
    assert manager.get_token("oauth-api", config).access_token == planted.access_token
    assert auth_server.count() == 0


def test_without_fcntl_the_error_says_what_to_use(monkeypatch, cache_dir):
    monkeypatch.setattr(file_cache, "fcntl", None)
    with pytest.raises(og.ConfigError) as caught:
        FileTokenCache(cache_dir)
    assert "needs fcntl.flock" in str(caught.value)
    assert "use the memory cache, or Redis" in str(caught.value)


# --------------------------------------------------------------------------- cache_from_settings


def test_settings_default_to_memory():
    assert type(cache_from_settings(environ={})) is MemoryTokenCache
    assert type(cache_from_settings("", environ={})) is MemoryTokenCache
    assert type(cache_from_settings("Memory", environ={})) is MemoryTokenCache


def test_settings_file_and_file_with_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = cache_from_settings("file", environ={})
    assert isinstance(default, FileTokenCache) and default.path == str(tmp_path / "xdg" / "oauth-gateway")
    explicit = cache_from_settings("file:" + str(tmp_path / "a"), environ={})
    assert explicit.path == str(tmp_path / "a")
    url_form = cache_from_settings("file://" + str(tmp_path / "b"), environ={})
    assert url_form.path == str(tmp_path / "b")


def test_the_environment_wins_over_the_file(tmp_path):
    environ = {"OAUTH_GATEWAY_TOKEN_CACHE": "file:" + str(tmp_path / "env")}
    chosen = cache_from_settings("memory", environ=environ)
    assert isinstance(chosen, FileTokenCache) and chosen.path == str(tmp_path / "env")
    assert type(cache_from_settings("file", environ={"OAUTH_GATEWAY_TOKEN_CACHE": "memory"})) is MemoryTokenCache


def test_settings_resolve_env_references(tmp_path):
    key = Fernet.generate_key().decode()
    environ = {"CACHE_DIR": str(tmp_path / "ref"), "CACHE_KEY": key}
    chosen = cache_from_settings("file:${CACHE_DIR}", encryption_key="${CACHE_KEY}", environ=environ)
    assert chosen.path == str(tmp_path / "ref") and chosen.encrypted
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("file", encryption_key="${MISSING_KEY}", environ={})
    assert "MISSING_KEY, which is not set" in str(caught.value)
    assert str(caught.value).startswith("$.common_mcp_gateway_config.oauth_token_cache_encryption_key")


def test_an_unknown_value_names_the_setting_and_the_choices():
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("memcached://cache:11211", environ={})
    assert str(caught.value) == (
        "$.common_mcp_gateway_config.oauth_token_cache: unknown token cache 'memcached://cache:11211'; "
        "use memory, file, file:/path/to/dir, redis://host:6379/0 (rediss://, unix:// too), "
        "redis+cluster://host:6379,host:6379 or redis+sentinel://host:26379,host:26379/service_name/0 "
        "(rediss+cluster://, rediss+sentinel:// for TLS)"
    )
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings(environ={"OAUTH_GATEWAY_TOKEN_CACHE": "disk"})
    assert str(caught.value).startswith("OAUTH_GATEWAY_TOKEN_CACHE: unknown token cache 'disk'")
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings(42, environ={})  # type: ignore[arg-type]
    assert "must be a string, got int" in str(caught.value)


def test_a_key_with_the_memory_cache_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        chosen = cache_from_settings("memory", encryption_key=Fernet.generate_key().decode(), environ={})
    assert type(chosen) is MemoryTokenCache
    assert any("oauth_token_cache_encryption_key is ignored" in r.getMessage() for r in caplog.records)


def test_encryption_without_cryptography_names_the_extra(monkeypatch, cache_dir):
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("file:" + cache_dir, encryption_key="x" * 44, environ={})
    assert "needs the cryptography package" in str(caught.value)
    assert "pip install 'oauth-gateway[redis-encrypted]'" in str(caught.value)
