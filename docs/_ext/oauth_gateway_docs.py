"""Sphinx extension for the oauth-gateway documentation.

It adds three things, all generated from the installed package so the pages cannot
drift from the code:

``.. oauth-gateway-schema:: oauth-config`` (or ``gateway-config``)
    Every key of a bundled JSON Schema (read with :func:`oauth_gateway.schema.load_schema`)
    with its type, default, allowed values, constraints and description, each as a
    ``confkey`` object that pages can link with ``:confkey:`OAUTH_TOKEN_URL```.
``.. oauth-gateway-cli::``
    The usage and every option of the ``oauth-gateway`` command and each subcommand,
    walked from the argparse parser the command line itself uses.
A ``missing-reference`` handler
    The public names are defined in submodules (``oauth_gateway.manager.TokenManager``)
    but documented where users import them (``oauth_gateway.TokenManager``); annotations
    name the submodule, so this maps them to the documented name. A bare name in a
    docstring (``:data:`LOCAL_ENV_VARS```) resolves when exactly one documented
    ``oauth_gateway`` object has that name.
Napoleon off for properties and data
    Napoleon reads the first line of a property's docstring as ``type: description``,
    so "A deep copy of the document, secrets included: do not log it" became a type
    named "A deep copy of the document, secrets included". Our types live in
    annotations only (STYLE.md), and autodoc shows those, so two
    ``autodoc-process-docstring`` handlers around napoleon's keep the docstring of a
    property or a module constant as written.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# --- the configuration reference ---------------------------------------------------------


_TYPE_WORDS = {
    "string": "string",
    "boolean": "true or false",
    "integer": "whole number",
    "number": "number",
    "object": "object",
    "array": "list",
    "null": "null",
}


def _type_of(schema: Dict[str, Any]) -> str:
    """The key's type in words: "string or list of strings", "true or false"..."""
    if schema.get("not") == {}:
        return "not allowed (any value is an error)"
    if "$ref" in schema:
        return "see ``%s``" % schema["$ref"]
    kinds = schema.get("type")
    if kinds is None:
        refs = [part["$ref"] for part in schema.get("allOf", []) if "$ref" in part]
        return "object, checked against ``%s``" % refs[0] if refs else "any"
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for name in names:
        items = schema.get("items")
        if name == "array" and isinstance(items, dict) and isinstance(items.get("type"), str):
            words.append("list of %ss" % _TYPE_WORDS.get(items["type"], items["type"]))
        else:
            words.append(_TYPE_WORDS.get(name, name))
    return " or ".join(words)


def _rule_words(schema: Dict[str, Any], keyword: str) -> Optional[str]:
    """The schema's own wording of a rule (its ``x-message``), without the "got ..." part."""
    message = schema.get("x-message")
    if isinstance(message, dict):
        message = message.get(keyword)
    if not isinstance(message, str):
        return None
    return re.sub(r",?\s*got \{(value|got)\}.*$", "", message).replace("{value}", "the value").strip()


def _key_name(pattern: str) -> str:
    """``^[Aa][Uu]th$`` -> ``auth`` (any case); ``^client_assertion`` -> ``client_assertion...``."""
    name = re.sub(r"\[([A-Za-z])([A-Za-z])\]", lambda m: m.group(1).lower(), pattern.lstrip("^"))
    if name.endswith("$"):
        return name[:-1]
    return name + "..."


def _constraints(schema: Dict[str, Any]) -> List[str]:
    """Every rule on the value, in words: never a raw regular expression."""
    found = []
    for keyword, word in (
        ("minimum", "at least"),
        ("exclusiveMinimum", "greater than"),
        ("maximum", "at most"),
        ("exclusiveMaximum", "less than"),
    ):
        if keyword in schema:
            found.append("%s %s" % (word, schema[keyword]))
    if schema.get("minLength") == 1:
        found.append("not empty")
    elif "minLength" in schema:
        found.append("at least %s characters" % schema["minLength"])
    if schema.get("minItems") == 1:
        found.append("a list needs at least one item")
    elif "minItems" in schema:
        found.append("a list needs at least %s items" % schema["minItems"])
    if "pattern" in schema:
        found.append(_rule_words(schema, "pattern") or "has a fixed format (see the description)")
    items = schema.get("items")
    if isinstance(items, dict) and "pattern" in items:
        words = _rule_words(items, "pattern") or "has a fixed format"
        found.append("each item " + words)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "type" in extra:
        found.append("values: %s" % _type_of(extra))
    forbidden = [p for p, rule in schema.get("patternProperties", {}).items() if rule.get("not") == {}]
    if forbidden:
        found.append("refused keys: %s" % ", ".join("``%s``" % _key_name(p) for p in forbidden))
    if "${" in json.dumps(schema.get("pattern", "")):
        found.append("may hold ``${ENV_NAME}`` references")
    return found


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values())
    return str(value)


def _rst_text(text: str) -> str:
    """Schema prose as reST text: a word ending in ``_`` would be a reference."""
    return re.sub(r"(\w)_(?=[\s,.;:)]|$)", r"\1\\_", text.replace("\n", " "))


