"""A static check that a regular expression cannot backtrack quadratically or worse.

Deterministic, unlike timing a match on growing inputs: it reads the compiled pattern's parse
tree (``re._parser`` on Python 3.11+, ``sre_parse`` before) and rejects the shapes that make
a backtracking engine rescan text. For a pattern applied with ``match()``/``fullmatch()``
(one start position):

- a repeat nested in an unbounded repeat, where one iteration can end, or the next begin,
  with a variable-length part on a character the iteration boundary also allows (``(a+)+``,
  ``(a a?)*``), or whose body can match empty (``(a*)*``); a separator the inner repeat cannot
  consume (``(\\.[^.]+)*``, the unrolled ``[^"\\\\]*(?:\\\\.[^"\\\\]*)*``) makes the split unique;
- alternation under an unbounded repeat whose branches can start alike, or one of which can
  match empty (``(a|ab)*``);
- two unbounded repeats with only optional parts between them, where a character the first
  can end on may start the second (``[^\\s/?#]+[^\\s]*``).

For a pattern applied with ``search()``, ``finditer()``, ``findall()`` or ``sub()`` (every start
position), additionally, per top-level branch not anchored with ``^``/``\\A``:

- a leading unbounded repeat (each start scans the same run again);
- a leading character (or two leading characters, in order) that a later unbounded repeat
  can consume, so a run the repeat scanned from one start holds further starts
  (``a[a-z]*x`` on ``aaaa...``).

Character sets are evaluated over a finite sample of characters (all of Latin-1 and
Latin Extended-A plus some wider ones), so two sets "overlap" when a sample character is in
both. The analysis is conservative: it may reject a linear pattern, never the shapes above.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

if sys.version_info >= (3, 11):
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse
else:  # pragma: no cover - Python 3.8 to 3.10
    import sre_constants
    import sre_parse

#: The characters sets are evaluated on: every character a category can tell apart here.
_SAMPLE = tuple(chr(code) for code in range(0x180)) + tuple(
    "\u0391\u03b1\u0410\u0430\u0660\u0966\u1680\u2000\u2028\u2029\u202f\u205f\u3000\ufeff\uffff\U0001f600"
)
Chars = FrozenSet[str]
_EVERYTHING: Chars = frozenset(_SAMPLE)
_NOTHING: Chars = frozenset()
_UNBOUNDED = sre_constants.MAXREPEAT
_REPEATS = tuple(
    getattr(sre_constants, name)
    for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    if hasattr(sre_constants, name)
)
_CATEGORY_PATTERNS = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


class Quadratic(AssertionError):
    """A pattern has a shape that backtracks quadratically (or worse) on some input."""


class _Flex(NamedTuple):
    """A variable-length part: the characters it can start and end on, and whether unbounded."""

    first: Chars
    last: Chars
    unbounded: bool


class _Summary(NamedTuple):
    """What a piece of a pattern can match, as far as the rules need to know."""

    nullable: bool
    first: Chars  # characters a match can start with
    last: Chars  # characters a match can end with
    chars: Chars  # characters a match can hold
    pairs: Tuple[Tuple[Chars, Chars], ...]  # adjacent characters a match can hold: (a-set, b-set) rectangles
    heads: Tuple[_Flex, ...]  # variable-length parts a match can start in
    tails: Tuple[_Flex, ...]  # variable-length parts a match can end in
    fixed: bool  # every match has the same length
    branches: Tuple[Tuple[_Summary, ...], ...]  # each alternation inside, by branch


_EMPTY = _Summary(True, _NOTHING, _NOTHING, _NOTHING, (), (), (), True, ())


def _case_fold(chars: Chars, ignore_case: bool) -> Chars:
    if not ignore_case:
        return chars
    return frozenset(c for c in _SAMPLE if c in chars or c.lower() in chars or c.upper() in chars)


def _class_chars(items: Sequence[Tuple[Any, Any]], ignore_case: bool) -> Chars:
    negate = False
    chars = set()
    for op, av in items:
        name = _name(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            chars.add(chr(av))
        elif name == "RANGE":
            low, high = av
            chars.update(c for c in _SAMPLE if low <= ord(c) <= high)
        elif name == "CATEGORY":
            test = re.compile(_CATEGORY_PATTERNS[_name(av)])
            chars.update(c for c in _SAMPLE if test.match(c))
        else:  # CHARSET/BIGCHARSET only appear in compiled code, not in the parse tree
            raise ValueError("unexpected %s in a character class" % name)
    found = _case_fold(frozenset(chars), ignore_case)
    return _EVERYTHING - found if negate else found


def _char(chars: Chars) -> _Summary:
    return _Summary(False, chars, chars, chars, (), (), (), True, ())


def _pairs_meet(pairs: Sequence[Tuple[Chars, Chars]], a: Chars, b: Chars) -> bool:
    return any(x & a and y & b for x, y in pairs)


class _Analyzer:
    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.flags = pattern.flags
        self.ignore_case = bool(pattern.flags & re.IGNORECASE)
        self.dot_all = bool(pattern.flags & re.DOTALL)

    def fail(self, shape: str) -> Quadratic:
        return Quadratic("%r: %s" % (self.pattern.pattern, shape))

    def sequence(self, items: Any) -> _Summary:
        """Summarise a concatenation, rejecting two unbounded repeats that can meet."""
        total = _EMPTY
        for item in items:
            part = self.node(*item)
            for tail in total.tails:
                for head in part.heads:
                    if tail.unbounded and head.unbounded and tail.last & head.first:
                        raise self.fail(
                            "two unbounded repeats meet on %s: each split of a run between them is tried"
                            % _show(tail.last & head.first)
                        )
            total = _concat(total, part)
        return total

    def node(self, op: Any, av: Any) -> _Summary:
        name = _name(op)
        if name == "LITERAL":
            return _char(_case_fold(frozenset(chr(av)), self.ignore_case))
        if name == "NOT_LITERAL":
            return _char(_EVERYTHING - _case_fold(frozenset(chr(av)), self.ignore_case))
        if name == "ANY":
            return _char(_EVERYTHING if self.dot_all else _EVERYTHING - {"\n"})
        if name == "IN":
            return _char(_class_chars(av, self.ignore_case))
        if name == "AT":
            return _EMPTY
        if name in ("ASSERT", "ASSERT_NOT"):
            self.sequence(av[1])  # checked for its own shapes, matches nothing
            return _EMPTY
        if name == "SUBPATTERN":
            return self.sequence(av[-1])
        if name == "ATOMIC_GROUP":
            return self.sequence(av)
        if name == "BRANCH":
            options = tuple(self.sequence(branch) for branch in av[1])
            return _alternation(options)
        if name == "GROUPREF_EXISTS":
            options = tuple(self.sequence(branch) if branch is not None else _EMPTY for branch in av[1:])
            return _alternation(options)
        if name == "GROUPREF":  # anything the group matched: any length, any character
            flex = _Flex(_EVERYTHING, _EVERYTHING, True)
            return _Summary(
                True, _EVERYTHING, _EVERYTHING, _EVERYTHING, ((_EVERYTHING, _EVERYTHING),), (flex,), (flex,), False, ()
            )
        if op in _REPEATS:
            return self.repeat(op, *av)
        raise ValueError("%r: unexpected %s in the parse tree" % (self.pattern.pattern, name))

    def repeat(self, op: Any, low: int, high: int, body: Any) -> _Summary:
        inner = self.sequence(body)
        unbounded = high == _UNBOUNDED
        if unbounded and _name(op) != "POSSESSIVE_REPEAT":
            if inner.nullable and inner.chars:
                raise self.fail("an unbounded repeat of something that can match empty")
            for flex in inner.tails:
                if flex.last & inner.first:
                    raise self.fail(
                        "a repeat nested in an unbounded repeat: an iteration can end in it on %s, which "
                        "can also start the next" % _show(flex.last & inner.first)
                    )
            for flex in inner.heads:
                if flex.first & inner.last:
                    raise self.fail(
                        "a repeat nested in an unbounded repeat: an iteration can start in it on %s, which "
                        "can also end the last" % _show(flex.first & inner.last)
                    )
            for options in _all_branches(inner):
                for i, one in enumerate(options):
                    if one.nullable:
                        raise self.fail("alternation under an unbounded repeat with a branch that can match empty")
                    for other in options[i + 1 :]:
                        if one.first & other.first:
                            raise self.fail(
                                "alternation under an unbounded repeat whose branches can both start with %s"
                                % _show(one.first & other.first)
                            )
        if high == 0 or not inner.chars:
            return _EMPTY
        looped = high > 1
        pairs = inner.pairs + (((inner.last, inner.first),) if looped else ())
        variable = low != high or not inner.fixed
        flex = _Flex(inner.first, inner.last, unbounded)
        return _Summary(
            nullable=low == 0 or inner.nullable,
            first=inner.first,
            last=inner.last,
            chars=inner.chars,
            pairs=pairs,
            heads=((flex,) if variable else ()) + inner.heads,
            tails=((flex,) if variable else ()) + inner.tails,
            fixed=not variable,
            branches=inner.branches,
        )

    def unbounded_repeats(self, items: Any) -> List[_Summary]:
        """Every unbounded repeat in ``items``, at any depth, summarised."""
        found: List[_Summary] = []
        for op, av in items:
            name = _name(op)
            if op in _REPEATS:
                if av[1] == _UNBOUNDED:
                    found.append(self.repeat(op, *av))
                found.extend(self.unbounded_repeats(av[2]))
            elif name == "SUBPATTERN":
                found.extend(self.unbounded_repeats(av[-1]))
            elif name == "ATOMIC_GROUP":
                found.extend(self.unbounded_repeats(av))
            elif name == "BRANCH":
                for branch in av[1]:
                    found.extend(self.unbounded_repeats(branch))
        return found

    def check_starts(self, items: Any) -> None:
        """The rules for a pattern tried at every start position, per top-level branch."""
        items = list(items)
        if len(items) == 1 and _name(items[0][0]) == "BRANCH":
            for branch in items[0][1][1]:
                self.check_starts(branch)
            return
        if len(items) == 1 and _name(items[0][0]) == "SUBPATTERN":
            self.check_starts(items[0][1][-1])
            return
        if items and _name(items[0][0]) == "AT" and _name(items[0][1]) in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            if _name(items[0][1]) == "AT_BEGINNING_STRING" or not self.flags & re.MULTILINE:
                return  # one start position can match: as match()
        whole = self.sequence(items)
        for flex in whole.heads:
            if flex.unbounded:
                raise self.fail("a leading unbounded repeat: every start position scans the same run again")
        lead = [self.node(*item) for item in items[:2]]
        single = [part for part in lead if part.fixed and not part.nullable and part.first == part.last]
        for repeat in self.unbounded_repeats(items):
            if len(single) == 2 and lead[0].chars == lead[0].first and lead[1].chars == lead[1].first:
                if _pairs_meet(repeat.pairs, single[0].first, single[1].first):
                    raise self.fail(
                        "the leading %s%s can recur inside a later unbounded repeat: each recurrence is a "
                        "start that scans again" % (_show(single[0].first), _show(single[1].first))
                    )
            elif whole.first & repeat.chars:
                raise self.fail(
                    "a leading %s that a later unbounded repeat can consume: each is a start that scans again"
                    % _show(whole.first & repeat.chars)
                )


def _name(constant: Any) -> str:
    """A parse-tree constant's name (``str()`` of one differs between Python versions)."""
    return str(getattr(constant, "name", constant))


