"""The bundled JSON Schemas, and every problem they find worded for a person.

``schemas/oauth-config.schema.json`` describes one ``oauth_config`` block and
``schemas/gateway-config.schema.json`` a whole gateway file; the schemas carry every
rule, so check-jsonschema and editors enforce the same rules as this module. Their
``x-message``, ``x-hint``, ``x-priority`` and ``x-at`` annotations (ignored by
validators) tell this module how to word a problem, which of several problems at one
JSON path to keep, and where to report an error about a whole object.

Nothing here echoes the value of a secret: values under keys naming a secret,
password or token (URLs excepted), and values of custom headers, additional form
fields and environment variables, are described by their type only.

All functions are thread-safe; schemas and compiled validators are loaded lazily and
cached.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ._helpers import redact_url
from ._http import remote_url
from ._jsonpath import format_path
from .exceptions import ConfigError

__all__ = ("Problem", "load_schema", "validate_config")

#: Names accepted by :func:`schema_path` and :func:`load_schema`.
SCHEMA_NAMES = ("oauth-config", "gateway-config")

#: Keys whose presence at the top of a document makes it a whole gateway file.
_GATEWAY_KEYS = ("mcp_configs", "common_mcp_gateway_config")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Where the schemas pretend to live for jsonschema's RefResolver; never fetched.
_RESOLVER_BASE = "file:///oauth-gateway/schemas/"

# Problems of several errors at one path: the highest priority wins.
_DEFAULT_PRIORITY = {"type": 100, "required": 90, "additionalProperties": 90}
_OTHER_PRIORITY = 50

_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # linear: no two ways to match one text
_SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "APIKEY", "API_KEY", "CREDENTIAL")
# Containers whose values may be credentials whatever the key (headers, form fields, env).
_SECRET_CONTAINERS = ("OAUTH_CUSTOM_HEADERS", "OAUTH_ADDITIONAL_PARAMS", "ENV", "HEADERS")
_BOOLEAN_WORDS = ("true", "false", "True", "False", "TRUE", "FALSE", "yes", "no", "null", "None")
_MAX_SHOWN = 80

_TYPE_NAMES = {
    "string": "a string",
    "boolean": "a boolean (true or false without quotes)",
    "integer": "a whole number",
    "number": "a number",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


class Problem(NamedTuple):
    """One thing wrong with a configuration document.

    Attributes:
        json_path: where, like ``$.mcp_configs.abc.mcp_config[0].oauth_config.OAUTH_TOKEN_URL``.
        message: what is wrong; never holds a secret.
        hint: how to fix it, or None.
        severity: ``"error"`` or ``"warning"``.
    """

    json_path: str
    message: str
    hint: Optional[str] = None
    severity: str = "error"

    def __str__(self) -> str:
        text = "%s: %s" % (self.json_path, self.message)
        if self.hint:
            text = "%s; %s" % (text, self.hint)
        return text


def schema_path(name: str = "oauth-config") -> str:
    """Return the file path of a bundled schema.

    An installed wheel carries the schemas in ``oauth_gateway/schemas/``; a source
    tree has them in ``schemas/`` at the repository root. The first one found wins.

    Args:
        name: ``"oauth-config"`` or ``"gateway-config"``.

    Returns:
        The absolute path of ``<name>.schema.json``.

    Raises:
        ValueError: ``name`` is not a bundled schema.
        FileNotFoundError: the package was installed without its schemas.
    """
    if name not in SCHEMA_NAMES:
        raise ValueError("unknown schema %r; use one of %s" % (name, ", ".join(repr(n) for n in SCHEMA_NAMES)))
    filename = "%s.schema.json" % name
    candidates = [
        os.path.join(_PACKAGE_DIR, "schemas", filename),
        os.path.join(os.path.dirname(_PACKAGE_DIR), "schemas", filename),
    ]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        "bundled schema %s not found in %s; reinstall oauth-gateway"
        % (filename, " or ".join(os.path.dirname(c) for c in candidates))
    )


@functools.lru_cache(maxsize=None)
def load_schema(name: str = "oauth-config") -> Dict[str, Any]:
    """Return a bundled schema as a dict, read once and cached. Do not mutate it.

    Args:
        name: ``"oauth-config"`` or ``"gateway-config"``.

    Raises:
        ValueError: ``name`` is not a bundled schema.
        FileNotFoundError: the package was installed without its schemas.
    """
    with open(schema_path(name), encoding="utf-8") as handle:
        document: Dict[str, Any] = json.load(handle)
    return document


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    """Return a cached Draft7Validator for a bundled schema, with both schemas resolvable.

    The gateway schema refers to ``oauth-config.schema.json`` relative to itself, so each
    schema is registered under its file name (and under its ``$id``, if any).
    """
    from jsonschema import Draft7Validator  # imported here to keep ``import oauth_gateway`` cheap

    schema = load_schema(name)
    files = {"%s.schema.json" % other: load_schema(other) for other in SCHEMA_NAMES}
    ids = {doc["$id"]: doc for doc in files.values() if isinstance(doc.get("$id"), str)}
    try:  # jsonschema >= 4.18 resolves through a referencing.Registry
        from referencing import Registry
        from referencing.jsonschema import DRAFT7
    except ImportError:
        pass
    else:
        resources = [(uri, DRAFT7.create_resource(doc)) for uri, doc in list(files.items()) + list(ids.items())]
        try:
            return Draft7Validator(schema, registry=Registry().with_resources(resources))
        except TypeError:  # referencing installed beside an older jsonschema
            pass
    from jsonschema import RefResolver

    # RefResolver joins a relative $ref with the current scope, which is a bare
    # "#/definitions/..." inside the gateway schema, so it needs a hierarchical base.
    store = dict(ids)
    store.update((_RESOLVER_BASE + filename, doc) for filename, doc in files.items())
    resolver = RefResolver(_RESOLVER_BASE + "%s.schema.json" % name, schema, store=store)
    return Draft7Validator(schema, resolver=resolver)


def validate_config(document: Any, load_providers: bool = False) -> List[Problem]:
    """Return every problem in a gateway file or a bare ``oauth_config`` block.

    A document holding ``mcp_configs`` or ``common_mcp_gateway_config`` is checked as a
    whole gateway file, anything else as one ``oauth_config`` block. Checking runs no
    code the document names: a ``module:attribute`` provider is a warning ("not checked
    (code)") unless ``load_providers`` is true.

    Args:
        document: the parsed JSON document.
        load_providers: import ``module:attribute`` providers to check their options.

    Returns:
        Errors only, at most one per JSON path, sorted by path; ``[]`` when valid.
    """
    if isinstance(document, dict) and any(key in document for key in _GATEWAY_KEYS):
        blocks = _gateway_blocks(document)
        problems = _with_endpoint_problems(_check(document, "gateway-config", "$"), blocks)
        return _with_provider_problems(problems, blocks, load_providers)
    return validate_oauth_block(document, load_providers=load_providers)


def _surely_valid(document: Any, name: str) -> bool:
    """True when the quick check proves ``document`` valid, so jsonschema need not even be imported."""
    from ._fastschema import is_valid

    files = {"%s.schema.json" % other: load_schema(other) for other in SCHEMA_NAMES}
    return is_valid(document, load_schema(name), files)


def validate_oauth_block(block: Any, json_path: str = "$", load_providers: bool = False) -> List[Problem]:
    """Return every problem in one ``oauth_config`` block.

    Args:
        block: the block, like ``server_entry["oauth_config"]``.
        json_path: the block's own path, prefixed to every problem's path.
        load_providers: import a ``module:attribute`` provider (else a warning says it was not).

    Returns:
        Errors only, at most one per JSON path, sorted by path; ``[]`` when valid.
    """
    blocks = [(block, json_path, None)]
    problems = _with_endpoint_problems(_check(block, "oauth-config", json_path), blocks)
    return _with_provider_problems(problems, blocks, load_providers)


def validate_fragment(
    instance: Any, fragment: Dict[str, Any], json_path: str, secret_keys: Iterable[str] = ()
) -> List[Problem]:
    """Return every problem of ``instance`` against a draft-07 schema fragment, worded like the bundled schemas'.

    For the schema fragments of token providers (``OAUTH_PROVIDER_OPTIONS``); the same
    ``x-message``, ``x-hint`` and ``x-priority`` annotations apply.

    Args:
        instance: the value to check, like the options object.
        fragment: the schema.
        json_path: the value's own path, prefixed to every problem's path.
        secret_keys: top-level keys whose values are never shown in a message.

    Returns:
        Errors only, at most one per JSON path, sorted by path; ``[]`` when valid.
    """
    from ._fastschema import is_valid

    if is_valid(instance, fragment, {}):
        return []
    from jsonschema import Draft7Validator

    hidden = frozenset(secret_keys)
    best: Dict[str, Tuple[int, int, Tuple[Any, ...], Problem]] = {}
    for order, error in enumerate(Draft7Validator(fragment).iter_errors(instance)):
        for segments, priority, problem in _problems_from_error(error, json_path, hidden):
            kept = best.get(problem.json_path)
            if kept is None or priority > kept[0]:
                best[problem.json_path] = (priority, order, segments, problem)
    ranked = sorted(best.values(), key=lambda item: (_sort_key(item[2]), item[1]))
    return [item[3] for item in ranked]


def _with_provider_problems(
    problems: List[Problem], blocks: Iterable[Tuple[Any, str, Optional[str]]], load_providers: bool = False
) -> List[Problem]:
    """Add the problems of ``OAUTH_PROVIDER`` and ``OAUTH_PROVIDER_OPTIONS`` of each block that names them.

    An unknown provider, and options its schema fragment refuses, with their JSON paths.
    """
    added: List[Problem] = []
    for block, path, _remote in blocks:
        if isinstance(block, dict) and ("OAUTH_PROVIDER" in block or "OAUTH_PROVIDER_OPTIONS" in block):
            from .providers import provider_problems  # loaded only for blocks that name a provider

            added += provider_problems(block, path, load_providers)
    if not added:
        return problems
    return sorted(problems + added, key=lambda problem: _path_order(problem.json_path))


# --- the token endpoint: configured, or discoverable -------------------------------------

_ENDPOINT_KEYS = ("OAUTH_TOKEN_URL", "OAUTH_ISSUER", "OAUTH_RESOURCE")


def _gateway_blocks(document: Dict[str, Any]) -> List[Tuple[Any, str, Optional[str]]]:
    """Every server's ``oauth_config`` with its JSON path and its remote URL (or None)."""
    found: List[Tuple[Any, str, Optional[str]]] = []
    configs = document.get("mcp_configs")
    for config_id, config_set in configs.items() if isinstance(configs, dict) else ():
        servers = config_set.get("mcp_config") if isinstance(config_set, dict) else None
        for index, entry in enumerate(servers if isinstance(servers, list) else ()):
            if not isinstance(entry, dict) or "oauth_config" not in entry:
                continue
            launch: Dict[str, Any] = entry["config"] if isinstance(entry.get("config"), dict) else {}
            block = entry["oauth_config"]
            remote = None
            if not (isinstance(block, dict) and block.get("is_remote") is False):
                remote = remote_url(launch.get("command"), launch.get("args"))
            path = format_path("$", ("mcp_configs", config_id, "mcp_config", index, "oauth_config"))
            found.append((block, path, remote))
    return found


def _with_endpoint_problems(problems: List[Problem], blocks: Iterable[Tuple[Any, str, Optional[str]]]) -> List[Problem]:
    """Add a problem for each enabled block whose token endpoint is neither set nor discoverable.

    A gateway server run through mcp-remote (or curl) is discovered from its URL argument.
    """
    known = {problem.json_path for problem in problems}
    added = []
    superseded = set()  # the credential rule's OAUTH_ISSUER problem, said again by the one added here
    for block, path, remote in blocks:
        if not isinstance(block, dict) or block.get("enabled") is not True or remote:
            continue
        if block.get("OAUTH_PROVIDER", "client_credentials") != "client_credentials":
            continue  # another token provider brings its own endpoint, if any
        if any(block.get(key) for key in _ENDPOINT_KEYS):
            continue
        where = format_path(path, ("OAUTH_TOKEN_URL",))
        if where in known:
            continue
        superseded.add(format_path(path, ("OAUTH_ISSUER",)))
        added.append(
            Problem(
                where,
                "is required when enabled is true and neither OAUTH_ISSUER nor OAUTH_RESOURCE is set",
                'set it to your identity provider\'s token endpoint, like "https://idp.example.com/oauth/token", '
                "or let it be discovered: set OAUTH_ISSUER to the issuer, or OAUTH_RESOURCE to the MCP server's URL",
            )
        )
    if not added:
        return problems
    rule = credential_rule()["then"]["x-message"]
    kept = [p for p in problems if not (p.json_path in superseded and p.message == rule)]
    return sorted(kept + added, key=lambda problem: _path_order(problem.json_path))


def credential_rule() -> Dict[str, Any]:
    """The oauth-config schema's rule on where credentials may go (``x-rule: credential-destination``).

    Its ``if.anyOf`` lists the keys that hold a credential, one line each; its ``then``
    carries the message and hint. The config loader applies it again after ``${...}``
    resolution, from this one copy.
    """
    for rule in load_schema("oauth-config")["allOf"]:
        if rule.get("x-rule") == "credential-destination":
            found: Dict[str, Any] = rule
            return found
    raise LookupError("the bundled schema lost its credential-destination rule")  # pragma: no cover


# format_path writes an odd key as ['...'] with ' and \ escaped by a backslash.
_UNESCAPE = re.compile(r"\\(.)")
_SEGMENT = re.compile(r"\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]")


def _path_order(json_path: str) -> Tuple[Tuple[int, int, str], ...]:
    """The sort key of a problem's JSON path, as :func:`_check` sorts by segments."""
    return _sort_key(
        int(index) if index else (name or _UNESCAPE.sub(r"\1", odd)) for index, name, odd in _SEGMENT.findall(json_path)
    )


def raise_for_problems(problems: Iterable[Problem]) -> None:
    """Raise the first error of ``problems`` as a :class:`ConfigError`; warnings are ignored.

    Args:
        problems: as returned by :func:`validate_config` (sorted by path).

    Raises:
        ConfigError: with the problem's message, json_path and hint.
    """
    for problem in problems:
        if problem.severity == "error":
            raise ConfigError(problem.message, problem.json_path, problem.hint)


def literal_secret_paths(document: Any) -> List[str]:
    """Return the JSON paths of every ``OAUTH_CLIENT_SECRET`` written out literally.

    A value made only of ``${ENV_NAME}`` references is not literal; an empty one is unset.
    """
    found: List[Tuple[Any, ...]] = []
    pending: List[Tuple[Any, Tuple[Any, ...]]] = [(document, ())]
    while pending:  # a loop, not recursion: any depth that json.load accepts is fine
        node, segments = pending.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "OAUTH_CLIENT_SECRET" and isinstance(value, str):
                    if _ENV_REFERENCE.sub("", value).strip():
                        found.append(segments + (key,))
                else:
                    pending.append((value, segments + (key,)))
        elif isinstance(node, list):
            pending.extend((value, segments + (index,)) for index, value in enumerate(node))
    return [format_path("$", segments) for segments in sorted(found, key=_sort_key)]


# --- turning jsonschema errors into problems -----------------------------------------


def _check(document: Any, name: str, root: str) -> List[Problem]:
    if _surely_valid(document, name):
        return []
    best: Dict[str, Tuple[int, int, Tuple[Any, ...], Problem]] = {}
    order = 0
    for error in _validator(name).iter_errors(document):
        for segments, priority, problem in _problems_from_error(error, root):
            order += 1
            kept = best.get(problem.json_path)
            if kept is None or priority > kept[0]:
                best[problem.json_path] = (priority, order, segments, problem)
    ranked = sorted(best.values(), key=lambda item: (_sort_key(item[2]), item[1]))
    return [item[3] for item in ranked]


def _problems_from_error(
    error: Any, root: str, hidden: FrozenSet[str] = frozenset()
) -> List[Tuple[Tuple[Any, ...], int, Problem]]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    segments = tuple(error.absolute_path)
    priority = schema.get("x-priority", _DEFAULT_PRIORITY.get(keyword, _OTHER_PRIORITY))
    if not isinstance(priority, int):
        priority = _OTHER_PRIORITY

    if keyword == "additionalProperties" and error.validator_value is False:
        return [
            (segments + (key,), priority, _unknown_key(root, segments + (key,), key, schema))
            for key in _extra_keys(error.instance, schema)
        ]
    if keyword == "required":
        results = []
        for key in error.validator_value or ():
            if isinstance(error.instance, dict) and key not in error.instance:
                where = segments + (key,)
                own = schema.get("properties", {}).get(key, {})
                message = _annotation(schema, "x-message", keyword) or "is required"
                hint = _annotation(own, "x-hint", keyword) or _annotation(schema, "x-hint", keyword)
                results.append((where, priority, Problem(format_path(root, where), message, hint)))
        return results

    at = schema.get("x-at")
    if isinstance(at, str):
        segments = segments + (at,)
    message, hint = _describe(error, keyword, schema, segments, hidden)
    return [(segments, priority, Problem(format_path(root, segments), message, hint))]


def _describe(
    error: Any, keyword: Any, schema: Dict[str, Any], segments: Tuple[Any, ...], hidden: FrozenSet[str] = frozenset()
) -> Tuple[str, Optional[str]]:
    """Return the message and hint of one error, from the schema's annotations or a default."""
    instance = error.instance
    echo = _may_echo(segments, instance) and not (segments and segments[0] in hidden)
    fields = {"{value}": _short(instance, echo), "{got}": _got(instance, echo)}
    custom = _annotation(schema, "x-message", keyword)
    hint = _annotation(schema, "x-hint", keyword)
    if custom:
        return _fill(custom, fields), _fill(hint, fields) if hint else None

    expected = error.validator_value
    if keyword == "type":
        return _type_problem(expected, instance, echo, hint)
    if keyword in ("enum", "const"):
        choices = expected if keyword == "enum" else [expected]
        shown = ", ".join(_short(choice, True) for choice in choices)
        what = "must be one of %s" % shown if len(choices) > 1 else "must be %s" % shown
        return "%s, got %s" % (what, fields["{value}"]), hint
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "greater than",
            "exclusiveMaximum": "less than",
        }
        return "must be %s %s, got %s" % (words[keyword], _number(expected), fields["{value}"]), hint
    if keyword in ("minLength", "minItems", "minProperties"):
        if expected == 1:
            return "must not be empty", hint
        return "must have at least %s %s" % (expected, "characters" if keyword == "minLength" else "items"), hint
    if keyword == "pattern":
        return "has the wrong format, got %s" % fields["{value}"], hint
    if keyword in ("not", None):
        return "is not allowed here", hint
    if keyword in ("anyOf", "oneOf"):
        return "matches none of the allowed forms", hint
    return "does not satisfy the schema rule %r" % (keyword,), hint


