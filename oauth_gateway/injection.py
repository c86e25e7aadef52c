"""Put an access token into an MCP server launch spec: a header for remote, env for local.

A *server entry* is one item of ``mcp_config`` in the gateway file::

    {"server_name": "oauth-api",
     "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api/mcp"], "env": {}},
     "oauth_config": {"enabled": true, "is_remote": true, ...}}

Remote servers run through ``mcp-remote`` get ``--header Authorization:${AUTH_HEADER}``
in their arguments and the token only in ``config.env["AUTH_HEADER"]``: ``mcp-remote``
expands ``${VAR}`` from its own environment, so the token never shows up in ``ps``
output or shell history. Local servers get the token in a fixed set of environment
variables.

``curl`` is remote too, but expands no variables in ``-H``: it would send the literal
text ``${AUTH_HEADER}`` and no credentials. :func:`inject_token` therefore refuses a
curl server, and :func:`injected_entry`, a context manager, gives curl
``-H @<file>``: the header in a 0600 file in a fresh 0700 directory, both removed when
the block ends (keep the block open while curl runs).

:func:`inject_token` and :func:`is_remote_server` are pure: the entry passed in is
never modified, and they are safe to call from any thread. The only shared state is
the set of server names whose auto-detection was already logged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ._http import header_value_problem, remote_program, remote_url
from ._jsonpath import describe as _describe
from ._jsonpath import join as _join
from .exceptions import ConfigError
from .tokens import Token

__all__ = ("LOCAL_ENV_VARS", "inject_token", "is_remote_server")

_log = logging.getLogger(__name__)

#: Variable that carries ``"<type> <token>"`` (remote servers, and local ones too).
_ENV_AUTH_HEADER = "AUTH_HEADER"
#: Variables set for local (stdio) servers, the seed gateway's names.
_ENV_ENKRYPT_ACCESS_TOKEN = "ENKRYPT_ACCESS_TOKEN"
_ENV_AUTHORIZATION = "AUTHORIZATION"
_ENV_OAUTH_ACCESS_TOKEN = "OAUTH_ACCESS_TOKEN"
_ENV_OAUTH_TOKEN_TYPE = "OAUTH_TOKEN_TYPE"
_ENV_HTTP_HEADER_AUTHORIZATION = "HTTP_HEADER_Authorization"
_ENV_HTTP_HEADER_AUTHORIZATION_UPPER = "HTTP_HEADER_AUTHORIZATION"

#: Local variables and the token attribute each one receives: ``access_token`` is the
#: bare token, ``authorization`` is ``"Bearer <token>"``, ``token_type`` is ``"Bearer"``.
LOCAL_ENV_VARS: Tuple[Tuple[str, str], ...] = (
    (_ENV_ENKRYPT_ACCESS_TOKEN, "access_token"),
    (_ENV_AUTHORIZATION, "authorization"),
    (_ENV_OAUTH_ACCESS_TOKEN, "access_token"),
    (_ENV_OAUTH_TOKEN_TYPE, "token_type"),
    (_ENV_HTTP_HEADER_AUTHORIZATION, "authorization"),
    (_ENV_HTTP_HEADER_AUTHORIZATION_UPPER, "authorization"),
    (_ENV_AUTH_HEADER, "authorization"),
)

#: The argument that introduces a header for mcp-remote.
_HEADER_OPTION = "--header"
#: The header argument given to remote servers; mcp-remote fills in ``${AUTH_HEADER}``.
#: No space after the colon: some MCP clients on Windows split arguments at spaces.
_REMOTE_HEADER_VALUE = "Authorization:${%s}" % _ENV_AUTH_HEADER

#: curl's options that add a header (``-H @file`` reads headers from a file).
_CURL_HEADER_OPTIONS = ("-H", "--header")
#: Name of the header file :func:`injected_entry` writes for curl.
_CURL_HEADER_FILE = "authorization.header"

# Server names whose auto-detection has been logged; guarded by _LOGGED_LOCK.
_LOGGED: Set[str] = set()
_LOGGED_LOCK = threading.Lock()


def is_remote_server(server_entry: Any, *, json_path: str = "$") -> bool:
    """Return True when the server is reached over HTTP and takes the token as a header.

    ``oauth_config.is_remote`` decides when it is ``true`` or ``false``. Otherwise
    (missing, null, or not a boolean) the server is remote when its command or one of
    its arguments is ``mcp-remote`` (also ``mcp-remote@<version>``, a path ending in
    ``/mcp-remote``, or a Windows ``mcp-remote.cmd``) or ``curl``. ``npx`` or ``uvx``
    alone does not make a server remote, and neither does an ``http(s)://`` URL given
    to any other program: such a server gets environment variables, which every program
    tolerates, instead of a ``--header`` argument it might reject. The first
    auto-detection for each server name is logged at INFO with a hint to set
    ``is_remote``.

    Args:
        server_entry: one ``mcp_config`` item.
        json_path: where the entry sits in its file, used in error messages.

    Returns:
        True for a remote server, False for a local one.

    Raises:
        ConfigError: the entry is malformed (see :func:`inject_token`).
    """
    command, args, _env = _check_entry(server_entry, json_path)
    explicit = _explicit_is_remote(server_entry)
    if explicit is not None:
        return explicit
    program = remote_program(command, args)
    _log_detection(server_entry, program)
    return program is not None


def _remote_server_url(server_entry: Any, *, json_path: str = "$") -> Optional[str]:
    """Return the URL a remote server is reached at: the ``mcp-remote`` (or ``curl``) URL argument.

    For a server entry whose ``oauth_config`` has no ``OAUTH_TOKEN_URL``, ``OAUTH_ISSUER``
    or ``OAUTH_RESOURCE``, this URL is the resource that discovery starts from.

    Args:
        server_entry: one ``mcp_config`` item.
        json_path: where the entry sits in its file, used in error messages.

    Returns:
        The URL, or None for a local server or a remote one without a URL argument.

    Raises:
        ConfigError: the entry is malformed (see :func:`inject_token`).
    """
    command, args, _env = _check_entry(server_entry, json_path)
    if _explicit_is_remote(server_entry) is False:
        return None
    return remote_url(command, args)


def entry_oauth_block(server_entry: Any) -> Dict[str, Any]:
    """Return a copy of the entry's ``oauth_config`` with the discovery resource filled in.

    When the block has no ``OAUTH_TOKEN_URL``, ``OAUTH_ISSUER`` or ``OAUTH_RESOURCE`` and
    the server is remote (see :func:`remote_server_url`), ``OAUTH_RESOURCE`` becomes the
    server's URL, so the token endpoint is discovered from the server itself. Any other
    block is returned as a plain copy.
    """
    block = server_entry.get("oauth_config") if isinstance(server_entry, dict) else None
    if not isinstance(block, dict):
        return block  # type: ignore[return-value]  # the caller reports the malformed block
    block = copy.deepcopy(block)
    if not any(block.get(key) for key in ("OAUTH_TOKEN_URL", "OAUTH_ISSUER", "OAUTH_RESOURCE")):
        try:
            url = _remote_server_url(server_entry)
        except ConfigError:
            url = None
        if url:
            block["OAUTH_RESOURCE"] = url
    return block


def inject_token(server_entry: Any, token: Token, *, json_path: str = "$") -> Dict[str, Any]:
    """Return a copy of ``server_entry`` set up to pass ``token`` to the server.

    Remote servers (see :func:`is_remote_server`): every ``Authorization`` header
    argument already present is removed (``--header "Authorization: x"``,
    ``--header=Authorization:x``, any case), other ``--header`` arguments are kept, and
    ``--header Authorization:${AUTH_HEADER}`` is appended; ``config.env["AUTH_HEADER"]``
    becomes ``"Bearer <token>"``. The token never appears in the arguments.

    Local servers: the variables in :data:`LOCAL_ENV_VARS` are set in ``config.env``,
    replacing any stale values already there (``OAUTH_TOKEN_TYPE`` says ``DPoP`` for a
    DPoP-bound token). Arguments are left alone.

    A DPoP token (or an entry whose ``oauth_config`` has ``OAUTH_DPOP`` on) is never
    injected into a remote server: ``mcp-remote`` sends one fixed header, while DPoP
    needs a new proof for every request.

    ``args`` and ``env`` may be missing or null (an empty list or object is written).

    Args:
        server_entry: one ``mcp_config`` item; never modified.
        token: the token to pass; ``Token.authorization`` is the header value.
        json_path: where the entry sits in its file, used in error messages.

    Returns:
        A new entry (a deep copy) with the token injected.

    Raises:
        TypeError: ``token`` is not a :class:`~oauth_gateway.tokens.Token`.
        ConfigError: the entry is not an object, has no ``config`` object, its
            ``config.command`` is not a string, ``config.args`` is not a list of
            strings, ``config.env`` is not an object of strings, or ``oauth_config``
            is present but not an object; or the server is remote and uses DPoP.
    """
    if not isinstance(token, Token):
        # Only the type: the value may well be a raw token string.
        raise TypeError("token must be an oauth_gateway.Token, got %s" % type(token).__name__)
    remote = is_remote_server(server_entry, json_path=json_path)
    if remote:
        _refuse_dpop(server_entry, token, json_path)
    if remote and _runs_curl(server_entry):
        raise ConfigError(
            "runs curl, which cannot expand ${%s} from its environment: it would send no credentials"
            % _ENV_AUTH_HEADER,
            _join(json_path, "config"),
            "launch it inside `with injected_entry(entry, token) as launch:` (curl gets -H @file, a private "
            "file removed afterwards), or run the server through mcp-remote",
        )
    return _inject(server_entry, token, remote)


def _inject(server_entry: Dict[str, Any], token: Token, remote: bool) -> Dict[str, Any]:
    entry: Dict[str, Any] = copy.deepcopy(server_entry)
    config = entry["config"]
    args = list(config.get("args") or [])
    env = dict(config.get("env") or {})
    if remote:
        args = _without_authorization_headers(args)
        args.extend([_HEADER_OPTION, _REMOTE_HEADER_VALUE])
        env[_ENV_AUTH_HEADER] = token.authorization
    else:
        for name, attribute in LOCAL_ENV_VARS:
            env[name] = getattr(token, attribute)
    config["args"] = args
    config["env"] = env
    return entry


def _refuse_dpop(entry: Any, token: Token, json_path: str) -> None:
    """A remote server (mcp-remote, curl) sends one fixed header: a DPoP token cannot go there."""
    block = entry.get("oauth_config") if isinstance(entry, dict) else None
    if token.token_type.lower() == "dpop" or (isinstance(block, dict) and block.get("OAUTH_DPOP") is True):
        raise ConfigError(
            "DPoP cannot be used with a remote server: mcp-remote sends one fixed Authorization header, "
            "but DPoP needs a new proof, signed by a key held in this process, for every request",
            _join(_join(json_path, "oauth_config"), "OAUTH_DPOP"),
            "set OAUTH_DPOP to false for this server, or call it from Python with "
            "session.auth = manager.auth(server_name, config), which sends a proof with each request",
        )


@contextlib.contextmanager
def _injected_entry(
    server_entry: Any, token: Token, *, json_path: str = "$", directory: Optional[str] = None
) -> Iterator[Dict[str, Any]]:
    """Give the entry with ``token`` injected for the duration of a ``with`` block.

    For every server but curl this is :func:`inject_token`. A curl server (remote, and
    curl in its command or arguments) gets ``-H @<file>`` in its arguments instead,
    after every ``Authorization`` header argument is removed (``-H``, ``--header``,
    attached or not): the file holds ``Authorization: <type> <token>``, is created with
    mode 0600 (``O_EXCL``, never through a symlink) in a new 0700 directory, and both
    are removed when the block ends, also on an exception. The token is in neither the
    arguments nor the environment. curl reads the file when it starts, so launch it
    inside the block::

        with injected_entry(entry, token) as launch:
            subprocess.run([launch["config"]["command"], *launch["config"]["args"]], ...)

    Args:
        server_entry: one ``mcp_config`` item; never modified.
        token: the token to pass.
        json_path: where the entry sits in its file, used in error messages.
        directory: where the private directory is made (default: the system's temporary
            directory).

    Yields:
        A new entry (a deep copy) with the token injected.

    Raises:
        TypeError: ``token`` is not a :class:`~oauth_gateway.tokens.Token`.
        ValueError: the token's header value holds a line break or a control character (it would add headers).
        ConfigError: the entry is malformed (see :func:`inject_token`).
    """
    if not isinstance(token, Token):
        raise TypeError("token must be an oauth_gateway.Token, got %s" % type(token).__name__)
    remote = is_remote_server(server_entry, json_path=json_path)
    if remote:
        _refuse_dpop(server_entry, token, json_path)
    if not (remote and _runs_curl(server_entry)):
        yield _inject(server_entry, token, remote)
        return
    problem = header_value_problem(token.authorization)
    if problem is not None:
        raise ValueError("the token's Authorization value %s; it cannot be written as one header" % problem)
    header = token.authorization
    private = tempfile.mkdtemp(prefix="oauth-gateway-", dir=directory)  # mode 0700
    try:
        path = os.path.join(private, _CURL_HEADER_FILE)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("Authorization: %s\n" % header)
        entry = copy.deepcopy(server_entry)
        config = entry["config"]
        args = _without_authorization_headers(list(config.get("args") or []), _CURL_HEADER_OPTIONS)
        config["args"] = args + ["-H", "@" + path]
        config["env"] = dict(config.get("env") or {})
        yield entry
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _runs_curl(entry: Dict[str, Any]) -> bool:
    config = entry["config"]
    return remote_program(config["command"], config.get("args")) == "curl"


def _check_entry(entry: Any, json_path: str) -> Tuple[str, List[str], Dict[str, str]]:
    """Return ``(command, args, env)`` of a well-formed entry, or raise ConfigError.

    Messages name the field and the type found, never a value (env values are secrets).
    """
    if not isinstance(entry, dict):
        raise ConfigError(
            "a server entry must be an object, got %s" % _describe(entry),
            json_path,
            'write it as {"server_name": ..., "config": {"command": ..., "args": [...]}}',
        )
    oauth = entry.get("oauth_config")
    if oauth is not None and not isinstance(oauth, dict):
        raise ConfigError(
            "must be an object, got %s" % _describe(oauth),
            _join(json_path, "oauth_config"),
            'write it as {"enabled": true, "is_remote": true, ...} or remove it',
        )
    config_path = _join(json_path, "config")
    config = entry.get("config")
    if not isinstance(config, dict):
        raise ConfigError(
            "is missing" if config is None else "must be an object, got %s" % _describe(config),
            config_path,
            'give the launch spec as {"command": "npx", "args": [...], "env": {...}}',
        )
    command = config.get("command")
    if not isinstance(command, str):
        raise ConfigError(
            "is missing" if command is None else "must be a string, got %s" % _describe(command),
            _join(config_path, "command"),
            'set it to the program to run, like "npx" or "python"',
        )
    args = config.get("args")
    args_path = _join(config_path, "args")
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ConfigError(
            "must be an array of strings, got %s" % _describe(args),
            args_path,
            'write each argument as its own string: ["-y", "mcp-remote", "https://..."]',
        )
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            raise ConfigError(
                "must be a string, got %s" % _describe(arg),
                "%s[%d]" % (args_path, i),
                "quote the argument in the JSON file",
            )
    env = config.get("env")
    env_path = _join(config_path, "env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise ConfigError(
            "must be an object of strings, got %s" % _describe(env),
            env_path,
            'write it as {"NAME": "value"}',
        )
    for name, value in env.items():
        if not isinstance(name, str):
            raise ConfigError("names must be strings, got %s" % _describe(name), env_path, "quote the name")
        if not isinstance(value, str):
            raise ConfigError(
                "must be a string, got %s" % _describe(value),
                _join(env_path, name),
                "quote the value in the JSON file",
            )
    return command, args, env


def _explicit_is_remote(entry: Dict[str, Any]) -> Optional[bool]:
    oauth = entry.get("oauth_config") or {}
    value = oauth.get("is_remote")
    return value if isinstance(value, bool) else None


def _log_detection(entry: Dict[str, Any], program: Optional[str]) -> None:
    """Log, once per server name, how the server was classified and how to pin it."""
    name = entry.get("server_name")
    key = name if isinstance(name, str) else "<unnamed>"
    with _LOGGED_LOCK:
        if key in _LOGGED:
            return
        _LOGGED.add(key)
    value = (entry.get("oauth_config") or {}).get("is_remote")
    if value is None:
        why = "no is_remote in oauth_config"
    else:
        why = "oauth_config.is_remote is %s, not a boolean" % _describe(value)
    if program is not None:
        verdict = "remote (runs %s); the token goes into the Authorization header" % program
    else:
        verdict = "local (no mcp-remote or curl in command or args); the token goes into environment variables"
    _log.info(
        "server %r: %s, auto-detected as %s; set oauth_config.is_remote to true or false to make this explicit",
        key,
        why,
        verdict,
    )


def _header_name(value: str) -> str:
    return value.split(":", 1)[0].strip().lower()


def _without_authorization_headers(args: List[str], options: Sequence[str] = (_HEADER_OPTION,)) -> List[str]:
    """Drop every ``Authorization`` header argument (all forms); keep other headers.

    ``options`` are the header options: ``--header`` for mcp-remote, also ``-H`` for
    curl. ``--header X``, ``--header=X`` and, for a short option, ``-HX`` are recognised.
    A trailing header option with no value is dropped too: it is not a header, and left
    in place it would swallow the option appended after it.
    """
    kept: List[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in options:
            if i + 1 >= len(args):
                break
            if _header_name(args[i + 1]) == "authorization":
                i += 2
                continue
            kept.extend(args[i : i + 2])
            i += 2
            continue
        attached = _attached_header(arg, options)
        if attached is not None and _header_name(attached) == "authorization":
            i += 1
            continue
        kept.append(arg)
        i += 1
    return kept


def _attached_header(arg: str, options: Sequence[str]) -> Optional[str]:
    """The header in ``--header=X`` or ``-HX``, else None."""
    for option in options:
        if option.startswith("--") and arg.startswith(option + "="):
            return arg[len(option) + 1 :]
        if not option.startswith("--") and arg.startswith(option) and len(arg) > len(option):
            return arg[len(option) :]
    return None