def _show(chars: Chars) -> str:
    sample = sorted(chars)[:3]
    return "{%s%s}" % (", ".join(repr(c) for c in sample), ", ..." if len(chars) > 3 else "")


def _concat(a: _Summary, b: _Summary) -> _Summary:
    return _Summary(
        nullable=a.nullable and b.nullable,
        first=a.first | (b.first if a.nullable else _NOTHING),
        last=b.last | (a.last if b.nullable else _NOTHING),
        chars=a.chars | b.chars,
        pairs=a.pairs + b.pairs + (((a.last, b.first),) if a.last and b.first else ()),
        heads=a.heads + (b.heads if a.nullable else ()),
        tails=b.tails + (a.tails if b.nullable else ()),
        fixed=a.fixed and b.fixed,
        branches=a.branches + b.branches,
    )


def _alternation(options: Tuple[_Summary, ...]) -> _Summary:
    union: Chars = _NOTHING
    first: Chars = _NOTHING
    last: Chars = _NOTHING
    for option in options:
        union |= option.chars
        first |= option.first
        last |= option.last
    return _Summary(
        nullable=any(option.nullable for option in options),
        first=first,
        last=last,
        chars=union,
        pairs=tuple(pair for option in options for pair in option.pairs),
        heads=tuple(flex for option in options for flex in option.heads),
        tails=tuple(flex for option in options for flex in option.tails),
        fixed=False,
        branches=(options,) + tuple(inner for option in options for inner in option.branches),
    )


