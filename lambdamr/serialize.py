"""Pickling for the wire: cloudpickle in and out, local modules shipped by value, culprits named.

A function defined in ``__main__``, a notebook, or one of the user's own modules (anything
not installed in site-packages or the standard library) cannot be imported by the Lambda
runtime, so such modules are pickled *by value*: the code travels with the function.

Big values travel out of band: given a ``BufferSink`` (``lambdamr.data.buffers``), ``dumps``
stores every large buffer pickle protocol 5 exposes (numpy arrays, ``PickleBuffer``) as an
object of its own and returns a small frame that lists them with their digests; ``loads``
recognises such a frame, checks every buffer and unpickles the value in place.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import site
import sys
import sysconfig
import types
from collections import ChainMap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import cloudpickle

from lambdamr.errors import IntegrityError, SerializationError, StorageError

if TYPE_CHECKING:
    from lambdamr.data.buffers import BufferSink

PICKLE_PROTOCOL = 5


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    """Folders whose modules the remote side has (stdlib and site-packages)."""
    roots = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            roots.add(os.path.realpath(path))
    for path in [*getattr(site, "getsitepackages", lambda: [])(), site.getusersitepackages()]:
        roots.add(os.path.realpath(path))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        roots.add(os.path.realpath(os.path.join(prefix, "lib")))
    return tuple(sorted(roots))


def is_local_module(name: str) -> bool:
    """Whether module ``name`` is the user's own code that the runtime cannot import."""
    top = name.partition(".")[0]
    if top in ("__main__", "lambdamr") or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(top)
    if module is None:
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False  # namespace packages, frozen modules
    return _is_outside_installed_roots(path)


@functools.lru_cache(maxsize=4096)
def _is_outside_installed_roots(path: str) -> bool:
    """Whether the module file ``path`` lies outside the stdlib and site-packages: resolved
    once per path (``realpath`` makes a system call per component, and every submit pickles
    its function again, asking this of each module the function refers to)."""
    resolved = os.path.realpath(path)
    return not any(resolved.startswith(root + os.sep) for root in _installed_roots())


def _code_reduce_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle's code reducer, but keeping ``co_filename``.

    cloudpickle replaces it with "<dynamic-code>" for deterministic payloads; we keep the real
    file so that a remote traceback rebuilt in the driver points at the user's source file.
    """
    constructor, args = cloudpickle.cloudpickle._code_reduce(code)
    args = tuple(code.co_filename if arg == "<dynamic-code>" else arg for arg in args)
    return constructor, args


class _ModuleRecordingPickler(cloudpickle.CloudPickler):  # type: ignore[misc]  # cloudpickle has no types
    """A CloudPickler that notes the modules of everything it pickles by reference."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce_keeping_filename}, cloudpickle.CloudPickler.dispatch_table)

    def __init__(self, file: io.BytesIO, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        module = None
        if isinstance(obj, types.ModuleType):
            module = obj.__name__
        elif isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            module = getattr(obj, "__module__", None)
        else:
            module = getattr(type(obj), "__module__", None)
        if isinstance(module, str):
            self.modules.add(module)
        return super().reducer_override(obj)


class _OutOfBand:
    """The buffer callback of one pickling pass: buffers of at least ``min_bytes`` are kept
    out of band (returned False), smaller ones go in the stream."""

    def __init__(self, min_bytes: int) -> None:
        self.min_bytes = min_bytes
        self.buffers: list[memoryview] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < self.min_bytes:
            return True
        self.buffers.append(raw)
        return False


def _dump_once(obj: Any, sink: BufferSink | None) -> tuple[bytes, set[str], list[memoryview]]:
    buffer = io.BytesIO()
    out_of_band = _OutOfBand(sink.min_bytes) if sink is not None else None
    pickler = _ModuleRecordingPickler(buffer, out_of_band)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.modules, out_of_band.buffers if out_of_band else []


def _framed(data: bytes, sink: BufferSink | None, buffers: list[memoryview]) -> bytes:
    if not buffers or sink is None:
        return data
    from lambdamr.data.buffers import frame

    return frame(data, sink, buffers)


#: types the standard pickler writes by value and reads back without importing anything:
#: a value made only of these (and of lists, tuples and dicts of them) needs none of
#: cloudpickle's machinery, and the stdlib pickler writes the very same bytes for it
_PLAIN_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})
#: containers and atoms ``is_plain`` looks at before it gives up (a big value is pickled
#: by cloudpickle, whose fixed cost is then small beside the value's own)
_PLAIN_MAX_ITEMS = 256


def is_plain(obj: Any) -> bool:
    """Whether ``obj`` is small plain data: atoms of ``_PLAIN_ATOMS`` in lists, tuples and dicts
    (exact types: a subclass may pickle otherwise), at most ``_PLAIN_MAX_ITEMS`` of them."""
    atoms = _PLAIN_ATOMS
    budget = _PLAIN_MAX_ITEMS
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in atoms:
            continue
        if kind is tuple or kind is list:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            return False
        budget -= len(item)
        if budget < 0:
            return False
    return True


