"""The ``oauth-gateway`` command line. ``__main__.py`` and the console script call :func:`main`.

Each subcommand is one ``_cmd_<name>(subparsers)`` function that adds its parser and
sets ``run``; listing it in :data:`_COMMANDS` is all it takes to add another. A run
function takes ``(args, out, err)`` and returns the exit code: 0 success, 1 the input
is invalid, 2 usage or an unreadable file. Checking, the result and reporting stay
apart, as in check-jsonschema: :func:`check_file` builds a :class:`FileResult`,
the reporters of :mod:`oauth_gateway._cli_reporters` print it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Type,
    cast,
)

from . import schema
from ._checkfile import STDIN, check_file
from ._cli_progress import RetryProgress, gave_up_suffix, isatty
from ._cli_reporters import PROG as _PROG
from ._cli_reporters import report_github, report_json, report_text
from ._helpers import parse_json_text, read_json_file, redact_url
from ._printable import PrintableStream, printable
from ._version import __version__

__all__ = ("main",)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
#: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from .config import OAuthConfig
    from .gateway import GatewayConfig
    from .manager import TokenManager


_Run = Callable[[argparse.Namespace, IO[str], IO[str]], int]


class _ParserExit(Exception):
    """Raised instead of SystemExit so that only ``__main__`` ends the process."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that writes to the given streams and never calls sys.exit."""

    def __init__(self, *args: Any, streams: Tuple[IO[str], IO[str]], **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._streams = streams

    def _print_message(self, message: str, file: Optional[SupportsWrite[str]] = None) -> None:
        if message:
            if file is sys.stderr or file is self._streams[1]:
                self._streams[1].write(message)
            else:
                self._streams[0].write(message)

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if message:
            self._streams[1].write(message)
        raise _ParserExit(status)


def _parser_class(streams: Tuple[IO[str], IO[str]]) -> Type[_Parser]:
    """Return a :class:`_Parser` subclass for subcommands, writing to ``streams`` too."""

    class _SubcommandParser(_Parser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, streams=streams, **kwargs)

    return _SubcommandParser


def main(
    argv: Optional[Sequence[str]] = None, stdout: Optional[IO[str]] = None, stderr: Optional[IO[str]] = None
) -> int:
    """Run the command line and return its exit code; never calls ``sys.exit``.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        stdout: where results go (default ``sys.stdout``).
        stderr: where usage and file errors go (default ``sys.stderr``).

    Returns:
        0 success, 1 invalid input (or warnings with ``--strict``), 2 usage error or
        unreadable file, 130 interrupted (Ctrl-C).
    """
    # Every line is made printable: values from servers and files never reach the terminal raw.
    out = cast(IO[str], PrintableStream(sys.stdout if stdout is None else stdout))
    err = cast(IO[str], PrintableStream(sys.stderr if stderr is None else stderr))
    try:
        parser = build_parser(out, err)
        try:
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except _ParserExit as stop:
            return stop.status
        run: Optional[Callable[[argparse.Namespace, IO[str], IO[str]], int]] = getattr(args, "run", None)
        if run is None:
            err.write(parser.format_usage())
            err.write("%s: error: choose a command; `%s --help` lists them\n" % (_PROG, _PROG))
            return EXIT_USAGE
        with _library_logs(err, verbosity(args)):
            return run(args, out, err)
    except KeyboardInterrupt:
        err.write("\n%s: interrupted\n" % _PROG)
        return EXIT_INTERRUPTED


def verbosity(args: argparse.Namespace) -> int:
    """Return -1 with ``-q``, 0 by default, and the number of ``-v`` given."""
    if getattr(args, "quiet", False):
        return -1
    return int(getattr(args, "verbose", 0) or 0)


class _library_logs:
    """With ``-v``, connect the ``oauth_gateway`` loggers to stderr (INFO; DEBUG with ``-vv``)."""

    def __init__(self, err: IO[str], level: int):
        self._handler: Optional[logging.Handler] = None
        self._err = err
        self._level = level
        self._logger = logging.getLogger("oauth_gateway")
        self._saved = self._logger.level

    def __enter__(self) -> None:
        if self._level <= 0:
            return
        self._handler = logging.StreamHandler(self._err)
        self._handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG if self._level > 1 else logging.INFO)

    def __exit__(self, *exc_info: Any) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._logger.setLevel(self._saved)


