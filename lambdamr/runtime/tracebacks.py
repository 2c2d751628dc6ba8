"""A user exception's traceback, carried from the runtime to the driver so that it points at
the failing line and expression, in a terminal and in a notebook.

tblib carries a traceback as a dict (file, function, line of each frame) and rebuilds it by
raising inside a one-line stub: the rebuilt frames say the function starts at the failing
line, and their column positions are the stub's own, so a terminal underlines
(``^^^^``) the wrong columns and IPython, which reads the function from its first line,
marks the ``def``. Here each frame also carries where it was (``POSITION_KEY``: the
function's first line, and the failing instruction's lines and columns), and the driver
builds each stub so that its raising instruction sits exactly there: the function's first
line is the real one, and the underlined columns are the real ones.

A record from a runtime that sends no positions (an older layer) is rebuilt by tblib.
"""

from __future__ import annotations

import itertools
import sys
from types import CodeType, TracebackType
from typing import Any

import tblib  # type: ignore[import-untyped]

#: the key each level of tblib's dict gains: [first line, line, end line, column, end column]
POSITION_KEY = "lambdamr_position"


def traceback_to_dict(tb: TracebackType) -> dict[str, Any]:
    """tblib's dict of ``tb``, each level with its position (``POSITION_KEY``)."""
    data = tblib.Traceback(tb).as_dict()
    level: dict[str, Any] | None = data
    current: TracebackType | None = tb
    while level is not None and current is not None:
        code = current.tb_frame.f_code
        level[POSITION_KEY] = [code.co_firstlineno, *_instruction_position(code, current.tb_lasti, current.tb_lineno)]
        level, current = level.get("tb_next"), current.tb_next
    return data


def _instruction_position(code: CodeType, lasti: int, lineno: int) -> tuple[int, int | None, int | None, int | None]:
    positions = getattr(code, "co_positions", None)  # Python 3.11+
    if positions is None or lasti < 0:
        return lineno, None, None, None
    found = next(itertools.islice(positions(), lasti // 2, None), None)
    if found is None or found[0] != lineno:
        return lineno, None, None, None
    return lineno, found[1], found[2], found[3]


def traceback_from_dict(data: dict[str, Any]) -> TracebackType | None:
    """The traceback ``traceback_to_dict`` described (tblib's rebuild for a dict without
    positions)."""
    levels = []
    level: dict[str, Any] | None = data
    while level is not None:
        levels.append(level)
        level = level.get("tb_next")
    if not all(_position(lv) is not None for lv in levels):
        return tblib.Traceback.from_dict(data).as_traceback()
    top: TracebackType | None = None
    previous: TracebackType | None = None
    for lv in levels:
        entry = _raise_at(lv)
        if entry is None:
            return tblib.Traceback.from_dict(data).as_traceback()
        if previous is None:
            top = entry
        else:
            previous.tb_next = entry
        previous = entry
    return top


def _position(level: dict[str, Any]) -> tuple[int, int, int | None, int | None, int | None] | None:
    raw = level.get(POSITION_KEY)
    if not isinstance(raw, list) or len(raw) != 5:
        return None
    first, line, end_line, col, end_col = raw
    numbers = (first, line)
    if not all(isinstance(n, int) and n > 0 for n in numbers):
        return None
    if not all(v is None or (isinstance(v, int) and v >= 0) for v in (end_line, col, end_col)):
        return None
    return first, line, end_line, col, end_col


def stub_source(relative_line: int, col: int | None, end_line: int | None, end_col: int | None, line: int) -> str:
    """Source whose first failing instruction is on ``relative_line`` at columns
    ``col..end_col`` (byte offsets, as CPython records them): an undefined name of that
    width, or for an expression spanning lines a division by zero that spans them."""
    padding = "\n" * (relative_line - 1)
    if col is not None and end_col is not None and end_line == line and end_col > col:
        name = "Q" * (end_col - col)  # undefined: a NameError exactly there
        return padding + (name if col == 0 else "(" + " " * (col - 1) + name + ")")
    start = col or 0
    return padding + ("" if start == 0 else "(" + " " * (start - 1)) + "(1/\n0)" + ("" if start == 0 else ")")


def _raise_at(level: dict[str, Any]) -> TracebackType | None:
    position = _position(level)
    if position is None:
        return None
    first, line, end_line, col, end_col = position
    frame = level.get("tb_frame") or {}
    code = frame.get("f_code") or {}
    first = first if first <= line else line
    try:
        stub = compile(stub_source(line - first + 1, col, end_line, end_col, line), str(code.get("co_filename")), "exec")
        stub = stub.replace(co_name=str(code.get("co_name")), co_firstlineno=first)
    except (SyntaxError, ValueError, TypeError):
        return None
    names = {k: v for k, v in (frame.get("f_globals") or {}).items() if k in ("__file__", "__name__")}
    try:
        exec(stub, names, {})  # noqa: S102 - our own stub: a name lookup or 1/0, nothing from the record
    except Exception:
        raised = sys.exc_info()[2]
        return raised.tb_next if raised is not None else None
    return None
