"""A quick yes-or-don't-know check of a document against the bundled draft-07 schemas.

:func:`is_valid` interprets the keywords the bundled schemas use and answers True only
when it is sure that jsonschema would find no error; for anything else (an error, or a
keyword or construct it does not know) it answers False, and the caller runs jsonschema,
which words every problem. A valid config then loads without importing jsonschema
(25 to 50 ms of a short script's run).

Semantics follow jsonschema's Draft7Validator: ``$ref`` hides its sibling keywords,
``integer`` accepts floats with no fraction, booleans are never numbers, ``pattern`` is
``re.search``, and a keyword applies only to instances of its type.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Tuple

# Keywords that never make a document invalid.
_ANNOTATIONS = frozenset(
    [
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "definitions",
        "readOnly",
        "writeOnly",
    ]
)
_SCALARS = (str, int, float, bool, type(None))


class _Unknown(Exception):
    """The schema uses something this module does not interpret: ask jsonschema."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: Dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


def _same(a: Any, b: Any) -> bool:
    """jsonschema's equality for scalars: ``True`` is not ``1``."""
    if not isinstance(b, _SCALARS):
        raise _Unknown("enum or const holding a container")
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if not isinstance(a, _SCALARS):
        return False
    return a == b


class _Checker:
    def __init__(self, documents: Dict[str, Any]) -> None:
        self._documents = documents  # file name -> schema
        self._patterns: Dict[str, Any] = {}

    def _search(self, pattern: str, text: str) -> bool:
        compiled = self._patterns.get(pattern)
        if compiled is None:
            compiled = self._patterns[pattern] = re.compile(pattern)
        return compiled.search(text) is not None

    def _resolve(self, ref: str, root: Any) -> Tuple[Any, Any]:
        name, _, fragment = ref.partition("#")
        if name:
            if name not in self._documents:
                raise _Unknown("$ref to %s" % name)
            root = self._documents[name]
        target = root
        if fragment:
            if not fragment.startswith("/"):
                raise _Unknown("$ref fragment %s" % fragment)
            for part in fragment[1:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise _Unknown("$ref %s" % ref)
                target = target[part]
        return target, root

    def valid(self, instance: Any, schema: Any, root: Any) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        if not isinstance(schema, dict):
            raise _Unknown("schema of type %s" % type(schema).__name__)
        if "$ref" in schema:  # draft 7: $ref hides its siblings
            target, target_root = self._resolve(schema["$ref"], root)
            return self.valid(instance, target, target_root)
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword.startswith("x-"):
                continue
            check = getattr(self, "_k_" + keyword, None)
            if check is None:
                raise _Unknown(keyword)
            if not check(instance, value, schema, root):
                return False
        return True

    # -- keywords: each returns False when the instance breaks it

    def _k_type(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        names = [value] if isinstance(value, str) else value
        for name in names:
            if name not in _TYPES:
                raise _Unknown("type %r" % name)
        return any(_TYPES[name](instance) for name in names)

    def _k_enum(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return any(_same(instance, each) for each in value)

    def _k_const(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return _same(instance, value)

    def _k_pattern(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not isinstance(instance, str) or self._search(value, instance)

    def _k_minLength(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not isinstance(instance, str) or len(instance) >= value

    def _k_maxLength(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not isinstance(instance, str) or len(instance) <= value

    def _k_minItems(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not isinstance(instance, list) or len(instance) >= value

    def _k_minimum(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not _is_number(instance) or instance >= value

    def _k_maximum(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not _is_number(instance) or instance <= value

    def _k_exclusiveMinimum(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not _is_number(instance) or instance > value

    def _k_exclusiveMaximum(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not _is_number(instance) or instance < value

    def _k_items(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        if isinstance(value, list):
            raise _Unknown("items as a list")
        return not isinstance(instance, list) or all(self.valid(item, value, root) for item in instance)

    def _k_required(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not isinstance(instance, dict) or all(key in instance for key in value)

    def _k_properties(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        return all(self.valid(instance[key], sub, root) for key, sub in value.items() if key in instance)

    def _k_patternProperties(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        for pattern, sub in value.items():
            for key, item in instance.items():
                if self._search(pattern, key) and not self.valid(item, sub, root):
                    return False
        return True

    def _k_additionalProperties(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, item in instance.items():
            if key in known or any(self._search(pattern, key) for pattern in patterns):
                continue
            if not self.valid(item, value, root):
                return False
        return True

    def _k_not(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return not self.valid(instance, value, root)

    def _k_allOf(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return all(self.valid(instance, sub, root) for sub in value)

    def _k_anyOf(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return any(self.valid(instance, sub, root) for sub in value)

    def _k_oneOf(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return sum(1 for sub in value if self.valid(instance, sub, root)) == 1

    def _k_if(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        if self.valid(instance, value, root):
            return "then" not in schema or self.valid(instance, schema["then"], root)
        return "else" not in schema or self.valid(instance, schema["else"], root)

    def _k_then(self, instance: Any, value: Any, schema: Dict[str, Any], root: Any) -> bool:
        return True  # applied by "if"

    _k_else = _k_then


def is_valid(document: Any, schema: Any, documents: Dict[str, Any]) -> bool:
    """Return True when ``document`` surely satisfies ``schema``; False when it does not or when unsure.

    Args:
        document: the parsed JSON document.
        schema: the schema to check against.
        documents: every bundled schema by file name, for ``$ref`` to another file.
    """
    try:
        return _Checker(documents).valid(document, schema, schema)
    except (_Unknown, RecursionError, re.error, TypeError):
        return False
