"""The documentation in docs/: it builds with warnings as errors, its links hold, and
its generated references cover every schema key and every command.

The site is built once per module with ``python -m sphinx -W --keep-going -n`` from
the installed package (autodoc imports it) into a temporary directory. Links are
checked here rather than with Sphinx's ``linkcheck`` builder, which needs the network:
every ``href`` and ``src`` that stays inside the site must name an existing file and,
when it has a ``#fragment``, an element with that id.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple
from urllib.parse import unquote, urlsplit

import pytest

from oauth_gateway import cli
from oauth_gateway.schema import load_schema

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


class _Page(HTMLParser):
    """Collects a page's ids, its links, and the text of the elements we look for."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: Set[str] = set()
        self.links: List[str] = []
        self.confkeys: List[str] = []
        self.headings: List[str] = []
        self._capture: List[Tuple[str, List[str], List[str]]] = []  # (tag, sink, text parts)

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, object]]) -> None:
        values = {name: value for name, value in attrs if isinstance(value, str)}
        for name in ("id", "name"):
            if name in values and (name == "id" or tag == "a"):
                self.ids.add(values[name])
        for name in ("href", "src"):
            if name in values and tag in ("a", "img", "script", "link"):
                self.links.append(values[name])
        if tag == "dt" and values.get("id", "").startswith("confkey-"):
            self._capture.append((tag, self.confkeys, []))
        elif tag in ("h1", "h2", "h3"):
            self._capture.append((tag, self.headings, []))

    def handle_endtag(self, tag: str) -> None:
        if self._capture and self._capture[-1][0] == tag:
            _, sink, parts = self._capture.pop()
            sink.append(" ".join("".join(parts).replace("\u00b6", "").split()))

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._capture:
            parts.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    out = tmp_path_factory.mktemp("docs-html")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-b",
            "html",
            "-d",
            str(out / ".doctrees"),
            str(DOCS),
            str(out),
        ],
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    return {"out": out, "result": result, "seconds": time.monotonic() - started}


def _pages(out: Path) -> Dict[str, _Page]:
    pages = {}
    for path in sorted(out.rglob("*.html")):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.relative_to(out).as_posix()] = page
    return pages


def _internal_targets(source: str, links: List[str]) -> Iterator[Tuple[str, str, str]]:
    """Yields (link, target file, fragment) for links that stay inside the site."""
    for link in links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc:
            continue  # http(s):, mailto:, //host: outside the site
        path = unquote(parts.path)
        target = posixpath.normpath(posixpath.join(posixpath.dirname(source), path)) if path else source
        yield link, target, unquote(parts.fragment)


def test_the_docs_build_with_warnings_as_errors_and_nitpicky_references(site: Dict[str, object]) -> None:
    result = site["result"]
    assert result.returncode == 0, "sphinx-build failed:\n%s\n%s" % (result.stdout, result.stderr)
    assert "WARNING" not in result.stderr, result.stderr
    assert (site["out"] / "index.html").is_file()


def test_every_internal_link_names_an_existing_page_and_anchor(site: Dict[str, object]) -> None:
    out = site["out"]
    pages = _pages(out)
    assert "api.html" in pages and "configuration.html" in pages and "cli.html" in pages
    broken = []
    checked = 0
    for source, page in pages.items():
        for link, target, fragment in _internal_targets(source, page.links):
            checked += 1
            if not (out / target).is_file():
                broken.append("%s: %s (no file %s)" % (source, link, target))
            elif fragment and target.endswith(".html") and fragment not in pages[target].ids:
                broken.append("%s: %s (no id %r in %s)" % (source, link, fragment, target))
    assert broken == [], "\n".join(broken)
    assert checked > 500, "only %d internal links found; is the site empty?" % checked


