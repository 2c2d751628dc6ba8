"""The promises of the package layout, checked on its import graph (read statically with ``ast``).

Every import counts: top-level, inside a function, under ``if TYPE_CHECKING:``, and a module
named in a string (``"lambdamr.storage.s3:S3Storage"`` in a registry, a lazy ``__getattr__``
table), because each is a dependency a reader must follow. What is checked:

- no import cycle among lambdamr's modules;
- the remote set (``REMOTE_MODULES``, the function package) imports nothing outside itself,
  and ``lambdamr.runtime`` nothing of the driver, the executor, the backends, deploy or the CLI;
- boto3 and botocore are imported only by storage, the backends, deploy and the test helpers
  (the few exceptions are listed below with their reason);
- the library never imports ``lambdamr.testing`` (public test helpers, like httpx's MockTransport);
- no module uses a private name (``_name``) of another lambdamr module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import lambdamr
from lambdamr.runtime.remote_modules import REMOTE_MODULES, REMOTE_PACKAGES, SHARED_MODULES, remote_modules

PACKAGE = Path(lambdamr.__file__).resolve().parent
#: a string that names a lambdamr module, maybe with an attribute: "lambdamr.x.y" or "lambdamr.x:Name"
MODULE_REFERENCE = re.compile(r"lambdamr(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?")

#: the public facade: its names load lazily (``__getattr__``, ``TYPE_CHECKING``), so importing
#: it on Lambda runs only ``_version``, yet it names the driver's modules for type checkers
FACADE = "lambdamr"
#: imports of boto3/botocore outside storage, backends, deploy and testing, and why each is there
BOTO_OUTSIDE_AWS_FOLDERS = {
    "lambdamr.aws_region": "asks boto3's session for the profile's region when none is configured",
    "lambdamr.runtime.key_source": "fetches the deployment's signing key from Secrets Manager on Lambda",
}
BOTO_FOLDERS = ("lambdamr.storage", "lambdamr.backends", "lambdamr.deploy", "lambdamr.testing")
#: what the runtime must never import, even for type checking
DRIVER_SIDE = ("lambdamr.driver", "lambdamr.executor", "lambdamr.backends", "lambdamr.deploy", "lambdamr.cli")


@dataclass(frozen=True)
class Import:
    """One dependency of ``importer`` on ``target`` (a lambdamr module, or a foreign top-level name)."""

    importer: str
    target: str
    line: int
    names: tuple[str, ...] = ()  # what ``from target import ...`` takes, when those are not modules

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) -> {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, ast.Module]:
    """Every lambdamr module's syntax tree, by dotted name."""
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(module: str) -> bool:
    return (PACKAGE.parent.joinpath(*module.split(".")) / "__init__.py").is_file()


def owning_module(dotted: str) -> str:
    """The longest prefix of ``dotted`` that is a lambdamr module."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in sources():
            return candidate
    raise AssertionError(f"{dotted!r} names no lambdamr module")


def _bare_strings(tree: ast.Module) -> set[int]:
    """Ids of the string statements (docstrings): prose, not references."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def _compared_strings(tree: ast.Module) -> set[int]:
    """Ids of the strings compared with something (``"lambdamr.x" in sys.modules``): tests, not imports."""
    return {
        id(operand)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        for operand in (node.left, *node.comparators)
        if isinstance(operand, ast.Constant)
    }