def _key_lines(name: str, schema: Dict[str, Any]) -> List[str]:
    """One key: its description, then a two-column table of type, default, values and rules."""
    lines = [".. confkey:: %s" % name, ""]
    description = schema.get("description") or schema.get("title") or ""
    if schema.get("not") == {} and "x-message" in schema:
        description = "%s %s." % (_text(schema["x-message"]).capitalize(), _text(schema.get("x-hint", "")))
    if description:
        lines += ["   " + _rst_text(description), ""]
    rows = [("Type", _type_of(schema))]
    if "default" in schema:
        rows.append(("Default", "``%s``" % json.dumps(schema["default"])))
    if "enum" in schema:
        rows.append(("Allowed values", ", ".join("``%s``" % json.dumps(v) for v in schema["enum"])))
    constraints = _constraints(schema)
    if constraints:
        rows.append(("Constraints", _rst_text("; ".join(constraints))))
    lines += ["   .. list-table::", "      :class: confkey-facts", "      :widths: 1 4", ""]
    for label, value in rows:
        lines += ["      * - %s" % label, "        - %s" % value]
    return lines + [""]


def _walk(schema: Dict[str, Any], root: Dict[str, Any], path: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Yields (JSON path, schema) for every property below ``schema``, following local $refs."""
    if "$ref" in schema and schema["$ref"].startswith("#/"):
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = target
    for key, child in schema.get("properties", {}).items():
        child_path = "%s.%s" % (path, key)
        yield child_path, child
        yield from _walk(child, root, child_path)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" in extra:
        yield from _walk(extra, root, "%s.<config_id>" % path)
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" in items:
        yield from _walk(items, root, "%s[]" % path)


def schema_keys(name: str) -> List[Tuple[str, Dict[str, Any]]]:
    """Returns the documented (key, schema) pairs of a bundled schema, in schema order.

    ``oauth-config`` keys are the block's own key names (``OAUTH_TOKEN_URL``);
    ``gateway-config`` keys are JSON paths from the file's root (``$.mcp_configs``).
    """
    from oauth_gateway.schema import load_schema

    schema = load_schema(name)
    if name == "oauth-config":
        return list(schema.get("properties", {}).items())
    return list(_walk(schema, schema, "$"))


def schema_rst(name: str) -> List[str]:
    from oauth_gateway.schema import load_schema

    schema = load_schema(name)
    lines = [schema.get("description", ""), ""]
    for key, child in schema_keys(name):
        lines += _key_lines(key, child)
    rules = [part["description"] for part in schema.get("allOf", []) if "description" in part]
    if rules:
        lines += [".. rubric:: Rules between keys", ""]
        lines += ["* %s" % rule for rule in rules]
        lines.append("")
    return lines


class SchemaDirective(SphinxDirective):
    """``.. oauth-gateway-schema:: NAME`` renders one bundled schema's keys."""

    required_arguments = 1

    def run(self) -> List[nodes.Node]:
        return _parse(self, schema_rst(self.arguments[0]))


# --- the command-line reference ------------------------------------------------------------


def build_cli_parser() -> argparse.ArgumentParser:
    """The parser ``oauth-gateway`` itself uses."""
    from oauth_gateway import cli

    return cli.build_parser(io.StringIO(), io.StringIO())


def _subcommands(parser: argparse.ArgumentParser) -> List[Tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # argparse offers no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


def cli_commands() -> List[Tuple[str, argparse.ArgumentParser]]:
    """Every command as (full name, parser): ``oauth-gateway``, ``oauth-gateway validate`` ..."""
    result: List[Tuple[str, argparse.ArgumentParser]] = []

    def visit(name: str, parser: argparse.ArgumentParser) -> None:
        result.append((name, parser))
        for child_name, child in _subcommands(parser):
            visit("%s %s" % (name, child_name), child)

    root = build_cli_parser()
    visit(root.prog, root)
    return result


def _option_lines(parser: argparse.ArgumentParser) -> List[str]:
    lines = []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        invocation = formatter._format_action_invocation(action)
        text = action.help or ""
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            choices = ", ".join("``%s``" % c for c in action.choices)
            text = "%s (one of %s)" % (text, choices) if text else "one of %s" % choices
        if action.required:
            text += " (required)"
        if "%(" in text:
            text = text % {"prog": parser.prog, "default": action.default}
        lines += [".. option:: %s" % invocation, "", "   " + (text or "(no description)"), ""]
    return lines


def cli_rst() -> List[str]:
    lines: List[str] = []
    for name, parser in cli_commands():
        title = "``%s``" % name
        lines += [title, "-" * len(title), ""]
        if parser.description:
            lines += [parser.description, ""]
        lines += [".. program:: %s" % name, "", ".. code-block:: text", ""]
        lines += ["   " + line for line in parser.format_usage().rstrip().splitlines()]
        lines.append("")
        subcommands = _subcommands(parser)
        if subcommands:
            lines += ["Commands:", ""]
            for child_name, child in subcommands:
                lines += ["``%s``" % child_name, "   %s" % (child.description or ""), ""]
        lines += _option_lines(parser)
        if parser.epilog:
            lines += [".. code-block:: text", ""]
            lines += ["   " + line for line in parser.epilog.splitlines()]
            lines.append("")
    return lines


class CliDirective(SphinxDirective):
    """``.. oauth-gateway-cli::`` renders every command's usage and options."""

    def run(self) -> List[nodes.Node]:
        return _parse(self, cli_rst())


def _parse(directive: SphinxDirective, lines: List[str]) -> List[nodes.Node]:
    container = nodes.section() if directive.name == "oauth-gateway-cli" else nodes.container()
    source = "<%s>" % directive.name
    nested_parse_with_titles(directive.state, StringList(lines, source=source), container)
    return list(container.children)


# --- public names documented at the package ---------------------------------------------------


def _public_alias(app: Sphinx, env: Any, node: Any, contnode: Any) -> Optional[nodes.Node]:
    """Resolves ``oauth_gateway.<module>.Name`` to ``oauth_gateway.Name`` when Name is public."""
    import oauth_gateway

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    parts = target.split(".")
    public = set(oauth_gateway.__all__)
    # Name, or Name.attribute (a method or attribute of a public class).
    for split in (len(parts) - 1, len(parts) - 2):
        if parts[0] == "oauth_gateway" and len(parts) >= 3 and split >= 1 and parts[split] in public:
            alias = ".".join(["oauth_gateway"] + parts[split:])
            new = node.deepcopy()
            new["reftarget"] = alias
            domain = env.get_domain("py")
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], alias, new, contnode)
    domain = env.get_domain("py")
    target = target.lstrip("~.")
    # A name written in a docstring relative to where it stands (``:meth:`lock``` in a
    # class, ``:class:`ConfigError``` in a module), or as a unique ``Name`` / ``Class.method``.
    module, klass = node.get("py:module"), node.get("py:class")
    scopes = [".".join(part for part in (module, klass) if part), module, "oauth_gateway"]
    matches = [scope + "." + target for scope in scopes if scope and scope + "." + target in domain.objects][:1]
    if not matches:
        matches = [
            fullname
            for fullname in domain.objects
            if fullname.startswith("oauth_gateway.") and fullname.endswith("." + target)
        ]
        if len(matches) > 1:  # the package name and its submodule's: the package one is documented
            matches = [name for name in matches if name.count(".") == target.count(".") + 1] or matches
    if len(matches) == 1:
        new = node.deepcopy()
        new["reftarget"] = matches[0]
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0], new, contnode)
    if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
        return contnode  # a private name a docstring mentions: shown as written, never documented
    if _exists(module, klass, target):
        return contnode  # a real name the reference leaves out (not in its module's __all__): as text
    return None


