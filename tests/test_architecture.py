"""The package's module boundaries, read from the source with ``ast``.

* No module imports a private (``_name``) name of another module, nor reaches into one
  through an imported module (``module._name``).
* The core never imports an adapter, at module level or inside a function, except the
  few lazy imports listed in ``LAZY_CORE_TO_ADAPTER`` with their reason.
* The module-level import graph (``TYPE_CHECKING`` blocks aside) has no cycle.
* Importing the package and running ``oauth-gateway validate`` on a valid file load
  neither ``requests`` nor ``jsonschema``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import oauth_gateway

PACKAGE_DIR = Path(oauth_gateway.__file__).resolve().parent
PACKAGE = "oauth_gateway"

CORE = {
    "_key_checks",
    "tokens",
    "exceptions",
    "config",
    "client",
    "manager",
    "cache",
    "metrics",
    "schema",
    "_helpers",
    "_http",
    "_authflow",
    "_version",
    "_jsonpath",
    "_printable",
    "_tokencheck",
    "_fastschema",
    "discovery",
    "_resolver",
    "_metadata",
    "_jwt",
    "_response",
    "_config_files",
    "_hitcheck",
    "client_auth",
    "endpoint",
    "_redact",
    "dpop",
    "_principal",
    "_refresher",
    "_singleflight",
    "_access",
    "_failures",
    "_revocation",
    "_shared",
    "grants",
    "_subjects",
    "_exchange",
    "_workload",
    "providers",
    "providers.static",
    "providers.legacy_json",
}
ADAPTERS = (
    "auth",
    "injection",
    "gateway",
    "compat",
    "cli",
    "_cli_progress",
    "_cli_reporters",
    "_checkfile",
    "_demo",
    "contrib",
)

# Lazy imports from the core into an adapter, each inside a function and each for a reason.
LAZY_CORE_TO_ADAPTER = {
    # TokenManager.auth() is the documented factory of the requests adapter.
    ("manager", "auth"),
}


class Import(NamedTuple):
    importer: str  # module name relative to the package, like "contrib.file_cache"
    imported: str  # the same, for the module imported from
    names: Tuple[str, ...]  # names taken with "from ... import"
    module_level: bool  # not inside a function, and not under ``if TYPE_CHECKING``
    line: int


def module_names() -> Dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def absolute(importer: str, module: Optional[str], level: int) -> Optional[str]:
    """The imported module relative to the package, or None when it is outside the package."""
    if level == 0:
        if module is None or not (module == PACKAGE or module.startswith(PACKAGE + ".")):
            return None
        return module[len(PACKAGE) + 1 :]
    base = importer.split(".") if importer else []
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_imports(name: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))

    def visit(node: ast.AST, module_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and is_type_checking(child.test):
                yield from visit(child, False)
            elif isinstance(child, ast.ImportFrom):
                target = absolute(name, child.module, child.level)
                if target is None:
                    continue
                names = tuple(alias.name for alias in child.names)
                # "from . import schema" imports a module: record the module itself.
                submodules = [n for n in names if (target + "." + n).strip(".") in MODULES]
                for sub in submodules:
                    yield Import(name, (target + "." + sub).strip("."), (), module_level, child.lineno)
                rest = tuple(n for n in names if n not in submodules)
                if rest:
                    yield Import(name, target, rest, module_level, child.lineno)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    target = absolute(name, alias.name, 0)
                    if target is not None:
                        yield Import(name, target, (), module_level, child.lineno)
            else:
                yield from visit(child, module_level)

    return visit(tree, True)


ALL_IMPORTS = [imp for name in MODULES for imp in walk_imports(name)]


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_adapter(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ADAPTERS)


def test_the_walker_sees_the_package_and_its_imports() -> None:
    assert {"cache", "manager", "contrib.store", "contrib.file_cache", "contrib.django.checks"} <= set(MODULES)
    edges = {(imp.importer, imp.imported) for imp in ALL_IMPORTS}
    assert ("manager", "cache") in edges
    assert ("contrib.file_cache", "contrib.store") in edges
    assert ("gateway", "schema") in edges  # "from . import schema" is an import of the module


def test_every_module_is_either_core_or_an_adapter() -> None:
    # A new module must choose a side, so the rule below covers it.
    unplaced = sorted(
        name for name in MODULES if name not in CORE and not is_adapter(name) and name not in ("", "__main__")
    )
    assert unplaced == []


def test_no_module_imports_a_private_name_of_another_module() -> None:
    offenders = [
        "%s:%d imports %s from %s" % (imp.importer, imp.line, name, imp.imported or PACKAGE)
        for imp in ALL_IMPORTS
        for name in imp.names
        if is_private(name)
    ]
    assert offenders == []


def test_no_module_reaches_into_another_module_through_a_private_attribute() -> None:
    offenders = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: Set[str] = set()  # local names bound to modules of the package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = absolute(name, node.module, node.level)
                if target is None:
                    continue
                for alias in node.names:
                    if (target + "." + alias.name).strip(".") in MODULES:
                        bound.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if absolute(name, alias.name, 0) is not None and alias.asname:
                        bound.add(alias.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and is_private(node.attr)
            ):
                offenders.append("%s:%d uses %s.%s" % (name, node.lineno, node.value.id, node.attr))
    assert offenders == []


def test_the_core_never_imports_an_adapter() -> None:
    offenders = [
        "%s:%d imports %s" % (imp.importer, imp.line, imp.imported)
        for imp in ALL_IMPORTS
        if imp.importer in CORE
        and is_adapter(imp.imported)
        and not (not imp.module_level and (imp.importer, imp.imported) in LAZY_CORE_TO_ADAPTER)
    ]
    assert offenders == []


def test_every_allowed_lazy_import_still_exists_and_is_lazy() -> None:
    found = {(imp.importer, imp.imported): imp.module_level for imp in ALL_IMPORTS}
    for edge in LAZY_CORE_TO_ADAPTER:
        if edge[0] in MODULES:
            assert found.get(edge) is False, "%s -> %s is listed as a lazy import" % edge


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def module_level_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        if not imp.module_level or imp.importer == imp.imported:
            continue
        graph[imp.importer].add(imp.imported)
    # Importing "a.b" runs the package "a" first; the package's own __init__ is not a
    # dependency of its submodules' logic, so only real imports count (no parent edges).
    return graph


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_module_level_import_graph_has_no_cycle() -> None:
    assert find_cycle(module_level_graph()) is None


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=str(PACKAGE_DIR.parent)
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_the_package_loads_neither_requests_nor_jsonschema() -> None:
    out = run_python(
        "import sys, oauth_gateway\n"
        "print(sorted(m for m in ('requests', 'jsonschema', 'urllib3', 'cachetools') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_validating_a_valid_file_loads_neither_requests_nor_jsonschema(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        '{"mcp_configs": {"c1": {"mcp_config_name": "default_config", "mcp_config": [{"server_name": "api",'
        ' "config": {"command": "npx", "args": []}, "oauth_config": {"enabled": true, "OAUTH_VERSION": "2.1",'
        ' "OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": "${S}", "OAUTH_TOKEN_URL": "https://idp.example/token"}}]}}}'
    )
    out = run_python(
        "import sys\n"
        "from oauth_gateway.cli import main\n"
        "status = main(['validate', %r])\n"
        "print(status, sorted(m for m in ('requests', 'jsonschema') if m in sys.modules))" % str(good)
    )
    assert out.splitlines()[-1] == "0 []"


def test_the_lazy_package_still_lists_and_resolves_every_public_name() -> None:
    out = run_python(
        "import oauth_gateway as og\n"
        "missing = [n for n in og.__all__ if n not in dir(og)]\n"
        "values = [getattr(og, n) for n in og.__all__]\n"
        "print(missing, len(values), og.cache_from_settings.__module__)"
    )
    assert out.strip() == "[] %d oauth_gateway.contrib.cache_settings" % len(oauth_gateway.__all__)


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    try:
        oauth_gateway.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:  # pragma: no cover
        raise AssertionError("no AttributeError")


# The public surface: STYLE.md "Public API" and "Private by default".
MAX_PUBLIC_NAMES = 90


def public_modules() -> List[str]:
    """Module paths with no ``_``-prefixed part: the package itself included."""
    return [name for name in MODULES if not any(part.startswith("_") for part in name.split(".") if part)]


def module_tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"))


def declared_all(name: str) -> Optional[Tuple[str, ...]]:
    for node in module_tree(name).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert node.value is not None
            return tuple(ast.literal_eval(node.value))
    return None


def top_level_bindings(name: str) -> Dict[str, ast.AST]:
    """Every name a module binds at top level (inside ``if``/``try`` too), with its node."""
    found: Dict[str, ast.AST] = {}

    def visit(body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found[node.target.id] = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    found[(alias.asname or alias.name).split(".")[0]] = node
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(module_tree(name).body)
    return found


def definition(module: str, name: str) -> Optional[ast.AST]:
    """The node that defines ``module.name``, following ``from .x import name`` inside the package."""
    for _hop in range(10):
        node = top_level_bindings(module).get(name)
        if not isinstance(node, ast.ImportFrom):
            return node
        target = absolute(module, node.module, node.level)
        if target is None or target not in MODULES:
            return node
        original = next(alias.name for alias in node.names if (alias.asname or alias.name) == name)
        if (target + "." + original).strip(".") in MODULES:
            return node  # a submodule
        module, name = target, original
    return None  # pragma: no cover


def test_every_public_module_lists_all() -> None:
    missing = [name or PACKAGE for name in public_modules() if declared_all(name) is None]
    assert missing == []


def test_the_public_names_are_few() -> None:
    names: Set[str] = set(oauth_gateway.__all__)
    for name in public_modules():
        names.update(declared_all(name) or ())
    assert len(names) <= MAX_PUBLIC_NAMES, sorted(names)


def test_every_name_in_an_all_exists_and_has_a_docstring() -> None:
    problems = []
    for module in public_modules():
        for name in declared_all(module) or ():
            if module == "":
                continue  # the package's names are lazy: checked below and in the test above
            node = definition(module, name)
            if node is None:
                problems.append("%s.%s: not defined" % (module, name))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not ast.get_docstring(
                node
            ):
                problems.append("%s.%s: no docstring" % (module, name))
    for name in oauth_gateway.__all__:
        value = getattr(oauth_gateway, name)
        if isinstance(value, type) or callable(value):
            if not value.__doc__:
                problems.append("oauth_gateway.%s: no docstring" % name)
    assert problems == []


def test_the_surface_checks_see_a_module_without_all() -> None:
    assert declared_all("contrib") == ()
    assert "Token" in (declared_all("tokens") or ())
    assert isinstance(definition("", "__version__"), ast.AST)