def build_parser(out: Optional[IO[str]] = None, err: Optional[IO[str]] = None) -> argparse.ArgumentParser:
    """Return the ``oauth-gateway`` argument parser (the documentation's CLI reference walks it).

    Args:
        out: where ``--help`` and ``--version`` write; standard output by default.
        err: where usage errors write; standard error by default.
    """
    streams = (out or sys.stdout, err or sys.stderr)
    parser = _Parser(
        prog=_PROG,
        description="OAuth 2.0 / 2.1 client-credentials tokens for MCP gateways.",
        epilog="example:\n  %s validate ~/.enkrypt/enkrypt_mcp_config.json" % _PROG,
        streams=streams,
    )
    parser.add_argument("--version", action="version", version="%s %s" % (_PROG, __version__))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_parser_class(streams))
    for command in _COMMANDS:
        command(subparsers)
    return parser


def _common_options() -> argparse.ArgumentParser:
    """``-v`` and ``-q``, which every command takes (absent flags set nothing, so nesting keeps them)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="say more: show retries and the library's log on stderr (-vv: debug)",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="say less: only errors and the results asked for",
    )
    return common


def _add_command(subparsers: Any, name: str, summary: str, example: str) -> _Parser:
    """Add one subcommand, with ``-v``/``-q``, whose ``--help`` ends with ``example``."""
    parser: _Parser = subparsers.add_parser(
        name, help=summary, description=summary, epilog="example:\n" + example, parents=[_common_options()]
    )
    return parser


# --- validate --------------------------------------------------------------------------


def _cmd_validate(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "validate",
        "Check gateway files or bare oauth_config files against the bundled schema.",
        "  %(prog)s validate ~/.enkrypt/enkrypt_mcp_config.json\n"
        "  %(prog)s validate --output github --strict configs/*.json\n\n"
        "  %(prog)s schema --name gateway-config | %(prog)s validate -\n\n"
        "exit status: 0 valid, 1 invalid (or warnings with --strict), 2 usage or unreadable file" % {"prog": _PROG},
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON file to check; - reads standard input")
    parser.add_argument(
        "--output",
        choices=("text", "json", "github"),
        default="text",
        help='text (default), json (a list with one {"file", "status", "problems", "error"} object per file) '
        "or github (workflow annotations)",
    )
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) on warnings too")
    parser.add_argument(
        "--load-providers",
        action="store_true",
        help="import module:attribute token providers to check their options (runs their code; "
        "without it they are reported as not checked)",
    )
    parser.set_defaults(run=_run_validate)


def _run_validate(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.files.count(STDIN) > 1:
        err.write("%s: error: - (standard input) can be given once\n" % _PROG)
        return EXIT_USAGE
    results = [check_file(path, load_providers=args.load_providers) for path in args.files]
    reporter = {"text": report_text, "json": report_json, "github": report_github}[args.output]
    reporter(results, out, err, args.strict, verbosity(args) < 0)
    if any(result.failure for result in results):
        return EXIT_USAGE
    failing = ("error", "warning") if args.strict else ("error",)
    if any(problem.severity in failing for result in results for problem in result.problems):
        return EXIT_INVALID
    return EXIT_OK


# --- schema ----------------------------------------------------------------------------


def _cmd_schema(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "schema",
        "Print a bundled JSON Schema, or its file path.",
        "  %(prog)s schema --name gateway-config > gateway-config.schema.json\n"
        '  check-jsonschema --schemafile "$(%(prog)s schema --path)" oauth_config.json' % {"prog": _PROG},
    )
    parser.add_argument(
        "--name",
        choices=schema.SCHEMA_NAMES,
        default="oauth-config",
        help="which schema (default: oauth-config)",
    )
    parser.add_argument("--path", action="store_true", help="print the schema's file path instead")
    parser.set_defaults(run=_run_schema)


def _run_schema(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        if args.path:
            out.write(schema.schema_path(args.name) + "\n")
        else:
            out.write(json.dumps(schema.load_schema(args.name), indent=2) + "\n")
    except OSError as error:
        err.write("%s: error: %s\n" % (_PROG, error))
        return EXIT_USAGE
    return EXIT_OK


# --- token and revoke ------------------------------------------------------------------


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="SERVER", help="the server_name in the gateway file")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="gateway file (default: $OAUTH_GATEWAY_CONFIG or ~/.enkrypt/enkrypt_mcp_config.json)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config-id", metavar="ID", help="the config id under mcp_configs")
    which.add_argument("--config-name", metavar="NAME", help="the config's mcp_config_name")


def _cmd_token(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "token",
        "Get a token for a server in the gateway file and show it masked.",
        "  %(prog)s token oauth-api --config-name default_config\n"
        '  curl -H "Authorization: Bearer $(%(prog)s token oauth-api --show)" https://api.example.com/\n\n'
        "exit status: 0 token obtained, 1 the authorization server refused or failed, 2 usage or config error"
        % {"prog": _PROG},
    )
    _add_server_arguments(parser)
    parser.add_argument("--show", action="store_true", help="print the whole token, and only it (for scripts)")
    parser.add_argument("--refresh", action="store_true", help="fetch a new token even when one is cached")
    parser.add_argument("--output", choices=("text", "json"), default="text", help="text (default) or json")
    parser.set_defaults(run=_run_token)


def _load_server(args: argparse.Namespace) -> Tuple[GatewayConfig, str, OAuthConfig]:
    from .gateway import load_gateway_config

    gateway = load_gateway_config(args.config)
    config_id, _entry = gateway.find_server(args.server, config_id=args.config_id, config_name=args.config_name)
    return gateway, config_id, gateway.oauth_config(args.server, config_id=config_id)


def _with_token_errors(run: _Run) -> _Run:
    """Turn library errors into one stderr line and an exit code (secrets never reach them).

    The run function finds a :class:`RetryProgress` in ``args.progress`` for its manager.
    """

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
        from .exceptions import ConfigError, OAuthGatewayError

        level = verbosity(args)
        args.progress = RetryProgress(err, level > 0 or (level == 0 and isatty(err)), sleep=_wait)
        try:
            return run(args, out, err)
        except ConfigError as error:
            err.write("%s: error: %s\n" % (_PROG, error))
            return EXIT_USAGE
        except OAuthGatewayError as error:
            args.progress.flush()
            message = str(error)
            message += gave_up_suffix(message, args.progress.attempts)
            err.write("%s: error: %s\n" % (_PROG, message))
            return EXIT_INVALID

    return wrapper


def _wait(seconds: float) -> None:
    """The commands' wait between retries (a module function, so tests can step past it)."""
    time.sleep(seconds)