def _type_problem(expected: Any, instance: Any, echo: bool, hint: Optional[str]) -> Tuple[str, Optional[str]]:
    names = [expected] if isinstance(expected, str) else list(expected or ())
    if names == ["integer"] and isinstance(instance, float):
        return "must be a whole number, got %s" % _got(instance, echo), hint
    if set(names) == {"boolean", "null"}:
        wanted = "true, false or null (without quotes)"
    else:
        wanted = _join([_TYPE_NAMES.get(name, name) for name in names])
    message = "must be %s, got %s" % (wanted, _got(instance, echo))
    if hint is None:
        if "string" in names and isinstance(instance, (int, float)) and not isinstance(instance, bool):
            hint = "put it in quotes"
        elif "string" in names and isinstance(instance, bool):
            hint = "put it in quotes if you meant the text %s" % json.dumps(instance)
        elif ("number" in names or "integer" in names) and isinstance(instance, str) and _is_number(instance):
            hint = "remove the quotes"
    return message, hint


def _unknown_key(root: str, where: Tuple[Any, ...], key: Any, schema: Dict[str, Any]) -> Problem:
    known = [name for name in schema.get("properties", {}) if not name.startswith("$")]
    by_upper = {name.upper(): name for name in known}
    text = str(key)
    upper = text.upper()
    guesses = difflib.get_close_matches(upper, list(by_upper), n=1, cutoff=0.6)
    if not guesses and not upper.startswith("OAUTH_"):
        # "scopes" -> "OAUTH_SCOPE"; stricter, since the shared prefix alone looks similar
        guesses = difflib.get_close_matches("OAUTH_" + upper, list(by_upper), n=1, cutoff=0.8)
    if upper in by_upper:
        hint = "did you mean %s? keys are case-sensitive" % _quote(by_upper[upper])
    elif guesses:
        hint = "did you mean %s?" % _quote(by_upper[guesses[0]])
    else:
        hint = "remove it; `oauth-gateway schema` lists the accepted keys"
    return Problem(format_path(root, where), "unknown key %s" % _quote(text), hint)