def test_every_public_name_has_an_entry_in_the_api_reference(site: Dict[str, object]) -> None:
    import oauth_gateway

    ids = _pages(site["out"])["api.html"].ids
    missing = [name for name in oauth_gateway.__all__ if "oauth_gateway.%s" % name not in ids]
    assert missing == []


def _property_names(schema: object) -> Iterator[str]:
    """Every key under a "properties" object, at any depth, except in the conditional
    rules (if/then/else/not), which only repeat keys declared elsewhere."""
    if isinstance(schema, dict):
        for keyword, value in schema.items():
            if keyword in ("if", "then", "else", "not", "allOf", "anyOf", "oneOf"):
                continue
            if keyword == "properties" and isinstance(value, dict):
                for name, child in value.items():
                    yield name
                    yield from _property_names(child)
            else:
                yield from _property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _property_names(item)


def test_every_oauth_config_key_is_in_the_configuration_reference(site: Dict[str, object]) -> None:
    schema = load_schema("oauth-config")
    documented = set(_pages(site["out"])["configuration.html"].confkeys)
    keys = list(schema["properties"])
    assert "OAUTH_TOKEN_URL" in keys
    assert [key for key in keys if key not in documented] == []


def test_every_gateway_file_key_is_in_the_configuration_reference(site: Dict[str, object]) -> None:
    names = set(_property_names(load_schema("gateway-config")))
    assert {"mcp_configs", "server_name", "oauth_config", "env"} <= names
    documented = _pages(site["out"])["configuration.html"].confkeys
    paths = [key for key in documented if key.startswith("$.")]
    last_segments = {re.split(r"[.\]]", path)[-1] for path in paths}
    assert sorted(names - last_segments) == []


def test_each_key_shows_its_type_default_and_allowed_values(site: Dict[str, object]) -> None:
    text = (site["out"] / "configuration.html").read_text(encoding="utf-8")
    version = text.split('id="confkey-OAUTH_VERSION"', 1)[1].split('id="confkey-', 1)[0]
    assert "Type" in version and "string" in version
    assert "Default" in version and json.dumps("2.0") in version.replace("&quot;", '"')
    assert "Allowed values" in version and json.dumps("2.1") in version.replace("&quot;", '"')