def _exists(module: Optional[str], klass: Optional[str], target: str) -> bool:
    """True when ``target`` names something importable from where the reference stands."""
    import importlib

    parts = target.split(".")
    if parts[0] == "oauth_gateway":  # a full name: the longest importable module prefix
        for cut in range(len(parts) - 1, 0, -1):
            try:
                importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            module, klass, target = ".".join(parts[:cut]), None, ".".join(parts[cut:])
            break
    if not module or not module.startswith("oauth_gateway"):
        return False
    try:
        found: Any = importlib.import_module(module)
    except ImportError:
        return False
    for scope in ([klass] if klass else []) + [None]:
        start = found
        for part in (scope.split(".") if scope else []) + target.split("."):
            holder = start
            start = getattr(holder, part, _MISSING)
            if start is _MISSING and isinstance(holder, type):  # an instance attribute, declared
                declared = set(getattr(holder, "__slots__", ())) | set(getattr(holder, "__annotations__", {}))
                start = holder if part in declared else _MISSING
            if start is _MISSING:
                break
        if start is not _MISSING:
            return True
    return False


_MISSING = object()


_AS_WRITTEN = ("property", "data", "attribute")


def _keep_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    if what in _AS_WRITTEN:
        app.env.temp_data.setdefault("oauth_gateway_docstrings", {})[name] = list(lines)


def _restore_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    original = app.env.temp_data.get("oauth_gateway_docstrings", {}).pop(name, None)
    if what in _AS_WRITTEN and original is not None:
        lines[:] = original


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: List[Any]) -> None:
    """Show a class's public bases only: a private helper base is an implementation detail."""
    private = [base for base in bases if any(p.startswith("_") for p in base.__module__.split(".")[1:])]
    if private:
        bases[:] = [base for base in bases if base not in private] or [object]


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_object_type("confkey", "confkey", objname="configuration key", indextemplate="pair: %s; configuration key")
    app.add_directive("oauth-gateway-schema", SchemaDirective)
    app.add_directive("oauth-gateway-cli", CliDirective)
    app.connect("missing-reference", _public_alias)
    app.connect("autodoc-process-bases", _public_bases)
    # Around napoleon's handler (priority 500).
    app.connect("autodoc-process-docstring", _keep_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_docstring, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
