"""The MCP gateway config file: load and validate it, find servers, add servers safely.

The file is the seed gateway's ``enkrypt_mcp_config.json``::

    {"common_mcp_gateway_config": {...},
     "mcp_configs": {
       "<config_id>": {
         "mcp_config_name": "default_config",
         "mcp_config": [
           {"server_name": "oauth-api", "description": "...",
            "config": {"command": "npx", "args": [...], "env": {...}},
            "oauth_config": {...}}]}},
     "projects": {...}, "users": {...}, "apikeys": {...}, "plugins": {...}}

Sections this module does not use are kept exactly as they are when a server is added.
Writes are atomic (a temporary file in the same directory, fsync, ``os.replace``), the
file ends up with mode 0600 whatever mode it had (and keeps its owner and group when
root edits it), and the previous contents are kept in ``<file>.bak``. The whole
read-modify-write holds an exclusive lock (``flock``) on ``<file>.lock`` beside it, so
concurrent writers queue up and none loses another's update.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
import stat
import uuid
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from . import schema
from ._helpers import CONFIG_PATH_ENV, read_json_file, replace_bytes, resolve_config_path
from ._jsonpath import describe as _describe
from ._jsonpath import join as _join
from .config import OAuthConfig
from .exceptions import ConfigError
from .injection import entry_oauth_block

if TYPE_CHECKING:
    from .cache import TokenCache

__all__ = ("GatewayConfig", "load_gateway_config")

_log = logging.getLogger(__name__)

#: Name of the config that :func:`add_server` creates in a file that has none.
_DEFAULT_CONFIG_NAME = "default_config"
#: Mode of the gateway file and its backup: it holds client secrets.
_FILE_MODE = 0o600
#: Mode of a config directory created by :func:`add_server`.
_DIR_MODE = 0o700
#: Suffix of the copy of the previous contents kept by every write.
_BACKUP_SUFFIX = ".bak"
#: Suffix of the lock file beside the gateway file that serialises writers.
_LOCK_SUFFIX = ".lock"

# How many names an error message lists before it says "and N more".
_MAX_LISTED = 20


def load_gateway_config(path: Optional[str] = None) -> GatewayConfig:
    """Read, parse and validate the gateway file.

    The file is ``path`` when given, else ``$OAUTH_GATEWAY_CONFIG`` when set and not
    empty, else ``~/.enkrypt/enkrypt_mcp_config.json``. A UTF-8 byte order mark is
    accepted. A file that group or others can read is loaded, with a warning.

    Args:
        path: the file to read; ``~`` is expanded.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is missing or unreadable, is not JSON (the message gives
            line and column), or breaks the schema (the message names the file and the
            first problem's JSON path).
    """
    target, source = resolve_config_path(path)
    document = _read_document(target, source)
    _validate(document, target)
    _warn_if_exposed(target)
    return GatewayConfig(target, document)


class GatewayConfig:
    """A loaded gateway file. Read only, so safe to share across threads.

    Every accessor returns deep copies: changing what you get back never changes the
    config. Build one with :func:`load_gateway_config`, which validates the file;
    the constructor only checks the layout this class relies on.

    Attributes:
        path: the absolute path of the file, or None for a config built in memory.
    """

    __slots__ = ("_path", "_data")

    _path: Optional[str]
    _data: Dict[str, Any]

    def __init__(self, path: Optional[str], data: Mapping[str, Any]) -> None:
        """Wrap a parsed document.

        Args:
            path: where the document came from, used in error messages.
            data: the parsed JSON document; it is deep-copied.

        Raises:
            ConfigError: ``mcp_configs`` or a server entry does not have the expected shape.
        """
        data = copy.deepcopy(dict(data)) if isinstance(data, Mapping) else data
        _check_layout(data, path)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_data", data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("GatewayConfig is read only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("GatewayConfig is read only")

    @property
    def path(self) -> Optional[str]:
        return self._path

    @property
    def data(self) -> Dict[str, Any]:
        """A deep copy of the whole document, secrets included: do not log it."""
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        # Counts only: the document holds client secrets.
        servers = sum(1 for _ in self._iter_entries())
        return "GatewayConfig(path=%r, configs=%d, servers=%d)" % (self._path, len(self._configs()), servers)

    def token_cache(self, environ: Optional[Mapping[str, str]] = None) -> TokenCache:
        """Build the token cache this file asks for (``common_mcp_gateway_config.oauth_token_cache``).

        ``$OAUTH_GATEWAY_TOKEN_CACHE`` wins over the file; see
        :func:`oauth_gateway.cache_from_settings`.

        Raises:
            ConfigError: an unknown value or a missing optional package.
        """
        from .contrib.cache_settings import CACHE_SETTING, ENCRYPTION_KEY_SETTING, cache_from_settings

        common = self._data.get("common_mcp_gateway_config")
        common = common if isinstance(common, dict) else {}
        return cache_from_settings(
            common.get(CACHE_SETTING), encryption_key=common.get(ENCRYPTION_KEY_SETTING), environ=environ
        )

    def iter_servers(self) -> Iterator[Tuple[str, Dict[str, Any]]]:
        """Yield ``(config_id, server_entry)`` for every server, in file order.

        Yields:
            The config id and a deep copy of the entry.
        """
        for config_id, _index, entry in self._iter_entries():
            yield config_id, copy.deepcopy(entry)

    def find_server(
        self,
        server_name: str,
        config_id: Optional[str] = None,
        config_name: Optional[str] = None,
    ) -> Tuple[str, Dict[str, Any]]:
        """Find one server entry.

        With ``config_id`` and/or ``config_name`` the search is limited to the matching
        configs; without them the server name must be unique in the whole file.

        Args:
            server_name: the entry's ``server_name``.
            config_id: key under ``mcp_configs``.
            config_name: a config's ``mcp_config_name``.

        Returns:
            ``(config_id, entry)``, the entry deep-copied.

        Raises:
            ConfigError: the config or the server does not exist (the message lists what
                does, with close matches), or the choice is ambiguous.
        """
        found_id, _index, entry = self._locate(server_name, config_id, config_name)
        return found_id, copy.deepcopy(entry)

    def oauth_config(
        self,
        server_name: str,
        config_id: Optional[str] = None,
        config_name: Optional[str] = None,
        *,
        environ: Optional[Mapping[str, str]] = None,
    ) -> OAuthConfig:
        """Build the validated :class:`OAuthConfig` of one server.

        Args:
            server_name: the entry's ``server_name``.
            config_id: key under ``mcp_configs``.
            config_name: a config's ``mcp_config_name``.
            environ: where ``${NAME}`` references are looked up; ``os.environ`` by default.

        Returns:
            The server's OAuth settings, secrets resolved.

        Raises:
            ConfigError: the server is not found, has no ``oauth_config``, has it
                disabled, or the block is invalid (the path is
                ``$.mcp_configs.<id>.mcp_config[<i>].oauth_config...``).
        """
        found_id, index, entry = self._locate(server_name, config_id, config_name)
        entry_path = "%s.mcp_config[%d]" % (_join(_join("$", "mcp_configs"), found_id), index)
        block = entry.get("oauth_config")
        if block is None:
            raise ConfigError(
                "server %r has no oauth_config%s" % (server_name, self._where()),
                entry_path,
                'add "oauth_config": {"enabled": true, "OAUTH_CLIENT_ID": ..., '
                '"OAUTH_CLIENT_SECRET": ..., "OAUTH_TOKEN_URL": ...} to the entry',
            )
        block_path = _join(entry_path, "oauth_config")
        disabled = ConfigError(
            "OAuth is not enabled for server %r (enabled is false or missing)%s" % (server_name, self._where()),
            _join(block_path, "enabled"),
            "set it to true to use OAuth for this server",
        )
        if isinstance(block, dict) and block.get("enabled") is not True:
            raise disabled
        # A remote server without a token URL or resource is discovered from its URL.
        config = OAuthConfig.from_dict(entry_oauth_block(entry), block_path, environ)
        if not config.enabled:
            raise disabled
        return config

    # -- internals -------------------------------------------------------------------

    def _where(self) -> str:
        return " in %s" % self._path if self._path else ""

    def _configs(self) -> Dict[str, Dict[str, Any]]:
        return self._data.get("mcp_configs") or {}

    def _iter_entries(self) -> Iterator[Tuple[str, int, Dict[str, Any]]]:
        for config_id, config in self._configs().items():
            for index, entry in enumerate(config.get("mcp_config") or []):
                yield config_id, index, entry

    def _locate(
        self, server_name: str, config_id: Optional[str], config_name: Optional[str]
    ) -> Tuple[str, int, Dict[str, Any]]:
        """Return ``(config_id, index, entry)`` without copying, or raise ConfigError."""
        configs = self._configs()
        selected = _select_configs(configs, config_id, config_name, self._where())
        matches = [
            (cid, index, entry)
            for cid in selected
            for index, entry in enumerate(configs[cid].get("mcp_config") or [])
            if entry.get("server_name") == server_name
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            places = ", ".join(_describe_config(configs, cid) for cid, _i, _e in matches)
            same_config = len({cid for cid, _i, _e in matches}) == 1
            raise ConfigError(
                "server %r appears %d times%s: %s" % (server_name, len(matches), self._where(), places),
                _join("$", "mcp_configs"),
                "rename or remove the duplicate entry"
                if same_config
                else "pass config_id or config_name to choose one",
            )
        raise self._missing_server(server_name, configs, selected, restricted=bool(config_id or config_name))

    def _missing_server(
        self, server_name: str, configs: Dict[str, Any], selected: List[str], restricted: bool
    ) -> ConfigError:
        names = sorted(
            {
                e.get("server_name")
                for cid in selected
                for e in configs[cid].get("mcp_config") or []
                if isinstance(e.get("server_name"), str)
            }
        )
        if restricted:
            scope = "in config %s" % ", ".join(_describe_config(configs, cid) for cid in selected)
        else:
            scope = "in any config"
        hints = []
        close = difflib.get_close_matches(str(server_name), names, n=3)
        if close:
            hints.append("did you mean %s?" % " or ".join(repr(n) for n in close))
        elsewhere = [
            _describe_config(configs, cid)
            for cid in configs
            if cid not in selected
            and any(e.get("server_name") == server_name for e in configs[cid].get("mcp_config") or [])
        ]
        if elsewhere:
            hints.append("it is in config %s" % ", ".join(elsewhere))
        hints.append("existing servers: %s" % _listing(names) if names else "no servers are configured yet")
        path = _join("$", "mcp_configs")
        if len(selected) == 1:
            path = _join(_join(path, selected[0]), "mcp_config")
        return ConfigError(
            "no server named %r %s%s" % (server_name, scope, self._where()),
            path,
            "; ".join(hints),
        )


def add_server(
    path: Optional[str],
    *,
    config_name: Optional[str] = None,
    config_id: Optional[str] = None,
    server_name: str,
    command: str,
    args: Sequence[str] = (),
    env: Optional[Mapping[str, str]] = None,
    description: str = "",
    oauth_config: Optional[Mapping[str, Any]] = None,
) -> str:
    """Add a server entry to the gateway file, atomically.

    The config is chosen by ``config_id`` and/or ``config_name``; with neither, the one
    named ``default_config``, or the only config in the file. A file (and its directory,
    mode 0700) that does not exist yet is created; a file without any config gets a new
    ``default_config`` under a new uuid4 id, unless a config id or another name was
    asked for. The whole resulting document is validated against the schema before
    anything is written. A symlinked file is updated at its target. The read, the change
    and the write happen under an exclusive lock on ``<file>.lock``, so concurrent calls
    (other processes too) all land; when root runs it, the file keeps its owner and group.

    Args:
        path: the gateway file; None means the default (see :func:`load_gateway_config`).
        config_name: the ``mcp_config_name`` of the config to add to.
        config_id: the key under ``mcp_configs`` of the config to add to.
        server_name: the new server's name, unique within its config.
        command: the program to launch.
        args: its arguments, a list of strings (a single string is refused).
        env: environment variables for it.
        description: free text.
        oauth_config: the ``oauth_config`` block, stored as given (``${ENV}``
            references are kept, not resolved).

    Returns:
        The id of the config the server was added to.

    Raises:
        ConfigError: the file cannot be read or parsed, the config is unknown or
            ambiguous, the server name is taken, an argument has the wrong type, the
            result breaks the schema, or the file cannot be written. In every case the
            file on disk is unchanged.
    """
    target, source = resolve_config_path(path)
    target = os.path.realpath(target)
    with _locked(target):
        return _add_server_locked(
            target, source, config_name, config_id, server_name, command, args, env, description, oauth_config
        )


def _add_server_locked(
    target: str,
    source: str,
    config_name: Optional[str],
    config_id: Optional[str],
    server_name: str,
    command: str,
    args: Sequence[str],
    env: Optional[Mapping[str, str]],
    description: str,
    oauth_config: Optional[Mapping[str, Any]],
) -> str:
    """:func:`add_server` once the lock is held: read, change, validate, write."""
    if os.path.exists(target):
        document = _read_document(target, source)
    else:
        document = {}
    _check_layout(document, target)
    where = " in %s" % target
    if document.get("mcp_configs") is None:
        document["mcp_configs"] = {}
    configs = document["mcp_configs"]
    if not configs:
        if config_id is not None or config_name not in (None, _DEFAULT_CONFIG_NAME):
            asked = "id %r" % config_id if config_id is not None else "name %r" % config_name
            raise ConfigError(
                "the file has no configs yet, so none has the %s%s" % (asked, where),
                _join("$", "mcp_configs"),
                "leave out config_id and config_name to create %r" % _DEFAULT_CONFIG_NAME,
            )
        chosen = str(uuid.uuid4())
        configs[chosen] = {"mcp_config_name": _DEFAULT_CONFIG_NAME, "mcp_config": []}
    else:
        if config_id is None and config_name is None:
            config_name = _default_config_name(configs, where)
        selected = _select_configs(configs, config_id, config_name, where)
        if len(selected) > 1:
            raise ConfigError(
                "%d configs are named %r%s: %s"
                % (len(selected), config_name, where, ", ".join(_describe_config(configs, c) for c in selected)),
                _join("$", "mcp_configs"),
                "pass config_id to choose one",
            )
        chosen = selected[0]
    if configs[chosen].get("mcp_config") is None:
        configs[chosen]["mcp_config"] = []
    servers = configs[chosen]["mcp_config"]
    entries_path = _join(_join(_join("$", "mcp_configs"), chosen), "mcp_config")
    new_path = "%s[%d]" % (entries_path, len(servers))
    entry = _new_entry(new_path, server_name, command, args, env, description, oauth_config)
    for index, existing in enumerate(servers):
        if existing.get("server_name") == server_name:
            raise ConfigError(
                "config %s already has a server named %r%s" % (_describe_config(configs, chosen), server_name, where),
                "%s[%d].server_name" % (entries_path, index),
                "choose another server name, or remove the existing entry first",
            )
    servers.append(entry)
    _validate(document, target)
    try:
        _write_json_atomic(target, document, mode=_FILE_MODE, backup=True)
    except OSError as error:
        raise ConfigError(
            "cannot write %s: %s" % (target, error.strerror or error),
            "$",
            "check that its directory exists and is writable and the disk is not full; the file was left unchanged",
        ) from error
    _log.info("added server %r to config %s in %s", server_name, _describe_config(configs, chosen), target)
    return chosen


def _write_json_atomic(path: str, document: Any, mode: int = _FILE_MODE, backup: bool = True) -> None:
    """Replace ``path`` with ``document`` as JSON, all or nothing.

    The document is serialised before the disk is touched. The bytes go to a temporary
    file in the same directory that is flushed and fsynced, then moved over ``path``
    with ``os.replace`` and the directory is fsynced, so a crash leaves the old file or
    the new one, never a mix. The new file has exactly ``mode`` (tightening a looser
    mode the old file had). With ``backup`` the old contents are first saved the same
    way to ``path + ".bak"``, with the same mode. A missing directory is created with
    mode 0700.

    Args:
        path: the file to replace or create.
        document: any JSON-serialisable value.
        mode: permission bits of the written file and its backup.
        backup: whether to keep the previous contents in ``<path>.bak``.

    Raises:
        TypeError, ValueError: the document is not JSON-serialisable; nothing was written.
        OSError: the disk refused; ``path`` is unchanged and no temporary file remains.
    """
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    _make_directory(directory)
    owner = _owner_to_keep(path)
    if backup:
        try:
            with open(path, "rb") as handle:
                previous: Optional[bytes] = handle.read()
        except FileNotFoundError:
            previous = None
        if previous is not None:
            replace_bytes(path + _BACKUP_SUFFIX, previous, mode, owner)
    replace_bytes(path, data, mode, owner)
    _fsync_directory(directory)


def _make_directory(directory: str) -> None:
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=_DIR_MODE, exist_ok=True)
        os.chmod(directory, _DIR_MODE)


def _owner_to_keep(path: str) -> Optional[Tuple[int, int]]:
    """The ``(uid, gid)`` a rewritten ``path`` must keep, or None when ours already.

    When root edits a user's gateway file, the new file would otherwise belong to root
    and, being mode 0600, no longer be readable by the gateway. Only root can give a
    file away, so others keep their own ownership (the rename needs write access to
    the directory anyway).
    """
    if os.name != "posix" or os.geteuid() != 0:
        return None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = os.stat(os.path.dirname(path))  # a new file belongs to the directory's owner
    if (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid()):
        return None
    return info.st_uid, info.st_gid


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path + LOCK_SUFFIX`` (created 0600) for the block.

    A lock file, not the gateway file itself: every write replaces the gateway file's
    inode, so a lock on it would guard a file that is no longer there. The lock file is
    never removed (removing it would let two writers lock two different files). Where
    ``fcntl`` does not exist (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path + _LOCK_SUFFIX
    try:
        _make_directory(os.path.dirname(lock_path))
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), _FILE_MODE)
    except OSError as error:
        raise ConfigError(
            "cannot open the lock file %s: %s" % (lock_path, error.strerror or error),
            "$",
            "check that the file's directory exists and is writable by this user; the file was left unchanged",
        ) from None
    try:
        owner = _owner_to_keep(path)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])  # so the gateway's own user can still lock it
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also if the process dies
        yield
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; a no-op where directories cannot be opened (Windows)."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse; the rename still happened
        pass
    finally:
        os.close(fd)


def _read_document(path: str, source: str) -> Any:
    """Read and parse the gateway file, turning every failure into a ConfigError."""
    document, failure = read_json_file(path)
    if failure is None:
        return document
    origin = "" if source == "argument" else " (from %s)" % source
    hint = failure.hint
    if failure.problem == "does not exist":
        hint = "create it with `oauth-gateway config add-server`, or point %s at the right file" % CONFIG_PATH_ENV
    raise ConfigError("config file %s%s %s" % (path, origin, failure.problem), "$", hint)


def _validate(document: Any, path: str) -> None:
    """Raise the schema's best problem as a ConfigError that also names the file."""
    problems = schema.validate_config(document)
    if not problems:
        return
    try:
        schema.raise_for_problems(problems)
    except ConfigError as error:
        hint = error.hint
        if len(problems) > 1:
            more = "%d problems in all; `oauth-gateway validate %s` lists them" % (len(problems), path)
            hint = "%s; %s" % (hint, more) if hint else more
        raise ConfigError("%s (in %s)" % (error.problem, path), error.json_path, hint) from None
    raise ConfigError("breaks the schema (in %s)" % path, "$", None)  # pragma: no cover - defensive


def _warn_if_exposed(path: str) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:  # pragma: no cover - it was just read
        return
    if mode & 0o077:
        _log.warning(
            "config file %s is accessible to group or others (mode %04o) and may hold client secrets; "
            "run chmod 600 on it",
            path,
            mode,
        )


def _listing(names: Iterable[Any]) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += " and %d more" % (len(names) - _MAX_LISTED)
    return shown


def _describe_config(configs: Mapping[str, Any], config_id: str) -> str:
    name = configs[config_id].get("mcp_config_name")
    return "%r (id %s)" % (name, config_id) if name is not None else "id %s" % config_id


def _check_layout(document: Any, path: Optional[str]) -> None:
    """Check the parts of the layout this module reads, whatever the schema allows.

    Raises:
        ConfigError: naming the first misshapen part.
    """
    where = " (in %s)" % path if path else ""
    if not isinstance(document, dict):
        raise ConfigError(
            "the file must hold a JSON object, got %s%s" % (_describe(document), where),
            "$",
            'start from {"mcp_configs": {}}',
        )
    configs = document.get("mcp_configs")
    configs_path = _join("$", "mcp_configs")
    if configs is None:
        return
    if not isinstance(configs, dict):
        raise ConfigError(
            "must be an object of configs, got %s%s" % (_describe(configs), where),
            configs_path,
            'write it as {"<config id>": {"mcp_config_name": ..., "mcp_config": [...]}}',
        )
    for config_id, config in configs.items():
        config_path = _join(configs_path, config_id)
        if not isinstance(config, dict):
            raise ConfigError(
                "must be an object, got %s%s" % (_describe(config), where),
                config_path,
                'write it as {"mcp_config_name": ..., "mcp_config": [...]}',
            )
        entries = config.get("mcp_config")
        if entries is None:
            continue
        entries_path = _join(config_path, "mcp_config")
        if not isinstance(entries, list):
            raise ConfigError(
                "must be an array of servers, got %s%s" % (_describe(entries), where),
                entries_path,
                "write it as [{...}, {...}]",
            )
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ConfigError(
                    "must be an object, got %s%s" % (_describe(entry), where),
                    "%s[%d]" % (entries_path, index),
                    'write it as {"server_name": ..., "config": {...}}',
                )


def _default_config_name(configs: Mapping[str, Any], where: str) -> str:
    """The config to use when the caller named none: default_config, or the only one."""
    names = [config.get("mcp_config_name") for config in configs.values()]
    if _DEFAULT_CONFIG_NAME in names:
        return _DEFAULT_CONFIG_NAME
    if len(names) != 1:
        raise ConfigError(
            "no config given, and none is named %r%s" % (_DEFAULT_CONFIG_NAME, where),
            _join("$", "mcp_configs"),
            "pass config_name, one of: %s" % _listing(sorted(str(n) for n in names)),
        )
    only = names[0]
    if not isinstance(only, str):
        raise ConfigError(
            "no config given, and the only config has no mcp_config_name%s" % where,
            _join("$", "mcp_configs"),
            "pass config_id=%r" % next(iter(configs)),
        )
    return only


def _select_configs(
    configs: Mapping[str, Any], config_id: Optional[str], config_name: Optional[str], where: str
) -> List[str]:
    """Return the ids of the configs matching ``config_id`` and ``config_name`` (all when both are None)."""
    configs_path = _join("$", "mcp_configs")
    if config_id is not None:
        if config_id not in configs:
            ids = sorted(configs)
            close = difflib.get_close_matches(str(config_id), ids, n=1)
            hint = "did you mean %r? " % close[0] if close else ""
            existing = ", ".join(_describe_config(configs, c) for c in ids[:_MAX_LISTED]) or "none"
            raise ConfigError(
                "no config with id %r%s" % (config_id, where),
                configs_path,
                "%sexisting configs: %s" % (hint, existing),
            )
        actual = configs[config_id].get("mcp_config_name")
        if config_name is not None and actual != config_name:
            raise ConfigError(
                "config id %s is named %r, not %r%s" % (config_id, actual, config_name, where),
                _join(_join(configs_path, config_id), "mcp_config_name"),
                "pass only one of config_id and config_name, or make them agree",
            )
        return [config_id]
    if config_name is None:
        return list(configs)
    selected = [cid for cid, config in configs.items() if config.get("mcp_config_name") == config_name]
    if not selected:
        names = sorted({str(c.get("mcp_config_name")) for c in configs.values()})
        close = difflib.get_close_matches(str(config_name), names, n=1)
        hint = "did you mean %r? " % close[0] if close else ""
        raise ConfigError(
            "no config named %r%s" % (config_name, where),
            configs_path,
            "%sexisting config names: %s" % (hint, _listing(names) or "none"),
        )
    return selected


def _new_entry(
    entry_path: str,
    server_name: Any,
    command: Any,
    args: Any,
    env: Any,
    description: Any,
    oauth_config: Any,
) -> Dict[str, Any]:
    """Check add_server's arguments and build the entry (JSON paths point at the new entry)."""
    if not isinstance(server_name, str) or not server_name.strip():
        raise ConfigError(
            "must be a non-empty string, got %s" % _describe(server_name),
            _join(entry_path, "server_name"),
            "give the server a name, like oauth-api",
        )
    config_path = _join(entry_path, "config")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(
            "must be a non-empty string, got %s" % _describe(command),
            _join(config_path, "command"),
            'give the program to run, like "npx"',
        )
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise ConfigError(
            "must be a list of strings, got %s" % _describe(args),
            _join(config_path, "args"),
            'pass each argument separately: ["-y", "mcp-remote", "https://..."]',
        )
    for index, arg in enumerate(args):
        if not isinstance(arg, str):
            raise ConfigError(
                "must be a string, got %s" % _describe(arg),
                "%s[%d]" % (_join(config_path, "args"), index),
                "pass every argument as a string",
            )
    env_path = _join(config_path, "env")
    if env is not None and not isinstance(env, Mapping):
        raise ConfigError(
            "must be an object of strings, got %s" % _describe(env), env_path, 'pass a mapping like {"NAME": "value"}'
        )
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            # The type only: environment values are often secrets.
            raise ConfigError(
                "must be a string, got %s" % _describe(value),
                _join(env_path, str(name)),
                "pass every name and value as a string",
            )
    if not isinstance(description, str):
        raise ConfigError(
            "must be a string, got %s" % _describe(description), _join(entry_path, "description"), "pass plain text"
        )
    if oauth_config is not None and not isinstance(oauth_config, Mapping):
        raise ConfigError(
            "must be an object, got %s" % _describe(oauth_config),
            _join(entry_path, "oauth_config"),
            'pass a mapping like {"enabled": true, ...}',
        )
    entry: Dict[str, Any] = {
        "server_name": server_name,
        "description": description,
        "config": {"command": command, "args": list(args), "env": dict(env or {})},
    }
    if oauth_config is not None:
        entry["oauth_config"] = copy.deepcopy(dict(oauth_config))
    return entry
