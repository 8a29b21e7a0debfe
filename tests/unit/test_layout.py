"""The layout is a promise (docs/architecture.md): the pure cores do no I/O, read no clock
and log nothing, and the product packages never import the developer tooling."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PURE_PACKAGES = ("contracts", "devices", "ingest", "geofence")
PURE_MODULES = ("api/principal.py", "api/machine.py", "api/personal.py")
"""Pure modules inside an asyncio-side package: the dispatch lifecycle's table, who acts,
and what each principal may see."""
PRODUCT_PACKAGES = ("gateway", "contracts", "devices", "ingest", "geofence", "api")

# What a pure core may import: computation only. Anything else (sockets, asyncio, database
# and Redis clients, logging, the clock, the file system, processes, randomness) belongs to
# the asyncio side.
PURE_IMPORTS = frozenset(
    {
        "__future__", "abc", "array", "base64", "binascii", "bisect", "collections",
        "dataclasses", "datetime", "enum", "functools", "hashlib", "heapq", "itertools",
        "json", "math", "operator", "re", "statistics", "string", "struct", "typing",
        "urllib.parse", "uuid", "zlib",
        "msgspec", "numpy", "pynmea2", "shapely",
        *PURE_PACKAGES,
        *(m.removesuffix(".py").replace("/", ".") for m in PURE_MODULES),
    }
)  # fmt: skip
# Calls that read the clock or touch the world, whatever module they come through (the
# modules themselves are kept out by the import rule; `datetime.now` is not).
BANNED_METHODS = frozenset({"now", "utcnow", "today", "monotonic", "perf_counter", "sleep",
                            "uuid1", "uuid4", "urandom", "getenv", "read_text", "write_text"})  # fmt: skip
BANNED_FUNCTIONS = frozenset({"open", "print", "input", "breakpoint"})


def modules(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((REPO_ROOT / package).rglob("*.py"))


def pure_modules() -> list[Path]:
    return [*modules(*PURE_PACKAGES), *(REPO_ROOT / m for m in PURE_MODULES)]


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def allowed(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:n]) in PURE_IMPORTS for n in range(1, len(parts) + 1))


def called(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in BANNED_METHODS:
                yield node.lineno, func.attr
            elif isinstance(func, ast.Name) and func.id in BANNED_FUNCTIONS:
                yield node.lineno, func.id


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pure_cores_import_only_computation(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert [f"line {n}: import {m}" for n, m in imported(tree) if not allowed(m)] == []


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pure_cores_read_no_clock_and_touch_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert [f"line {n}: {name}()" for n, name in called(tree)] == []


def test_the_pure_packages_are_there() -> None:
    # Guards the two tests above against passing on an empty parameter set.
    assert len(list(modules("devices"))) >= 10 and len(list(modules("ingest"))) >= 3
    assert all((REPO_ROOT / m).is_file() for m in PURE_MODULES)


def test_product_packages_never_import_the_developer_tooling() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)} line {n}: {m}"
        for path in modules(*PRODUCT_PACKAGES)
        for n, m in imported(ast.parse(path.read_text()))
        if m == "devtools" or m.startswith("devtools.")
    ]
    assert found == []


@pytest.mark.parametrize(
    "path", list(modules("gateway", "contracts")), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_the_gateway_and_the_contracts_never_import_the_api(path: Path) -> None:
    """The API imports the contracts and gateway's shared modules, never the other way
    round: `fixgate` gathers the API's commands through an entry point."""
    tree = ast.parse(path.read_text(), str(path))
    assert [f"line {n}: import {m}" for n, m in imported(tree) if m.split(".")[0] == "api"] == []