def _help(argv: List[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(argv + ["--help"], stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def _commands(prefix: List[str]) -> Iterator[List[str]]:
    """Walks the command line through its public entry point, `main([... '--help'])`."""
    yield prefix
    lines = _help(prefix).splitlines()
    for index, line in enumerate(lines):
        if line.endswith("commands:"):
            for entry in lines[index + 1 :]:
                if not entry.startswith("  "):
                    break
                match = re.match(r"^    ([a-z][a-z0-9-]*)(\s|$)", entry)
                if match:
                    yield from _commands(prefix + [match.group(1)])


def test_every_command_and_option_is_in_the_cli_reference(site: Dict[str, object]) -> None:
    page = _pages(site["out"])["cli.html"]
    commands = list(_commands([]))
    assert ["config", "add-server"] in commands and ["validate"] in commands
    missing = []
    for command in commands:
        title = " ".join(["oauth-gateway"] + command)
        if title not in page.headings:
            missing.append(title)
        options_part = _help(command).split("\nexample:", 1)[0]  # the epilog names other commands' flags
        for option in sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", options_part))):
            anchor = "cmdoption-%s%s" % ("-".join(title.split()), option[1:])
            if anchor not in page.ids:
                missing.append("%s %s" % (title, option))
    assert missing == []


# --------------------------------------------------------------------------- layout in a browser

#: The pages a newcomer reads first, and where on each to look (an element id, or "" for the top).
LAYOUT_PAGES = [
    ("configuration.html", ""),
    ("configuration.html", "confkey-OAUTH_RESOURCE"),
    ("api.html", ""),
    ("api.html", "oauth_gateway.TokenManager.get_token"),
    ("quickstart.html", ""),
]
#: A desktop and a phone.
WIDTHS = (1280, 390)
#: Where the screenshots go: look at them (docs/_build/ is ignored by git).
SCREENSHOTS = DOCS / "_build" / "screenshots"

#: Runs in the page; returns every layout problem found, as text.
_LAYOUT_CHECK = r"""
(() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const main = document.querySelector("article[role=main]") || document.body;
  if (document.documentElement.scrollWidth > width + 1)
    problems.push("the page scrolls sideways: " + document.documentElement.scrollWidth + " px wide in " + width);
  // 1. No element of the content wider than the viewport, unless inside a box that scrolls.
  const scrolls = (el) => { const o = getComputedStyle(el).overflowX; return o === "auto" || o === "scroll"; };
  for (const el of main.querySelectorAll("*")) {
    if (!visible(el)) continue;
    let inside = false;
    for (let up = el.parentElement; up && up !== main; up = up.parentElement) if (scrolls(up)) { inside = true; break; }
    if (inside) continue;
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 || r.left < -1) { problems.push("wider than the viewport: " + describe(el) + " (" + Math.round(r.left) + ".." + Math.round(r.right) + ")"); if (problems.length > 20) break; }
  }
  // 2. No label or table cell wraps inside a word (code literals may break: they are not words).
  const labels = main.querySelectorAll("dl.field-list > dt, table td, table th, dl.confkey > dt");
  for (const el of labels) {
    if (!visible(el)) continue;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest("code, pre, .sig")) continue;
      for (const match of node.data.matchAll(/\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) problems.push("the word " + JSON.stringify(match[0]) + " wraps inside " + describe(el));
      }
    }
  }
  // 3. Code blocks scroll instead of clipping.
  for (const pre of main.querySelectorAll("div.highlight pre, pre.literal-block")) {
    if (!visible(pre)) continue;
    const overflow = getComputedStyle(pre).overflowX;
    if (pre.scrollWidth > pre.clientWidth + 1 && overflow !== "auto" && overflow !== "scroll")
      problems.push("a code block is clipped (overflow-x: " + overflow + "): " + pre.textContent.slice(0, 40));
    const r = pre.getBoundingClientRect();
    if (r.right > width + 1) problems.push("a code block is wider than the viewport: " + pre.textContent.slice(0, 40));
  }
  return problems.slice(0, 40);
})()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from chromium import Chromium, find_chromium

    binary = find_chromium()
    assert binary, "the layout tests need Debian's chromium: apt-get install chromium (.ci/run installs it)"
    with Chromium(binary) as running:
        yield running


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page_name, anchor", LAYOUT_PAGES)
def test_the_reference_pages_fit_the_screen_and_wrap_only_between_words(
    site: Dict[str, object], browser: object, page_name: str, anchor: str, width: int
) -> None:
    assert site["result"].returncode == 0, site["result"].stderr
    url = (site["out"] / page_name).as_uri() + ("#" + anchor if anchor else "")
    page = browser.page(url, width)  # type: ignore[attr-defined]
    try:
        if anchor:
            found = "document.getElementById(%s)" % json.dumps(anchor)
            # Furo scrolls smoothly; the screenshot wants the end of the scroll.
            jump = "(document.documentElement.style.scrollBehavior = 'auto', %s.scrollIntoView(), true)" % found
            assert page.evaluate("!!%s && %s" % (found, jump)), anchor
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = "%s%s-%d.png" % (page_name[: -len(".html")], "-" + anchor.replace(".", "-") if anchor else "", width)
        page.screenshot(str(SCREENSHOTS / shot))
        problems = page.evaluate(_LAYOUT_CHECK)
    finally:
        page.close()
    assert problems == [], "%s at %d px:\n%s" % (page_name, width, "\n".join(problems))


def test_the_layout_check_sees_a_clipped_code_block_and_a_word_split(tmp_path: Path, browser: object) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<html><body><article role=main>"
        "<div class=highlight><pre style='overflow-x: hidden; width: 200px'>%s</pre></div>"
        "<dl class=field-list><dt style='width: 30px; word-break: break-all'>Parameters:</dt><dd>x</dd></dl>"
        "<table><tr><td><div style='width: 2000px'>wide</div></td></tr></table>"
        "</article></body></html>" % ("x" * 400),
        encoding="utf-8",
    )
    page = browser.page(broken.as_uri(), 390)  # type: ignore[attr-defined]
    try:
        problems = page.evaluate(_LAYOUT_CHECK)
    finally:
        page.close()
    text = "\n".join(problems)
    assert "a code block is clipped" in text
    assert 'the word "Parameters:" wraps inside dt' in text
    assert "wider than the viewport" in text and "the page scrolls sideways" in text


def _public_modules() -> List[str]:
    import pkgutil

    import oauth_gateway

    names = ["oauth_gateway"]
    for found in pkgutil.walk_packages(oauth_gateway.__path__, "oauth_gateway."):
        if not any(part.startswith("_") for part in found.name.split(".")[1:]):
            names.append(found.name)
    return names


def _public_names(module_name: str) -> List[str]:
    """A module's public names: its ``__all__``, else what it defines without a leading ``_``."""
    import importlib

    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module_name
    ]


def test_every_public_name_of_every_public_module_is_in_the_api_reference(site: Dict[str, object]) -> None:
    import oauth_gateway

    ids = _pages(site["out"])["api.html"].ids
    missing = []
    for module_name in _public_modules():
        if module_name.startswith("oauth_gateway.contrib.httpx"):
            continue  # the httpx adapters' page documents them
        for name in _public_names(module_name):
            value = getattr(__import__(module_name, fromlist=[name]), name, None)
            is_package_name = name in oauth_gateway.__all__ and getattr(oauth_gateway, name, None) is value
            wanted = "oauth_gateway.%s" % name if is_package_name else "%s.%s" % (module_name, name)
            if wanted not in ids:
                missing.append(wanted)
    assert missing == [], "\n".join(missing)


def test_the_api_reference_goes_by_concept_with_errors_last(site: Dict[str, object]) -> None:
    headings = _pages(site["out"])["api.html"].headings
    order = ["The manager and tokens", "Configuration", "Auth objects", "The gateway file and injection", "Caches"]
    order += ["Contrib adapters", "Errors"]
    assert [heading for heading in headings if heading in order] == order
    assert headings[-1] == "Errors"


def test_the_configuration_reference_shows_no_regular_expression(site: Dict[str, object]) -> None:
    text = (site["out"] / "configuration.html").read_text(encoding="utf-8")
    for marker in ("^$|", "[A-Za-z_]", "\\s", "(?!", "]*$"):
        assert marker not in text, marker
    scope = text.split('id="confkey-OAUTH_SCOPE"', 1)[1].split('id="confkey-', 1)[0]
    assert "must be scope tokens separated by single spaces" in scope  # the schema's x-message, in words


def test_the_configuration_reference_has_the_gateway_wide_keys_and_the_environment(site: Dict[str, object]) -> None:
    keys = set(_pages(site["out"])["configuration.html"].confkeys)
    assert {
        "$.common_mcp_gateway_config.oauth_token_cache",
        "$.common_mcp_gateway_config.oauth_token_cache_encryption_key",
        "OAUTH_GATEWAY_CONFIG",
        "OAUTH_GATEWAY_TOKEN_CACHE",
        "OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY",
        "OAUTH_GATEWAY_DEMO_SECRET",
    } <= keys


def test_the_readme_is_a_front_page_whose_test_command_is_scripts_test() -> None:
    text = (REPO / "README.rst").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "\n    scripts/test\n" in text
    assert "repo: <repository-url>" in text and "id: oauth-gateway-validate" in text
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    assert "- id: oauth-gateway-validate" in hooks
    assert "docs/_build/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