def _all_branches(summary: _Summary) -> Tuple[Tuple[_Summary, ...], ...]:
    return summary.branches


def _parse(pattern: re.Pattern[str]) -> Any:
    return sre_parse.parse(pattern.pattern, pattern.flags & ~re.UNICODE)


def assert_linear_match(pattern: re.Pattern[str]) -> None:
    """Fail unless ``pattern`` backtracks linearly when applied with ``match()``/``fullmatch()``.

    Raises:
        Quadratic: the pattern has a shape that rescans text from one start position.
    """
    _Analyzer(pattern).sequence(_parse(pattern))


def assert_linear_search(pattern: re.Pattern[str]) -> None:
    """Fail unless ``pattern`` backtracks linearly when tried at every start position.

    For ``search()``, ``finditer()``, ``findall()`` and ``sub()``: the rules of
    :func:`assert_linear_match`, and no start that rescans the text an earlier one scanned.

    Raises:
        Quadratic: the pattern has a shape that rescans text.
    """
    analyzer = _Analyzer(pattern)
    items = _parse(pattern)
    analyzer.sequence(items)
    analyzer.check_starts(items)


def quadratic_shape(pattern: re.Pattern[str], *, anchored: bool) -> Optional[str]:
    """The reason ``pattern`` is rejected, or ``None`` if it is accepted."""
    try:
        (assert_linear_match if anchored else assert_linear_search)(pattern)
    except Quadratic as problem:
        return str(problem)
    return None