def _extra_keys(instance: Any, schema: Dict[str, Any]) -> List[Any]:
    if not isinstance(instance, dict):
        return []
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [key for key in instance if key not in properties and not any(re.search(p, str(key)) for p in patterns)]


def _annotation(schema: Dict[str, Any], name: str, keyword: Any) -> Optional[str]:
    """Return annotation ``name`` of ``schema``: a string, or a dict keyed by keyword."""
    value = schema.get(name) if isinstance(schema, dict) else None
    if isinstance(value, dict):
        value = value.get(keyword)
    return value if isinstance(value, str) else None


def _fill(template: str, fields: Dict[str, str]) -> str:
    for placeholder, text in fields.items():
        template = template.replace(placeholder, text)
    return template


# --- showing values without leaking secrets ------------------------------------------


def _may_echo(segments: Sequence[Any], value: Any) -> bool:
    """Return True when ``value`` at ``segments`` may be shown in a message."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str) and value in _BOOLEAN_WORDS:
        return True
    for segment in segments:
        key = str(segment).upper() if isinstance(segment, str) else ""
        if key in _SECRET_CONTAINERS:
            return False
        if key.endswith("_URL"):
            continue
        if any(word in key for word in _SECRET_WORDS):
            return False
        if "TOKEN" in key and isinstance(value, str):  # a number is never an access token
            return False
    return True


def _short(value: Any, echo: bool) -> str:
    """Return ``value`` as written in a message: ``'text'``, ``12``, ``true``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value) if echo else "a number"
    if isinstance(value, str):
        return _quote(redact_url(value)) if echo else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a %s" % type(value).__name__


def _got(value: Any, echo: bool) -> str:
    """Return ``value`` described with its type: ``the string 'false'``, ``the number 12``."""
    if isinstance(value, bool) or value is None:
        return _short(value, True)
    if isinstance(value, str) and echo:
        return "the string %s" % _short(value, True)
    if isinstance(value, (int, float)) and echo:
        return "the number %s" % _number(value)
    return _short(value, False)


def _quote(text: str) -> str:
    text = json.dumps(text, ensure_ascii=not text.isprintable())[1:-1].replace('\\"', '"').replace("'", "\\'")
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return "'%s'" % text


def _number(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _join(words: List[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return "%s or %s" % (", ".join(words[:-1]), words[-1])


# --- JSON paths ------------------------------------------------------------------------


def _sort_key(segments: Iterable[Any]) -> Tuple[Tuple[int, int, str], ...]:
    return tuple(
        (0, segment, "") if isinstance(segment, int) and not isinstance(segment, bool) else (1, 0, str(segment))
        for segment in segments
    )
