"""The ``oauth-gateway`` command line. ``__main__.py`` and the console script call :func:`main`.

Each subcommand is one ``_cmd_<name>(subparsers)`` function that adds its parser and
sets ``run``; listing it in :data:`_COMMANDS` is all it takes to add another. A run
function takes ``(args, out, err)`` and returns the exit code: 0 success, 1 the input
is invalid, 2 usage or an unreadable file. Checking, the result and reporting stay
apart, as in check-jsonschema: :func:`check_file` builds a :class:`FileResult`,
the ``_report_*`` functions print it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import IO, Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import schema
from ._helpers import literal_secret_warnings, parse_json_text, read_json_file
from ._version import __version__

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

_PROG = "oauth-gateway"


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

    def _print_message(self, message: str, file: Optional[IO[str]] = None) -> None:
        if message:
            if file is sys.stderr or file is self._streams[1]:
                self._streams[1].write(message)
            else:
                self._streams[0].write(message)

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            self._streams[1].write(message)
        raise _ParserExit(status)


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
        unreadable file.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
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
    return run(args, out, err)


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
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=functools.partial(_Parser, streams=streams)
    )
    for command in _COMMANDS:
        command(subparsers)
    return parser


def _add_command(subparsers: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """Add one subcommand whose ``--help`` ends with ``example``."""
    return subparsers.add_parser(name, help=summary, description=summary, epilog="example:\n" + example)


# --- validate --------------------------------------------------------------------------


def _cmd_validate(subparsers: Any) -> None:
    parser = _add_command(
        subparsers,
        "validate",
        "Check gateway files or bare oauth_config files against the bundled schema.",
        "  %(prog)s validate ~/.enkrypt/enkrypt_mcp_config.json\n"
        "  %(prog)s validate --output github --strict configs/*.json\n\n"
        "exit status: 0 valid, 1 invalid (or warnings with --strict), 2 usage or unreadable file" % {"prog": _PROG},
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON file to check")
    parser.add_argument(
        "--output",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json (a list of problems) or github (workflow annotations)",
    )
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) on warnings too")
    parser.set_defaults(run=_run_validate)


class FileResult(NamedTuple):
    """What checking one file found: problems, or why it could not be read."""

    file: str
    problems: List[schema.Problem]
    failure: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None


def check_file(path: str) -> FileResult:
    """Check one gateway file as ``oauth-gateway validate`` does: read it, validate it, warn.

    Returns:
        The problems found (errors first, then warnings), or why the file could not be read.
    """
    document, failure = read_json_file(path)
    if failure is not None:
        return FileResult(path, [], failure.problem, failure.line, failure.column)
    warnings = [
        schema.Problem(json_path, message, hint, "warning")
        for json_path, message, hint in literal_secret_warnings(path, schema.literal_secret_paths(document))
    ]
    problems = schema.validate_config(document) + warnings
    problems.sort(key=lambda problem: problem.severity != "error")
    return FileResult(path, problems)


def _run_validate(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    results = [check_file(path) for path in args.files]
    reporter = {"text": _report_text, "json": _report_json, "github": _report_github}[args.output]
    reporter(results, out, err, args.strict)
    if any(result.failure for result in results):
        return EXIT_USAGE
    failing = ("error", "warning") if args.strict else ("error",)
    if any(problem.severity in failing for result in results for problem in result.problems):
        return EXIT_INVALID
    return EXIT_OK


def _report_failures(results: List[FileResult], err: IO[str]) -> None:
    for result in results:
        if result.failure:
            err.write("%s: error: %s %s\n" % (_PROG, result.file, result.failure))


def _report_text(results: List[FileResult], out: IO[str], err: IO[str], strict: bool) -> None:
    _report_failures(results, err)
    for result in results:
        if result.failure:
            continue
        for problem in result.problems:
            label = "warning: " if problem.severity == "warning" else ""
            text = "%s::%s: %s%s" % (result.file, problem.json_path, label, problem.message)
            out.write(text + ("; %s\n" % problem.hint if problem.hint else "\n"))
        if not any(p.severity == "error" or strict for p in result.problems):
            out.write("%s: ok\n" % result.file)


def _report_json(results: List[FileResult], out: IO[str], err: IO[str], strict: bool) -> None:
    _report_failures(results, err)
    rows = [
        {
            "file": result.file,
            "json_path": problem.json_path,
            "message": problem.message,
            "hint": problem.hint,
            "severity": problem.severity,
        }
        for result in results
        for problem in result.problems
    ]
    out.write(json.dumps(rows, indent=2) + "\n")


def _report_github(results: List[FileResult], out: IO[str], err: IO[str], strict: bool) -> None:
    _report_failures(results, err)
    for result in results:
        if result.failure:
            place = "file=%s" % _escape_property(result.file)
            if result.line is not None:
                place += ",line=%d,col=%d" % (result.line, result.column or 1)
            out.write(
                "::error %s,title=%s::%s\n" % (place, _PROG, _escape_data("%s %s" % (result.file, result.failure)))
            )
        for problem in result.problems:
            level = "error" if problem.severity == "error" or strict else "warning"
            out.write(
                "::%s file=%s,title=%s::%s\n"
                % (level, _escape_property(result.file), _PROG, _escape_data(str(problem)))
            )


def _escape_data(text: str) -> str:
    """Escape a GitHub workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """Escape a GitHub workflow command's property value (file name)."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


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
    parser.add_argument("--config-id", metavar="ID", help="the config id under mcp_configs")
    parser.add_argument("--config-name", metavar="NAME", help="the config's mcp_config_name")


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


def _load_server(args: argparse.Namespace):
    from .gateway import load_gateway_config

    gateway = load_gateway_config(args.config)
    config_id, _entry = gateway.find_server(args.server, config_id=args.config_id, config_name=args.config_name)
    return gateway, config_id, gateway.oauth_config(args.server, config_id=config_id)


def _with_token_errors(run: Callable[[argparse.Namespace, IO[str], IO[str]], int]):
    """Turn library errors into one stderr line and an exit code (secrets never reach them)."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
        from .exceptions import ConfigError, OAuthGatewayError

        try:
            return run(args, out, err)
        except ConfigError as error:
            err.write("%s: error: %s\n" % (_PROG, error))
            return EXIT_USAGE
        except OAuthGatewayError as error:
            err.write("%s: error: %s\n" % (_PROG, error))
            return EXIT_INVALID

    return wrapper


