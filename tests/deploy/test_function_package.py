"""The function package holds every module that runs remotely, and nothing of the driver.

Each check runs the package the way Lambda does: unpacked into an empty folder (``/var/task``)
with only the layer's packages beside it (``/opt/python``), in ``python -I -S`` — no source
tree, no site-packages, no PYTHONPATH. What it unpickles there was pickled by the driver in
real ``map``, ``share()``, ``objects()``, ``map_reduce`` and ``map_then_reduce`` runs.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import tblib

import lambdamr
from lambdamr import serialize
from lambdamr.deploy.options import HANDLER
from lambdamr.deploy.package import function_package, module_file
from lambdamr.runtime.remote_modules import REMOTE_MODULES
from lambdamr.storage import STORES

SOURCE = Path(lambdamr.__file__).parent
#: what the layer gives the runtime besides the standard library (boto3 comes with Lambda's)
LAYER_PACKAGES = (cloudpickle, tblib)


@pytest.fixture(scope="module")
def lambda_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(task root, layer folder): the package unpacked, and copies of the layer's packages."""
    task = tmp_path_factory.mktemp("var-task")
    zipfile.ZipFile(io.BytesIO(function_package())).extractall(task)
    layer = tmp_path_factory.mktemp("opt-python")
    for package in LAYER_PACKAGES:
        folder = Path(package.__file__).parent
        shutil.copytree(folder, layer / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    return task, layer


def run_isolated(paths: tuple[Path, Path], code: str, stdin: bytes = b"") -> Any:
    """Run ``code`` in a Python that sees only the package, the layer and the standard
    library; return the JSON it prints."""
    task, layer = paths
    prelude = (
        "import sys, json\n"
        "assert not any('site-packages' in p for p in sys.path), sys.path\n"
        f"sys.path[:0] = [{str(task)!r}, {str(layer)!r}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + code], input=stdin, capture_output=True, cwd=task, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_every_listed_module_imports_from_the_package_alone(lambda_paths):
    task, _ = lambda_paths
    code = (
        f"import importlib\nmodules = {list(REMOTE_MODULES)!r}\n"
        "files = {m: importlib.import_module(m).__file__ for m in modules}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'lambdamr')\n"
        "print(json.dumps({'files': files, 'loaded': loaded}))\n"
    )
    answer = run_isolated(lambda_paths, code)
    for module, path in answer["files"].items():
        assert Path(path).is_relative_to(task), f"{module} came from {path}, not the package"
    assert set(answer["loaded"]) <= set(REMOTE_MODULES)  # importing them needs nothing unlisted


def test_the_package_holds_exactly_the_listed_modules():
    names = set(zipfile.ZipFile(io.BytesIO(function_package())).namelist())
    assert names == {f"lambdamr/{module_file(m, SOURCE).relative_to(SOURCE).as_posix()}" for m in REMOTE_MODULES}
    driver_side = ("executor", "scheduler", "job.py", "futures", "backends/", "deploy/", "cli/", "shuffle/driver")
    assert not [name for name in names if any(part in name for part in driver_side)]
    assert function_package() == function_package()  # same bytes, same CodeSha256: idempotent deploys


@pytest.mark.parametrize("folder", ["runtime", "storage"])
def test_every_module_of_the_remote_folders_is_listed(folder):
    """A folder's name says where its code runs: all of runtime/ and storage/ ships."""
    found = {
        "lambdamr." + ".".join(path.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__")
        for path in (SOURCE / folder).rglob("*.py")
    }
    assert found and not found - set(REMOTE_MODULES), f"add to REMOTE_MODULES: {sorted(found - set(REMOTE_MODULES))}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str) -> Iterator[str]:
    """The lambdamr modules ``module`` imports anywhere in its code — at the top or inside a
    function — except under ``if TYPE_CHECKING:`` (never run)."""
    path = module_file(module, SOURCE)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "lambdamr")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if base.split(".")[0] != "lambdamr":
                continue
            yield base
            for alias in node.names:  # "from . import serialize": a submodule, not a name
                candidate = f"{base}.{alias.name}"
                try:
                    module_file(candidate, SOURCE)
                except Exception:
                    continue
                yield candidate


def test_every_module_the_listed_ones_import_is_listed_too():
    missing = {
        f"{imported} (imported by {module})"
        for module in REMOTE_MODULES
        for imported in _imported(module)
        if imported not in REMOTE_MODULES
    }
    missing |= {f"{spec.partition(':')[0]} (a storage backend)" for spec in STORES.values()} - {
        f"{m} (a storage backend)" for m in REMOTE_MODULES
    }
    assert not missing, f"add to REMOTE_MODULES: {sorted(missing)}"
    assert HANDLER.rpartition(".")[0] in REMOTE_MODULES  # the root: the handler string deploy sets


# ---- what the driver pickles, unpickled where Lambda would ----------------------------------
def _emit_words(chunk):
    for word in chunk.text().split():
        yield word, 1


def _total(key, values):
    return sum(values)


def _scaled(item, factor):
    return item * factor.value


def _square(item):
    return item * item


def _sum(results):
    return sum(results)


@pytest.fixture(scope="module")
def driver_payloads(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], dict[str, Any]]:
    """Every payload the driver pickled for the remote side in real runs, and their answers."""
    from lambdamr import LambdaExecutor, objects

    data = tmp_path_factory.mktemp("inputs")
    (data / "a.txt").write_text("to be or not to be\n" * 50)
    (data / "b.txt").write_text("that is the question\n" * 30)
    payloads: list[bytes] = []
    real_dumps = serialize.dumps

    def recording_dumps(obj: Any, *, what: str = "object", ship_local_modules: bool = True, sink: Any = None) -> bytes:
        out = real_dumps(obj, what=what, ship_local_modules=ship_local_modules, sink=sink)
        if ship_local_modules:  # the driver's side (the runtime pickles results without)
            payloads.append(out)
        return out

    store = tmp_path_factory.mktemp("store")
    patch = pytest.MonkeyPatch()
    patch.setattr(serialize, "dumps", recording_dumps)
    try:
        with LambdaExecutor(backend="inline", storage=str(store), progress=False, keep_temp=True) as ex:
            factor = ex.share(3)
            answers = {
                "map": list(ex.map(_scaled, [1, 2], [factor, factor])),
                "map_reduce": dict(ex.map_reduce(_emit_words, objects(str(data), chunk_bytes=256), _total, reducers=2)),
                "map_then_reduce": ex.map_then_reduce(_square, [1, 2, 3], _sum),
            }
    finally:
        patch.undo()
    return payloads, answers


def test_the_driver_runs_pickle_the_remote_task_objects(driver_payloads):
    payloads, answers = driver_payloads
    assert answers == {
        "map": [3, 6],
        "map_reduce": {"to": 100, "be": 100, "or": 50, "not": 50, "that": 30, "is": 30, "the": 30, "question": 30},
        "map_then_reduce": 14,
    }
    referenced = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            referenced.add(module)
            return super().find_class(module, name)

    for payload in payloads:
        Recorder(io.BytesIO(payload)).load()
    ours = {m for m in referenced if m.split(".")[0] == "lambdamr"}
    # the objects this test is about are among them, so the check below checks something
    assert {"lambdamr.shuffle.mapper", "lambdamr.shuffle.reducer", "lambdamr.shuffle.whole"} <= ours
    assert {"lambdamr.data.shared", "lambdamr.data.chunk"} <= ours  # objects() chunks are data.chunk.Chunk
    assert not ours - set(REMOTE_MODULES), f"pickled task objects refer to unlisted modules {sorted(ours - set(REMOTE_MODULES))}"


def test_what_the_driver_pickled_unpickles_and_works_from_the_package_alone(lambda_paths, driver_payloads):
    payloads, _ = driver_payloads
    code = (
        "import base64, pickle\n"
        "from lambdamr.data.chunk import Chunk\nfrom lambdamr.data.shared import Shared\n"
        "def walk(obj, depth=0):\n"
        "    yield obj\n"
        "    if depth < 6 and isinstance(obj, (list, tuple)):\n"
        "        for part in obj:\n"
        "            yield from walk(part, depth + 1)\n"
        "kinds, chunks, shared = set(), [], []\n"
        "for line in sys.stdin.read().split():\n"
        "    obj = pickle.loads(base64.b64decode(line))\n"
        "    for part in walk(obj):\n"
        "        kinds.add(type(part).__module__ + '.' + type(part).__qualname__)\n"
        "        if isinstance(part, Chunk):\n"
        "            chunks.append(part.read().decode())\n"
        "        elif isinstance(part, Shared):\n"
        "            shared.append(part.value)\n"
        "print(json.dumps({'kinds': sorted(kinds), 'chunks': chunks, 'shared': shared}))\n"
    )
    stdin = "\n".join(base64.b64encode(p).decode() for p in payloads).encode()
    answer = run_isolated(lambda_paths, code, stdin)
    for kind in (
        "lambdamr.shuffle.mapper.MapTask",
        "lambdamr.shuffle.reducer.NumberedReduce",  # wraps the ReduceTask: reducers that received pairs, by number
        "lambdamr.shuffle.reducer.SegmentRef",
        "lambdamr.shuffle.whole.StoreResultTask",
        "lambdamr.shuffle.whole.ReduceAllTask",
        "lambdamr.data.chunk.Chunk",
        "lambdamr.data.shared.Shared",
    ):
        assert kind in answer["kinds"]
    assert answer["shared"] == [3, 3]  # the Shared handle fetched and verified its object
    text = "".join(answer["chunks"])  # every chunk read its byte range through the runtime's storage
    assert text.count("to be or not to be\n") == 50 and text.count("that is the question\n") == 30


def test_a_map_task_pickled_by_the_driver_runs_from_the_package_alone(lambda_paths, tmp_path):
    from lambdamr.shuffle.mapper import MapTask
    from lambdamr.shuffle.plan import MapPlan, ShuffleLayout
    from lambdamr.storage import open_storage

    spec = {"kind": "local", "root": str(tmp_path / "store")}
    task = MapTask(MapPlan(_square_pairs, 2, spec, ShuffleLayout("sess/shuffle/run")))
    call = base64.b64encode(serialize.dumps((task, (0, 1, [2, 3, 4])), what="map task")).decode()
    code = (
        "import base64, pickle\n"
        f"task, args = pickle.loads(base64.b64decode({call!r}))\n"
        "out = task(*args)\n"
        "print(json.dumps({'name': out.name, 'pairs': out.pairs, 'segments': len(out.segments)}))\n"
    )
    answer = run_isolated(lambda_paths, code)
    assert answer["pairs"] == 3 and answer["segments"] == 2
    assert open_storage(spec).get(f"sess/shuffle/run/{answer['name']}")  # it wrote its one object


def _square_pairs(item):
    yield item, item * item