# --- the package's patterns that read file content, and how each is applied -----------

#: Regexes the package applies with ``match()``/``fullmatch()`` only: one start position.
ANCHORED_USE = frozenset(
    {
        "oauth_gateway._jsonpath._IDENTIFIER",
        "oauth_gateway._tokencheck._B64TOKEN",
        "oauth_gateway._tokencheck._SCOPE",
        "oauth_gateway._tokencheck._TOKEN_TYPE",
    }
)

#: Regexes applied at every start position that the start rules reject, each with the reason
#: it is linear all the same; tests check that reason on the regex itself.
#: ``_JSON_STRUCTURE`` (``finditer``): a string's match cannot fail once it has begun, since its
#: last alternative ``\\?\Z`` takes whatever its loop stopped at, so no start is scanned twice.
CANNOT_FAIL_ONCE_STARTED = frozenset({"oauth_gateway._helpers._JSON_STRUCTURE"})


def _schema_patterns(node: Any) -> List[str]:
    found: List[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.append(value)
            elif key == "patternProperties" and isinstance(value, dict):
                found.extend(value)
            found.extend(_schema_patterns(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_schema_patterns(item))
    return found


def content_regexes() -> Dict[str, re.Pattern[str]]:
    """Every compiled pattern of the package that reads file or server content, by name.

    The bundled schemas' and the built-in providers' options schemas' patterns (validation
    applies them with ``re.search``), and the module-level regexes of the modules that parse
    content.
    """
    from oauth_gateway import _helpers, _http, _jsonpath, _tokencheck, injection, schema
    from oauth_gateway.providers import _BUILTIN_PROVIDERS, get_provider

    regexes: Dict[str, re.Pattern[str]] = {}
    for name in schema.SCHEMA_NAMES:
        for pattern in sorted(set(_schema_patterns(schema.load_schema(name)))):
            regexes["%s: %s" % (name, pattern)] = re.compile(pattern)
    for name in sorted(_BUILTIN_PROVIDERS):  # validate applies their options schemas to file content too
        for pattern in sorted(set(_schema_patterns(get_provider(name).options_schema))):
            regexes["provider %s: %s" % (name, pattern)] = re.compile(pattern)
    for module in (schema, _helpers, _http, _jsonpath, _tokencheck, injection):
        for attribute, value in sorted(vars(module).items()):
            if isinstance(value, type(re.compile(""))):
                regexes["%s.%s" % (module.__name__, attribute)] = value
    return regexes