def dumps(
    obj: Any, *, what: str = "object", ship_local_modules: bool = True, sink: BufferSink | None = None
) -> bytes:
    """Pickle ``obj`` for the other side, shipping the user's local modules by value.

    With ``sink``, large buffers (numpy arrays) are stored through it, out of band, and the
    result is a small buffered frame that names them (``lambdamr.data.buffers``).

    Raises ``SerializationError`` naming the part of ``obj`` that cannot be pickled.
    """
    if is_plain(obj):  # most arguments and results: no module to ship, no buffer out of band
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    if not ship_local_modules:  # the runtime's results: their classes came from the driver
        out_of_band = _OutOfBand(sink.min_bytes) if sink is not None else None
        try:
            data = cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL, buffer_callback=out_of_band)
        except Exception as exc:
            raise SerializationError(_unpicklable_message(obj, what, exc, to_driver=True)) from exc
        return _framed(data, sink, out_of_band.buffers if out_of_band else [])
    registered: list[types.ModuleType] = []
    try:
        for _ in range(8):  # by-value modules may reference further local modules
            try:
                data, modules, buffers = _dump_once(obj, sink)
            except Exception as exc:
                raise SerializationError(_unpicklable_message(obj, what, exc)) from exc
            local = {m.partition(".")[0] for m in modules if is_local_module(m)}
            new = [sys.modules[m] for m in sorted(local) if sys.modules[m] not in registered]
            if not new:
                break
            for module in new:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
    finally:
        for module in registered:
            try:
                cloudpickle.unregister_pickle_by_value(module)
            except ValueError:
                pass
    return _framed(data, sink, buffers)


def loads(data: bytes | bytearray | memoryview, *, what: str = "object") -> Any:
    """Unpickle ``data`` (a plain pickle, or a buffered frame whose buffers are checked
    against their digests first); a failure becomes a ``SerializationError`` that says what
    to do, a buffer changed in storage an ``IntegrityError``."""
    from lambdamr.data import buffers

    try:
        if buffers.is_buffered(data):
            return buffers.loads(data, what=what)
        return pickle.loads(data)
    except ModuleNotFoundError as exc:
        raise SerializationError(
            f"cannot unpickle the {what}: module {exc.name!r} is not installed where it is being "
            "loaded; add the package to the runtime layer (`lambdamr deploy --package ...`) or "
            "install it in the driver's environment"
        ) from exc
    except (IntegrityError, SerializationError, StorageError):
        raise  # a buffer changed or gone: already says what happened
    except Exception as exc:
        raise SerializationError(f"cannot unpickle the {what}: {type(exc).__name__}: {exc}") from exc


# ---- finding the culprit -------------------------------------------------------------------
def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """Named parts of ``obj`` that pickling would descend into."""
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        if obj.__closure__:
            for name, cell in zip(code.co_freevars, obj.__closure__):
                try:
                    yield f"closure variable {name!r}", cell.cell_contents
                except ValueError:  # empty cell
                    continue
        names = set(_code_names(code))
        for name in sorted(names & set(obj.__globals__)):
            yield f"global {name!r}", obj.__globals__[name]
        for i, default in enumerate(obj.__defaults__ or ()):
            yield f"default argument {i}", default
        for name, default in (obj.__kwdefaults__ or {}).items():
            yield f"keyword default {name!r}", default
    elif isinstance(obj, functools.partial):
        yield "partial.func", obj.func
        for i, arg in enumerate(obj.args):
            yield f"partial argument {i}", arg
        for name, arg in obj.keywords.items():
            yield f"partial keyword {name!r}", arg
    elif isinstance(obj, types.MethodType):
        yield "bound instance", obj.__self__
        yield "method function", obj.__func__
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            yield f"[{i}]", value
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType)):
        for name, value in vars(obj).items():
            yield f".{name}", value


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL)
        return True
    except Exception:
        return False


def find_unpicklable(obj: Any, *, max_depth: int = 6) -> tuple[str, Any] | None:
    """The path to the innermost part of ``obj`` that cannot be pickled, with that part (a
    future is named itself, not the lock inside it)."""
    from concurrent.futures import Future

    path: list[str] = []
    current = obj
    seen: set[int] = set()
    for _ in range(max_depth):
        if isinstance(current, Future):
            break
        seen.add(id(current))
        for name, child in _children(current):
            if id(child) in seen or _picklable(child):
                continue
            path.append(name)
            current = child
            break
        else:
            break
    if not path:
        return None
    return " -> ".join(path), current


_TO_RUNTIME = (
    "the runtime",
    "Create such objects (locks, open files, sockets, connections, generators) inside the task "
    "instead of passing them in",
)
_TO_DRIVER = (
    "the driver",
    "Return plain data (numbers, strings, lists, dicts, numpy arrays) or write big or special "
    "objects to storage yourself",
)


_FUTURE_ADVICE = (
    "A future may be an argument itself or sit in a list, tuple or dict argument (lambdamr then "
    "starts the call once it is done and passes its result); elsewhere, pass future.result()"
)


def _unpicklable_message(obj: Any, what: str, exc: Exception, to_driver: bool = False) -> str:
    from concurrent.futures import Future

    destination, advice = _TO_DRIVER if to_driver else _TO_RUNTIME
    found = find_unpicklable(obj)
    if found:
        path, culprit = found
        if isinstance(culprit, Future):
            advice = _FUTURE_ADVICE
        detail = f"its {path} is a {type(culprit).__module__}.{type(culprit).__qualname__}, which cannot be pickled"
    else:
        detail = f"a {type(obj).__module__}.{type(obj).__qualname__} cannot be pickled"
    return f"cannot send the {what} to {destination}: {detail} ({type(exc).__name__}: {exc}). {advice}"