def _manager(gateway: GatewayConfig, progress: RetryProgress) -> TokenManager:
    from .manager import TokenManager

    return TokenManager(cache=gateway.token_cache(), on_retry=progress.on_retry, sleep=progress.sleep)


@_with_token_errors
def _run_token(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .tokens import describe, format_description

    gateway, config_id, config = _load_server(args)
    args.progress.url = config.token_url
    with _manager(gateway, args.progress) as manager:
        if args.refresh:
            token = manager.refresh(args.server, config, config_id)
        else:
            token = manager.get_token(args.server, config, config_id)
    if args.show:
        out.write(token.access_token + "\n")
        return EXIT_OK
    fields = describe(token, args.server, config_id)
    if args.output == "json":
        out.write(json.dumps(fields, indent=2) + "\n")
        return EXIT_OK
    out.write(format_description(fields) + "\n")
    if verbosity(args) >= 0:
        err.write("%s: the token is masked; --show prints it alone, for scripts\n" % _PROG)
    return EXIT_OK


def _cmd_revoke(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "revoke",
        "Revoke a token at the server's OAUTH_REVOCATION_URL (RFC 7009).",
        "  %(prog)s token oauth-api --show | %(prog)s revoke oauth-api --token-stdin\n\n"
        "The token is read from standard input, never from the command line, where `ps` would show it.\n"
        "exit status: 0 revoked, 1 the server refused or nothing to revoke, 2 usage or config error" % {"prog": _PROG},
    )
    _add_server_arguments(parser)
    parser.add_argument(
        "--token-stdin", action="store_true", help="read the token to revoke from standard input (required)"
    )
    parser.add_argument(
        "--token-type-hint",
        choices=("access_token", "refresh_token", "none"),
        default="access_token",
        help="sent as token_type_hint (default access_token; none sends none)",
    )
    parser.set_defaults(run=_run_revoke)


@_with_token_errors
def _run_revoke(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if not args.token_stdin:
        err.write(
            "%s: error: give the token on standard input with --token-stdin, e.g. "
            "`%s token %s --show | %s revoke %s --token-stdin`\n" % (_PROG, _PROG, args.server, _PROG, args.server)
        )
        return EXIT_USAGE
    token = _read_token(err)
    if not token:
        err.write("%s: error: standard input held no token\n" % _PROG)
        return EXIT_USAGE
    gateway, config_id, config = _load_server(args)
    args.progress.url = config.revocation_url
    hint = None if args.token_type_hint == "none" else args.token_type_hint
    with _manager(gateway, args.progress) as manager:
        manager.revoke(args.server, config, config_id, token=token, token_type_hint=hint)
    out.write("revoked the token for %s (config %s)\n" % (args.server, config_id))
    return EXIT_OK


def _read_token(err: IO[str]) -> str:
    """The token from standard input; on a terminal, asked for without echo (getpass)."""
    if isatty(sys.stdin):
        import getpass

        return getpass.getpass("Token to revoke (input hidden): ").strip()  # prompts on the terminal
    return sys.stdin.readline().strip()


# --- config add-server -----------------------------------------------------------------


# --- discover --------------------------------------------------------------------------


def _cmd_discover(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "discover",
        "Discover where an MCP server's tokens come from (RFC 9728, RFC 8414, OpenID discovery) "
        "and print the oauth_config block to paste.",
        "  %(prog)s discover https://mcp.example.com/mcp\n"
        "  %(prog)s discover --issuer https://idp.example.com/realms/mcp --output json\n\n"
        "exit status: 0 found, 1 a discovery step failed (the message names the URL and the step), 2 usage"
        % {"prog": _PROG},
    )
    parser.add_argument("url", metavar="URL", nargs="?", help="the MCP server's URL")
    parser.add_argument("--issuer", metavar="ISSUER", help="the authorization server's issuer (pins it with URL)")
    parser.add_argument(
        "--ca-bundle", metavar="FILE", help="CA bundle that verifies the servers (default: the system's)"
    )
    parser.add_argument("--output", choices=("text", "json"), default="text", help="text (default) or json")
    parser.set_defaults(run=_run_discover)


@_with_token_errors
def _run_discover(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from urllib.parse import urlsplit

    from ._http import is_loopback_host
    from .client import TokenClient
    from .config import OAuthConfig
    from .discovery import SIGNING_METHODS, Discoverer

    if not args.url and not args.issuer:
        err.write("%s discover: error: give the server URL, --issuer ISSUER, or both\n" % _PROG)
        return EXIT_USAGE
    start = args.url or args.issuer
    # Plain http only for a loopback URL given on the command line (local tests).
    plain_loopback = urlsplit(start).scheme == "http" and is_loopback_host(urlsplit(start).hostname)
    settings = OAuthConfig.from_dict(
        {"OAUTH_CA_BUNDLE_PATH": args.ca_bundle or "", "OAUTH_ENFORCE_HTTPS": not plain_loopback}
    )
    progress = args.progress
    client = TokenClient(on_retry=progress.on_retry, sleep=progress.sleep)
    fetch = client.discovery_fetch(settings)

    def fetch_and_tell(
        method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], deadline: Optional[float] = None
    ) -> Any:
        # Each fetch is one URL with its own attempts: the retry lines and the final
        # "gave up after N attempts" are about the URL that is being fetched.
        progress.url, progress.attempts = url, 1
        progress.announce("fetching %s" % redact_url(url))
        return fetch(method, url, headers, body, deadline)

    try:
        discoverer = Discoverer(fetch_and_tell, enforce_https=not plain_loopback)
        result = discoverer.discover(resource_url=args.url or None, issuer=args.issuer or None)
    finally:
        client.close()
    server = result.authorization_server
    block = {"enabled": True, "OAUTH_CLIENT_ID": "<client id>", "OAUTH_CLIENT_SECRET": "${CLIENT_SECRET}"}
    if result.resource:
        block["OAUTH_RESOURCE"] = args.url
    block["OAUTH_ISSUER"] = server.issuer
    if plain_loopback:
        block["OAUTH_ENFORCE_HTTPS"] = False
    found = {
        "resource": result.resource,
        "resource_metadata": result.resource_metadata_url,
        "authorization_server": server.metadata_url,
        "issuer": server.issuer,
        "token_endpoint": server.token_endpoint,
        "revocation_endpoint": server.revocation_endpoint,
        "token_endpoint_auth_methods": list(server.token_endpoint_auth_methods_supported),
        "jwt_auth_methods": [m for m in server.token_endpoint_auth_methods_supported if m in SIGNING_METHODS],
        "token_endpoint_auth_signing_algs": list(server.token_endpoint_auth_signing_alg_values_supported),
        "mtls_endpoint_aliases": dict(server.mtls_endpoint_aliases),
        "scopes": list(result.scopes) or list(server.scopes_supported),
        "oauth_config": block,
    }
    if args.output == "json":
        out.write(json.dumps(found, indent=2) + "\n")
        return EXIT_OK
    scopes = list(result.scopes) or list(server.scopes_supported)
    rows = [
        ("resource", result.resource or "(none: discovered from the issuer)"),
        ("resource metadata", result.resource_metadata_url or "-"),
        ("authorization server", server.metadata_url),
        ("issuer", server.issuer),
        ("token endpoint", server.token_endpoint),
        ("revocation endpoint", server.revocation_endpoint or "(none)"),
        ("auth methods", ", ".join(server.token_endpoint_auth_methods_supported) or "(none)"),
        ("signing algs", ", ".join(server.token_endpoint_auth_signing_alg_values_supported) or "(none)"),
        ("scopes", " ".join(scopes) or "(none)"),
    ]
    for label, value in rows:  # published by the servers: one line each, odd values as repr
        out.write("%-21s %s\n" % (label + ":", printable(value)))
    out.write("\noauth_config to paste (fill in the client id and the secret, or a private key):\n")
    out.write(json.dumps({"oauth_config": block}, indent=2) + "\n")
    return EXIT_OK


def _cmd_config(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "config",
        "Change the gateway file.",
        "  %(prog)s config add-server --config-name default_config --server-name oauth-api \\\n"
        '      --server-command npx --args="-y,mcp-remote,https://api.example.com/mcp" --oauth-json oauth.json'
        % {"prog": _PROG},
    )
    parser.set_defaults(run=functools.partial(_run_missing_subcommand, parser))
    commands = parser.add_subparsers(
        title="config commands",
        metavar="COMMAND",
        parser_class=_parser_class(parser._streams),
    )
    add = _add_command(
        commands,
        "add-server",
        "Add a server entry to the gateway file (atomic write, mode 0600, previous file kept as .bak).",
        "  %(prog)s config add-server --config-name default_config --server-name oauth-api \\\n"
        '      --server-command npx --args="-y,mcp-remote,https://api.example.com/mcp" \\\n'
        '      --description "OAuth-protected remote server" --oauth-json oauth.json' % {"prog": _PROG},
    )
    add.add_argument("--config", metavar="FILE", help="gateway file (default as for `token`)")
    which = add.add_mutually_exclusive_group()
    which.add_argument("--config-name", metavar="NAME", help="the config's mcp_config_name (default: default_config)")
    which.add_argument("--config-id", metavar="ID", help="the config id under mcp_configs")
    add.add_argument("--server-name", required=True, metavar="NAME", help="the new server's name")
    add.add_argument("--server-command", required=True, metavar="COMMAND", help="the program to launch")
    add.add_argument("--args", default="", metavar="A,B,C", help="its arguments, comma-separated")
    add.add_argument(
        "--env",
        metavar="JSON",
        help='environment as a JSON object, e.g. \'{"KEY": "value"}\'; it shows in the process list, '
        "so give secrets with --env-file instead",
    )
    add.add_argument(
        "--env-file",
        metavar="PATH",
        help="environment from a file of KEY=VALUE lines (blank lines and lines starting with # are "
        "skipped; the value is everything after the first =, taken as is); - reads the lines from "
        "standard input. Keeps secret values out of the process list; added to --env, a name may "
        "not be given twice",
    )
    add.add_argument("--description", default="", help="free text")
    add.add_argument(
        "--oauth-json", metavar="FILE", help="a JSON file holding the oauth_config block (checked before writing)"
    )
    add.set_defaults(run=_run_add_server)


def _run_missing_subcommand(
    parser: argparse.ArgumentParser, args: argparse.Namespace, out: IO[str], err: IO[str]
) -> int:
    parser.print_usage(err)
    err.write("%s: error: choose a command; `%s --help` lists them\n" % (_PROG, parser.prog))
    return EXIT_USAGE


def _run_add_server(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .exceptions import ConfigError
    from .gateway import add_server

    env = None
    if args.env:
        env, failure = parse_json_text(args.env)
        if failure is not None:
            # The parser's message and position only: the value may hold a secret.
            err.write("%s: error: --env %s; %s\n" % (_PROG, failure.problem, failure.hint))
            return EXIT_USAGE
    if args.env_file:
        try:
            from_file = _read_env_file(args.env_file)
        except ValueError as error:
            err.write("%s: error: --env-file %s\n" % (_PROG, error))
            return EXIT_USAGE
        if env is not None and not isinstance(env, dict):
            err.write("%s: error: --env must be a JSON object to be combined with --env-file\n" % _PROG)
            return EXIT_USAGE
        twice = sorted(set(env or {}) & set(from_file))
        if twice:
            err.write("%s: error: --env and --env-file both set %s; give each name once\n" % (_PROG, ", ".join(twice)))
            return EXIT_USAGE
        env = dict(env or {}, **from_file)
    oauth_config = None
    if args.oauth_json:
        result = check_file(args.oauth_json)
        if result.failure:
            err.write("%s: error: %s %s\n" % (_PROG, args.oauth_json, result.failure))
            return EXIT_USAGE
        errors = [problem for problem in result.problems if problem.severity == "error"]
        for problem in errors:  # named by the file they are in, not by the gateway file
            text = "%s: error: --oauth-json %s::%s: %s" % (_PROG, args.oauth_json, problem.json_path, problem.message)
            err.write(text + ("; %s\n" % problem.hint if problem.hint else "\n"))
        if errors:
            return EXIT_INVALID
        oauth_config, failure = read_json_file(args.oauth_json)
        if failure is not None:  # pragma: no cover - changed since check_file read it
            err.write("%s: error: %s %s\n" % (_PROG, args.oauth_json, failure.problem))
            return EXIT_USAGE
        if isinstance(oauth_config, dict):
            oauth_config.pop("$schema", None)  # allowed in a bare block's file, not inside the gateway file
    try:
        config_id = add_server(
            args.config,
            config_name=args.config_name,
            config_id=args.config_id,
            server_name=args.server_name,
            command=args.server_command,
            args=[part for part in args.args.split(",") if part] if args.args else [],
            env=env,
            description=args.description,
            oauth_config=oauth_config,
        )
    except ConfigError as error:
        err.write("%s: error: %s\n" % (_PROG, error))
        return EXIT_INVALID
    out.write("added server %r to config %s\n" % (args.server_name, config_id))
    return EXIT_OK


#: The largest --env-file read (it holds a few variables).
_MAX_ENV_FILE_BYTES = 1024 * 1024


def _read_env_file(path: str) -> Dict[str, str]:
    """Read ``KEY=VALUE`` lines from ``path`` (``-``: standard input).

    Raises:
        ValueError: a message that names the file and the line, never a value.
    """
    where = "(standard input)" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read(_MAX_ENV_FILE_BYTES + 1)
        else:
            # Not read_regular_file: a pipe from process substitution, <(...), is welcome here.
            with open(path, encoding="utf-8-sig") as handle:
                text = handle.read(_MAX_ENV_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            "%s cannot be read (%s)" % (where, getattr(error, "strerror", None) or error.__class__.__name__)
        )
    if len(text) > _MAX_ENV_FILE_BYTES:
        raise ValueError("%s is larger than %d bytes" % (where, _MAX_ENV_FILE_BYTES))
    env: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError("%s line %d: expected KEY=VALUE" % (where, number))
        if name in env:
            raise ValueError("%s line %d: %s is set twice" % (where, number, name))
        env[name] = value
    return env


# --- demo ------------------------------------------------------------------------------


def _cmd_demo(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "demo",
        "Walk through validation, tokens, caching, refresh, injection, revocation and metrics "
        "against an authorization server started on 127.0.0.1.",
        "  %(prog)s demo\n"
        "  %(prog)s demo --serve --write demo.json   # keep the server running, save its gateway file"
        % {"prog": _PROG},
    )
    parser.add_argument("--pause", type=float, default=0.0, metavar="SECONDS", help="pause between steps")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="instead of the walk-through, keep the demo server running until Ctrl-C and print a gateway file "
        "and the export lines the documentation's examples read (exit status 0 on Ctrl-C)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="with --serve: the port on 127.0.0.1 (default: 8400, so the export lines stay right; 0: any free one)",
    )
    parser.add_argument("--write", metavar="FILE", help="with --serve: save the gateway file to FILE (mode 0600)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ._demo import SERVE_PORT, run_demo, serve_demo

    if args.serve:
        port = SERVE_PORT if args.port is None else args.port
        try:
            return serve_demo(out, port=port, write=args.write)
        except OSError as error:  # the port is taken, or the file cannot be written
            if args.write and error.filename:
                err.write("%s demo: error: cannot write %s: %s\n" % (_PROG, args.write, error.strerror))
            else:
                err.write(
                    "%s demo: error: cannot listen on 127.0.0.1:%d (%s); is another demo running? "
                    "Stop it, or pass --port N (--port 0: any free port)\n" % (_PROG, port, error.strerror or error)
                )
            return EXIT_USAGE
    return run_demo(out, step_delay=max(0.0, args.pause))


#: The subcommands, in ``--help`` order. Add one function per new subcommand here.
_COMMANDS: Tuple[Callable[[Any], None], ...] = (
    _cmd_validate,
    _cmd_schema,
    _cmd_token,
    _cmd_revoke,
    _cmd_discover,
    _cmd_config,
    _cmd_demo,
)
