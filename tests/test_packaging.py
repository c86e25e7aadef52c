"""Packaging: what the wheel and sdist carry, the command line, and the installed import.

These tests check the package that scripts/test installs (non-editable) into
the leg's virtualenv, and build a wheel and an sdist from a copy of the source
tree in a temporary directory, so nothing is written into the repository.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

import oauth_gateway

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "oauth-gateway"
REQUIRED_SCHEMAS = ("oauth-config.schema.json", "gateway-config.schema.json")
RUNTIME_DEPENDENCIES = {"requests", "urllib3", "cachetools", "jsonschema"}
_ROOT_ONLY_SKIPS = {".git", ".venvs", "build", "dist", ".hypothesis", ".pytest_cache", ".tox"}
_ANYWHERE_SKIPS = {"node_modules", "__pycache__"}


def _is_installed() -> bool:
    try:
        importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _is_installed(),
    reason="oauth-gateway is not installed in this Python; scripts/test installs it",
)


def _source_version() -> str:
    text = (REPO / "oauth_gateway" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match, 'oauth_gateway/_version.py: no __version__ = "X.Y.Z" line'
    return match.group(1)


def _clean_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _ignore_for_copy(directory: str, names: List[str]) -> List[str]:
    at_root = Path(directory).resolve() == REPO
    return [
        name
        for name in names
        if name in _ANYWHERE_SKIPS or (at_root and (name in _ROOT_ONLY_SKIPS or name.endswith(".egg-info")))
    ]


def _run(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=str(cwd),
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Builds the sdist, then the wheel from that sdist, out of a copy of the tree."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    shutil.copytree(str(REPO), str(source), ignore=_ignore_for_copy)
    outdir = base / "dist"
    # --no-isolation: use the setuptools installed by the tests extra, offline.
    result = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(source)],
        cwd=base,
    )
    assert result.returncode == 0, "python -m build failed:\n%s\n%s" % (result.stdout, result.stderr)
    wheels = sorted(outdir.glob("*.whl"))
    sdists = sorted(outdir.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in outdir.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _wheel_names(wheel: Path) -> List[str]:
    with zipfile.ZipFile(str(wheel)) as archive:
        return archive.namelist()


def _sdist_names(sdist: Path) -> List[str]:
    """Returns member paths with the top directory (name-version/) removed."""
    with tarfile.open(str(sdist)) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def test_imported_from_site_packages_not_the_source_tree() -> None:
    module_file = Path(oauth_gateway.__file__).resolve()
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert module_file.parent != REPO / "oauth_gateway", (
        "oauth_gateway was imported from the source tree (%s); run the tests with "
        "scripts/test, which runs the venv's pytest so the installed package is used" % module_file
    )
    assert purelib in module_file.parents, "%s is not under %s" % (module_file, purelib)


def test_installed_version_is_the_source_version() -> None:
    version = _source_version()
    assert oauth_gateway.__version__ == version
    assert importlib.metadata.version(DIST_NAME) == version


def test_installed_package_has_the_schemas() -> None:
    installed = Path(oauth_gateway.__file__).resolve().parent / "schemas"
    for name in REQUIRED_SCHEMAS:
        assert (installed / name).is_file(), "%s is missing from the installed package" % name
    source_names = sorted(p.name for p in (REPO / "schemas").glob("*.json"))
    assert sorted(p.name for p in installed.glob("*.json")) == source_names


def test_runtime_dependencies_are_the_four_with_floors_pinned_in_oldest_constraints() -> None:
    requirements = importlib.metadata.requires(DIST_NAME) or []
    runtime = [r for r in requirements if "extra ==" not in r]
    floors = {}
    for requirement in runtime:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*\(?>=([0-9][^,;)\s]*)", requirement)
        assert match, "install_requires entry without a >= floor: %r" % requirement
        floors[match.group(1).lower()] = match.group(2)
    assert set(floors) == RUNTIME_DEPENDENCIES
    pins = (REPO / "ci" / "constraints-oldest.txt").read_text(encoding="utf-8").split()
    for name, floor in sorted(floors.items()):
        assert "%s==%s" % (name, floor) in pins, "ci/constraints-oldest.txt must pin %s==%s, the floor in setup.cfg" % (
            name,
            floor,
        )


def test_wheel_contains_the_schemas_as_package_data(dists: Dict[str, Path]) -> None:
    names = _wheel_names(dists["wheel"])
    for schema in REQUIRED_SCHEMAS:
        assert "oauth_gateway/schemas/%s" % schema in names
    wheel_schemas = sorted(n for n in names if n.startswith("oauth_gateway/schemas/"))
    source_schemas = sorted("oauth_gateway/schemas/%s" % p.name for p in (REPO / "schemas").glob("*.json"))
    assert wheel_schemas == source_schemas
    assert not [n for n in names if n.startswith(("schemas/", "tests/"))], names
    assert "oauth_gateway/py.typed" in names  # PEP 561: type checkers read the package's annotations
    with zipfile.ZipFile(str(dists["wheel"])) as archive:
        for schema in REQUIRED_SCHEMAS:
            packed = archive.read("oauth_gateway/schemas/%s" % schema)
            assert packed == (REPO / "schemas" / schema).read_bytes()


def test_wheel_declares_the_console_script_and_metadata(dists: Dict[str, Path]) -> None:
    version = _source_version()
    assert dists["wheel"].name.startswith("oauth_gateway-%s-" % version)
    info = "oauth_gateway-%s.dist-info" % version
    with zipfile.ZipFile(str(dists["wheel"])) as archive:
        entry_points = archive.read("%s/entry_points.txt" % info).decode("utf-8")
        metadata = archive.read("%s/METADATA" % info).decode("utf-8")
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser.get("console_scripts", "oauth-gateway").strip() == "oauth_gateway.cli:main"
    assert "Requires-Python: >=3.8" in metadata.splitlines()


def test_sdist_contains_the_schemas_and_no_local_clutter(dists: Dict[str, Path]) -> None:
    names = _sdist_names(dists["sdist"])
    for schema in REQUIRED_SCHEMAS:
        assert "schemas/%s" % schema in names
    for required in ("setup.py", "setup.cfg", "pyproject.toml", "oauth_gateway/__init__.py"):
        assert required in names
    clutter = [n for n in names if "node_modules" in n or "__pycache__" in n or n.startswith(".venvs")]
    assert clutter == []


def test_console_script_prints_the_version(tmp_path: Path) -> None:
    executable = Path(sys.executable).parent / "oauth-gateway"
    assert executable.is_file(), "%s is missing; the console script was not installed" % executable
    result = _run([str(executable), "--version"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert oauth_gateway.__version__ in result.stdout.split()


def test_python_dash_m_prints_the_version(tmp_path: Path) -> None:
    # cwd is an empty directory, so `-m` cannot pick up ./oauth_gateway.
    result = _run([sys.executable, "-m", "oauth_gateway", "--version"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert oauth_gateway.__version__ in result.stdout.split()


def test_the_test_command_is_executable() -> None:
    assert os.access(str(REPO / "scripts" / "test"), os.X_OK), "chmod +x scripts/test"


# Files an sdist must carry so the tests and the docs build can run from it.
SDIST_REQUIRED = (
    "LICENSE",
    "README.rst",
    "CHANGELOG.rst",
    "SECURITY.rst",
    ".pre-commit-hooks.yaml",
    "scripts/test",
    "ci/constraints-oldest.txt",
    "ci/constraints-newest.txt",
    "docs/conf.py",
    "docs/index.rst",
    "docs/_ext/oauth_gateway_docs.py",
    "tests/conftest.py",
    "tests/oidc/package.json",
    "tests/oidc/package-lock.json",
    "tests/e2e/package.json",
    "tests/e2e/package-lock.json",
)
PROJECT_URLS = ("Source", "Documentation", "Changelog", "Issues")


def test_sdist_holds_the_license_docs_test_command_constraints_and_hooks(dists: Dict[str, Path]) -> None:
    names = set(_sdist_names(dists["sdist"]))
    assert [name for name in SDIST_REQUIRED if name not in names] == []
    repo_docs = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "docs").rglob("*")
        if path.is_file() and "_build" not in path.parts and "__pycache__" not in path.parts
    }
    assert sorted(repo_docs - names) == []
    assert not [name for name in names if name.startswith("docs/_build")]


def test_sdist_keeps_the_test_command_executable(dists: Dict[str, Path]) -> None:
    with tarfile.open(str(dists["sdist"])) as archive:
        modes = {m.name.split("/", 1)[1]: m.mode for m in archive.getmembers() if "/" in m.name}
    assert modes["scripts/test"] & 0o111, "scripts/test lost its executable bit in the sdist"


def test_the_license_file_is_the_apache_2_0_text() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _metadata_lines(dists: Dict[str, Path]) -> List[str]:
    info = "oauth_gateway-%s.dist-info" % _source_version()
    with zipfile.ZipFile(str(dists["wheel"])) as archive:
        return archive.read("%s/METADATA" % info).decode("utf-8").splitlines()


def test_wheel_metadata_declares_the_apache_license_and_ships_the_file(dists: Dict[str, Path]) -> None:
    lines = _metadata_lines(dists)
    assert "License: Apache-2.0" in lines or "License-Expression: Apache-2.0" in lines, lines[:30]
    assert "Classifier: License :: OSI Approved :: Apache Software License" in lines
    assert "License-File: LICENSE" in lines
    names = _wheel_names(dists["wheel"])
    licenses = [n for n in names if ".dist-info/" in n and n.endswith("LICENSE")]
    assert licenses, "the wheel carries no LICENSE in its .dist-info"
    assert any(line.startswith("Author: ") and len(line) > len("Author: ") for line in lines)


def test_wheel_metadata_names_the_project_urls(dists: Dict[str, Path]) -> None:
    urls = {}
    for line in _metadata_lines(dists):
        if line.startswith("Project-URL: "):
            label, _, url = line[len("Project-URL: ") :].partition(", ")
            urls[label] = url
    assert sorted(label for label in PROJECT_URLS if label not in urls) == []
    assert all(url.startswith("https://") for url in urls.values()), urls