@_with_token_errors
def _run_token(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import time

    from .manager import TokenManager

    gateway, config_id, config = _load_server(args)
    with TokenManager(cache=gateway.token_cache()) as manager:
        if args.refresh:
            token = manager.refresh(args.server, config, config_id)
        else:
            token = manager.get_token(args.server, config, config_id)
        remaining = token.expires_at - time.monotonic()
    if args.show:
        out.write(token.access_token + "\n")
        return EXIT_OK
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + remaining))
    if args.output == "json":
        row = {
            "server": args.server,
            "config_id": config_id,
            "token": token.masked(),
            "token_type": token.token_type,
            "expires_in": int(remaining),
            "expires_at": expires,
            "scopes": sorted(token.scopes),
        }
        out.write(json.dumps(row, indent=2) + "\n")
        return EXIT_OK
    out.write("server:     %s (config %s)\n" % (args.server, config_id))
    out.write("token:      %s  (--show prints it)\n" % token.masked())
    out.write("type:       %s\n" % token.token_type)
    out.write("expires in: %ds (%s)\n" % (remaining, expires))
    out.write("scopes:     %s\n" % (token.scope or "(none requested)"))
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
    from .manager import TokenManager

    if not args.token_stdin:
        err.write(
            "%s: error: give the token on standard input with --token-stdin, e.g. "
            "`%s token %s --show | %s revoke %s --token-stdin`\n" % (_PROG, _PROG, args.server, _PROG, args.server)
        )
        return EXIT_USAGE
    token = sys.stdin.readline().strip()
    if not token:
        err.write("%s: error: standard input held no token\n" % _PROG)
        return EXIT_USAGE
    gateway, config_id, config = _load_server(args)
    hint = None if args.token_type_hint == "none" else args.token_type_hint
    with TokenManager(cache=gateway.token_cache()) as manager:
        manager.revoke(args.server, config, config_id, token=token, token_type_hint=hint)
    out.write("revoked the token for %s (config %s)\n" % (args.server, config_id))
    return EXIT_OK


# --- config add-server -----------------------------------------------------------------


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
        parser_class=functools.partial(_Parser, streams=parser._streams),  # type: ignore[attr-defined]
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
    add.add_argument("--config-name", metavar="NAME", help="the config's mcp_config_name (default: default_config)")
    add.add_argument("--config-id", metavar="ID", help="the config id under mcp_configs")
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
        "  %(prog)s demo" % {"prog": _PROG},
    )
    parser.add_argument("--pause", type=float, default=0.0, metavar="SECONDS", help="pause between steps")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ._demo import run_demo

    return run_demo(out, step_delay=max(0.0, args.pause))


#: The subcommands, in ``--help`` order. Add one function per new subcommand here.
_COMMANDS: Tuple[Callable[[Any], None], ...] = (
    _cmd_validate,
    _cmd_schema,
    _cmd_token,
    _cmd_revoke,
    _cmd_config,
    _cmd_demo,
)