def imports_of(module: str) -> Iterator[Import]:
    tree = sources()[module]
    package = module if is_package(module) else module.rpartition(".")[0]
    prose = _bare_strings(tree) | _compared_strings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                yield Import(module, owning_module(alias.name) if top == "lambdamr" else top, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "lambdamr":
                yield Import(module, base.split(".")[0], node.lineno)
                continue
            submodules = [a.name for a in node.names if f"{base}.{a.name}" in sources()]
            others = tuple(a.name for a in node.names if a.name not in submodules)
            for name in submodules:
                yield Import(module, f"{base}.{name}", node.lineno)
            if others:
                yield Import(module, owning_module(base), node.lineno, others)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if MODULE_REFERENCE.fullmatch(node.value):
                target = owning_module(node.value.partition(":")[0])
                if target != module:
                    yield Import(module, target, node.lineno)


@cache
def _edges(module: str, tree: ast.Module) -> tuple[Import, ...]:
    return tuple(imports_of(module))


def edges(module: str) -> tuple[Import, ...]:
    """Every import of ``module`` (kept per syntax tree: a test may add a module to the package)."""
    return _edges(module, sources()[module])


def internal(module: str) -> list[Import]:
    return [i for i in edges(module) if i.target.startswith("lambdamr") and i.target != module]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in internal(node):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(sources()):
        if module not in index:
            visit(module)
    return found


def test_the_graph_reader_sees_every_kind_of_import() -> None:
    """The reader itself: function-level, TYPE_CHECKING and by-name imports all count."""
    handler = {i.target for i in edges("lambdamr.runtime.handler")}
    assert "lambdamr.protocol" in handler and "cloudpickle" in handler
    assert {"lambdamr.storage.local", "lambdamr.storage.s3"} <= {i.target for i in edges("lambdamr.storage")}  # by name
    facade = {i.target for i in edges(FACADE)}
    assert {"lambdamr.executor", "lambdamr.driver.job", "lambdamr._version"} <= facade  # TYPE_CHECKING and by name
    assert "boto3" in {i.target for i in edges("lambdamr.runtime.key_source")}  # inside a function


def test_no_import_cycle() -> None:
    found = cycles()
    assert not found, "import cycles (break each by moving the shared part down into a module both can import):\n" + "\n".join(
        " <-> ".join(component) for component in found
    )


def test_remote_set_is_the_remote_packages_and_the_shared_modules() -> None:
    assert REMOTE_MODULES == remote_modules()
    on_disk = {m for m in sources() if any(within(m, package) for package in REMOTE_PACKAGES)}
    assert set(REMOTE_PACKAGES) == {"lambdamr.runtime", "lambdamr.storage", "lambdamr.shuffle", "lambdamr.data"}
    assert on_disk | set(SHARED_MODULES) == set(REMOTE_MODULES)
    assert all(m in sources() for m in SHARED_MODULES), "a shared module named in remote_modules.py has no file"


@pytest.mark.parametrize("module", sorted(m for m in REMOTE_MODULES if m != FACADE))
def test_remote_module_imports_close_within_the_remote_set(module: str) -> None:
    outside = [str(i) for i in internal(module) if i.target not in REMOTE_MODULES]
    assert not outside, (
        f"{module} runs on Lambda but imports modules the function package does not hold: {outside}. "
        "Move what it needs into a remote package (runtime, storage, shuffle, data), or add a top-level module "
        "to SHARED_MODULES in lambdamr/runtime/remote_modules.py if it really runs on both sides"
    )


def test_runtime_imports_nothing_of_the_driver() -> None:
    runtime = [m for m in sources() if within(m, "lambdamr.runtime")]
    wrong = [str(i) for m in runtime for i in internal(m) if any(within(i.target, d) for d in DRIVER_SIDE)]
    assert not wrong, f"lambdamr.runtime must not depend on the driver side: {wrong}"


def test_boto3_only_in_storage_backends_deploy_and_testing() -> None:
    wrong = [
        str(i)
        for module in sources()
        for i in edges(module)
        if i.target in ("boto3", "botocore")
        and not any(within(module, folder) for folder in BOTO_FOLDERS)
        and module not in BOTO_OUTSIDE_AWS_FOLDERS
    ]
    assert not wrong, f"boto3/botocore imported outside {BOTO_FOLDERS}: {wrong} (go through lambdamr.storage or a backend)"


def test_allowed_boto3_exceptions_are_real_modules_that_use_it() -> None:
    """An exception to the boto3 rule goes away with its last use: the list cannot go stale."""
    for module in BOTO_OUTSIDE_AWS_FOLDERS:
        assert module in sources(), f"{module} is gone: drop it from BOTO_OUTSIDE_AWS_FOLDERS"
        assert {"boto3", "botocore"} & {i.target for i in edges(module)}, f"{module} no longer imports boto3: drop it"


def test_library_never_imports_testing() -> None:
    library = [m for m in sources() if not within(m, "lambdamr.testing")]
    wrong = [str(i) for m in library for i in internal(m) if within(i.target, "lambdamr.testing")]
    assert not wrong, f"lambdamr.testing holds test helpers only; the library must not import them: {wrong}"


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_aliases(module: str) -> dict[str, str]:
    """Local name -> the lambdamr module it is bound to, for ``import`` and ``from ... import module``."""
    aliases: dict[str, str] = {}
    for node in ast.walk(sources()[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lambdamr":
                    aliases[alias.asname or "lambdamr"] = alias.name if alias.asname else "lambdamr"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lambdamr":
            for alias in node.names:
                if f"{node.module}.{alias.name}" in sources():
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def private_names_defined(module: str) -> frozenset[str]:
    """The private names ``module`` binds: functions, classes, variables, attributes it sets, parameters."""
    names: set[str] = set()
    for node in ast.walk(sources()[module]):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return frozenset(name for name in names if is_private(name))


@cache
def _private_names(module: str, tree: ast.Module) -> frozenset[str]:
    return private_names_defined(module)


def private_owners() -> dict[str, frozenset[str]]:
    return {module: _private_names(module, tree) for module, tree in sources().items()}


def private_uses(module: str) -> Iterator[str]:
    for edge in internal(module):
        for name in edge.names:
            if is_private(name):
                yield f"{edge}: imports {name}"
    aliases = module_aliases(module)
    for node in ast.walk(sources()[module]):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            path = dotted(node.value)
            if path is None or path.split(".")[0] not in aliases:
                continue
            head, _, rest = path.partition(".")
            target = owning_module(".".join(filter(None, [aliases[head], rest])))
            if target != module and f"{target}.{node.attr}" not in sources():
                yield f"{module} (line {node.lineno}) uses {path}.{node.attr}"
    # An object's private attribute that this module never binds but another lambdamr module
    # does (``self.executor._run_job``): reaching into another module's class. ``self._x`` and
    # ``cls._x`` are left out: a subclass may use what its base (maybe the stdlib's) keeps.
    own = private_owners()[module]
    for node in ast.walk(sources()[module]):
        if not (isinstance(node, ast.Attribute) and is_private(node.attr)) or node.attr in own:
            continue
        if isinstance(node.value, ast.Name) and (node.value.id in ("self", "cls") or node.value.id in aliases):
            continue
        owners = sorted(other for other, names in private_owners().items() if node.attr in names and other != module)
        if owners:
            yield f"{module} (line {node.lineno}) uses {ast.unparse(node)}, private to {', '.join(owners)}"


def test_no_private_name_of_another_module_is_used() -> None:
    wrong = [use for module in sources() for use in private_uses(module)]
    assert not wrong, "private names used across modules (make them public, or move the code that needs them):\n" + "\n".join(
        wrong
    )


@contextmanager
def with_modules(extra: dict[str, str]) -> Iterator[None]:
    """The graph as if ``extra`` (dotted name -> source) were in the package: the checks on
    modules written to break them, so that each check is shown able to fail."""
    assert not extra.keys() & sources().keys()
    sources().update({name: ast.parse(code) for name, code in extra.items()})
    try:
        yield
    finally:
        for name in extra:
            del sources()[name]


def test_private_use_detector_catches_every_form() -> None:
    owner = "class Runner:\n    def _run_job(self):\n        return 1\n"
    sample = (
        "from lambdamr.driver.job import _hidden\nfrom lambdamr import serialize\nserialize._secret()\n"
        "def f(runner):\n    return runner.inner._run_job()\n"
    )
    with with_modules({"lambdamr.sample_owner": owner, "lambdamr.sample_user": sample}):
        uses = list(private_uses("lambdamr.sample_user"))
        assert not list(private_uses("lambdamr.sample_owner"))
    assert "lambdamr.sample_user" not in sources()
    assert any("imports _hidden" in u for u in uses) and any("serialize._secret" in u for u in uses), uses
    assert any("runner.inner._run_job" in u and "lambdamr.sample_owner" in u for u in uses), uses


def test_cycle_finder_sees_a_cycle_through_type_checking_and_a_function() -> None:
    first = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lambdamr.sample_b import B\n"
    second = "def f():\n    from lambdamr.sample_a import A\n"
    with with_modules({"lambdamr.sample_a": first, "lambdamr.sample_b": second}):
        found = cycles()
    assert ["lambdamr.sample_a", "lambdamr.sample_b"] in found


def test_remote_closure_sees_a_lazy_import_by_name() -> None:
    sample = "import importlib\ndef load():\n    return importlib.import_module('lambdamr.executor')\n"
    with with_modules({"lambdamr.runtime.sample": sample}):
        targets = {i.target for i in internal("lambdamr.runtime.sample")}
    assert "lambdamr.executor" in targets and "lambdamr.executor" not in REMOTE_MODULES
