"""Tests of tests/linear.py: the static check rejects quadratic patterns and accepts linear ones."""

from __future__ import annotations

import re

import pytest

from linear import Quadratic, assert_linear_match, assert_linear_search, quadratic_shape

#: The legacy_json provider's url pattern before e6ed092: ``[^\s/?#]+[^\s]*`` tried every split
#: of a long URL that ends in a space.
OLD_LEGACY_URL = r"^https://[^\s/?#]+[^\s]*$|\$\{[A-Za-z_][A-Za-z0-9_]*\}"

#: Quadratic (or worse) from one start position, with the reason the check gives.
BAD_FOR_MATCH = {
    r"(a+)+$": "nested in an unbounded repeat",
    r"(a|a)*$": "can match empty",  # the parser makes it a(?:|)
    r"(?:x|xy)+z": "can match empty",  # the parser makes it x(?:|y): an empty branch
    r"(?:ab|ac?)*$": "can match empty",
    r"(?:xy|\wz)*!": "branches can both start with",  # (?:[a-z]|\w) would be one class to the parser
    r"(a*)*$": "can match empty",
    r"(aa?)*$": "nested in an unbounded repeat",
    r"(a?a)*$": "nested in an unbounded repeat",
    r"(a+ba+)*$": "nested in an unbounded repeat",
    r"(\w{1,64})+$": "nested in an unbounded repeat",
    r"\d+\d*x": "two unbounded repeats meet",
    r"\s*(?:,)?\s*$": "two unbounded repeats meet",
    r"[a-z]+(?:x[0-9])?[a-z0-9]*$": "two unbounded repeats meet",
    r"(?i)[a-z]+[A-Z]+$": "two unbounded repeats meet",
    OLD_LEGACY_URL: "two unbounded repeats meet",
}

#: Linear with match() but quadratic when tried at every start position.
BAD_FOR_SEARCH_ONLY = {
    r"\s+$": "leading unbounded repeat",
    r"[A-Za-z0-9+/]+=*\Z": "leading unbounded repeat",
    r"a[a-z]*x": "a later unbounded repeat can consume",
    r"ab[ab]*x": "can recur inside a later unbounded repeat",
    r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"': "a later unbounded repeat can consume",  # an unterminated string
    r"\$\{[^}]*": "can recur inside a later unbounded repeat",
    r"x|(?:y|\w+)!": "leading unbounded repeat",  # per top-level branch
}

#: Linear both ways: the package's shapes (current and idiomatic ones).
GOOD = (
    r"^https://[^\s/?#][^\s]*$|\$\{[A-Za-z_][A-Za-z0-9_]*\}",  # the legacy_json url pattern now
    r"^$|^[!#-\[\]-~]+( [!#-\[\]-~]+)*$",  # scope tokens separated by single spaces
    r"^[^.\s]+(\.[^.\s]+)*$",  # a dotted path: the separator starts every iteration
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
    r"\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]",  # '[ and ' only after a backslash
    r"(?i)\.(cmd|exe|bat|ps1)$",
    r"[\x00-\x1f\x7f-\x9f]",
    r"\A[a-z]+\d*\Z",
    r"(?=x)[a-z]",
)

#: Linear with match(): one start position, however they would fare searched.
GOOD_FOR_MATCH = (
    r"[A-Za-z_][A-Za-z0-9_]*\Z",
    r"[A-Za-z0-9\-._~+/]+=*\Z",
    r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z",
    r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)|[\[\]{}]',  # the unrolled loop: \\ starts each iteration
    r"[a-z]+[0-9]+[a-z]*$",
    r"a+a{0,5}$",  # a bounded second repeat: a constant factor
    r"(?:\d+,)*\d+$",
)


@pytest.mark.parametrize("pattern", sorted(BAD_FOR_MATCH))
def test_the_check_rejects_a_pattern_that_backtracks_from_one_start(pattern: str) -> None:
    with pytest.raises(Quadratic, match=re.escape(BAD_FOR_MATCH[pattern])):
        assert_linear_match(re.compile(pattern))
    with pytest.raises(Quadratic):  # searching adds starts, it takes none of the rules away
        assert_linear_search(re.compile(pattern))


@pytest.mark.parametrize("pattern", sorted(BAD_FOR_SEARCH_ONLY))
def test_the_check_rejects_a_pattern_whose_starts_rescan(pattern: str) -> None:
    assert quadratic_shape(re.compile(pattern), anchored=True) is None
    with pytest.raises(Quadratic, match=re.escape(BAD_FOR_SEARCH_ONLY[pattern])):
        assert_linear_search(re.compile(pattern))


@pytest.mark.parametrize("pattern", GOOD)
def test_the_check_accepts_a_linear_pattern(pattern: str) -> None:
    assert quadratic_shape(re.compile(pattern), anchored=True) is None
    assert quadratic_shape(re.compile(pattern), anchored=False) is None


@pytest.mark.parametrize("pattern", GOOD_FOR_MATCH)
def test_the_check_accepts_a_linear_pattern_applied_with_match(pattern: str) -> None:
    assert quadratic_shape(re.compile(pattern), anchored=True) is None


def test_the_old_legacy_json_url_pattern_is_rejected_and_the_new_one_accepted() -> None:
    from oauth_gateway.providers import get_provider

    options = get_provider("legacy_json").options_schema
    assert options is not None
    current = options["properties"]["url"]["pattern"]
    assert quadratic_shape(re.compile(current), anchored=False) is None
    shape = quadratic_shape(re.compile(OLD_LEGACY_URL), anchored=False)
    assert shape is not None and "two unbounded repeats meet" in shape


def test_a_multiline_caret_does_not_anchor_a_search() -> None:
    assert quadratic_shape(re.compile(r"^\s+x"), anchored=False) is None
    assert quadratic_shape(re.compile(r"(?m)^\s+x"), anchored=False) is not None


def test_a_possessive_or_atomic_repeat_is_not_backtracked_into() -> None:
    if not hasattr(re, "NOFLAG"):  # possessive repeats and atomic groups: Python 3.11+
        pytest.skip("no possessive repeats before Python 3.11")
    assert quadratic_shape(re.compile(r"(?:a++)+$"), anchored=True) is not None  # the outer one backtracks
    assert quadratic_shape(re.compile(r"(?:a+)++$"), anchored=True) is None
