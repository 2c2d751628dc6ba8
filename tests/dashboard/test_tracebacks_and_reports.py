"""What a user reads about a job: remote tracebacks at the failing line and columns, the
summary's words for its times, ``plot()`` as a Figure, ``verbose`` on failed jobs."""

from __future__ import annotations

import sys
import traceback

import pytest

from lambdamr.runtime.tracebacks import POSITION_KEY, stub_source, traceback_from_dict, traceback_to_dict


def lookup(table, key):
    scale = 2
    return table[key] * scale  # the failing line: the subscript fails, not the def


def call_twice(x):
    return lookup({"a": 1}, x) + lookup(
        {"b": 2}, x
    )


def local_traceback(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_remote_traceback_prints_like_the_local_one(executor):
    expected = local_traceback(call_twice, "zz")
    with pytest.raises(KeyError) as info:
        executor.submit(call_twice, "zz").result(timeout=60)
    local = traceback.format_tb(expected.__traceback__)[1:]  # without this test's own frame
    remote = traceback.format_tb(info.value.__traceback__)[-len(local):]
    assert remote == local  # same lines, same ^^^ and ~~~ under the same columns
    assert "table[key] * scale" in remote[-1] and "^" in remote[-1]


def test_the_rebuilt_frames_start_at_the_functions_def_line(executor):
    with pytest.raises(KeyError) as info:
        executor.submit(call_twice, "zz").result(timeout=60)
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "lookup"
    assert tb.tb_frame.f_code.co_firstlineno == lookup.__code__.co_firstlineno  # IPython reads the def from it
    assert tb.tb_lineno == lookup.__code__.co_firstlineno + 2


def test_a_traceback_round_trips_through_its_dict_and_an_old_dict_still_rebuilds():
    exc = local_traceback(call_twice, "zz")
    data = traceback_to_dict(exc.__traceback__)
    assert data[POSITION_KEY][0] == local_traceback.__code__.co_firstlineno
    rebuilt = traceback_from_dict(data)
    assert traceback.format_tb(rebuilt) == traceback.format_tb(exc.__traceback__)

    level = data
    while level is not None:  # as a runtime without positions sends it
        level.pop(POSITION_KEY)
        level = level["tb_next"]
    old = traceback.extract_tb(traceback_from_dict(data))
    assert [(f.name, f.lineno) for f in old] == [(f.name, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]


@pytest.mark.parametrize(
    "col, end_line, end_col",
    [(0, 3, 4), (7, 3, 19), (4, 5, 2), (None, None, None)],
)
def test_a_stub_raises_at_the_position_it_is_given(col, end_line, end_col):
    code = compile(stub_source(3, col, end_line, end_col, 3), "stub", "exec")
    try:
        exec(code, {}, {})  # noqa: S102 - the stub under test
    except Exception:
        tb = sys.exc_info()[2].tb_next
    position = list(code.co_positions())[tb.tb_lasti // 2]
    assert position[0] == 3
    if end_line == 3:
        assert position[1:] == (3, col, end_col)
    else:
        assert position[1] == 4  # spans two lines: printed from its column to the line's end


# ---- reports -------------------------------------------------------------------------------
def square(x):
    return x * x


def fail_on_two(x):
    if x == 2:
        raise ValueError("two")
    return x


def test_plot_without_a_path_returns_a_figure(executor, tmp_path):
    from matplotlib.figure import Figure

    list(executor.map(square, range(4)))
    executor.last_job.wait(30)
    figure = executor.last_job.plot()
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert executor.last_job.plot(tmp_path / "t.png") == tmp_path / "t.png"


def test_the_summary_says_what_its_times_cover(executor):
    list(executor.map(square, range(2)))
    executor.last_job.wait(30)
    text = str(executor.last_job.summary())
    assert "(submitted to last task settled)" in text and "(tasks' own run times summed, max " in text


def test_verbose_prints_the_summary_of_a_failed_map(make_executor, capsys):
    ex = make_executor(verbose=True)
    with pytest.raises(ValueError):
        list(ex.map(fail_on_two, range(4)))
    ex.shutdown()  # the job has ended: its summary is out
    err = capsys.readouterr().err
    assert err.count("lambdamr job ") == 1 and "1 failed" in err


def pairs(word):
    yield word, 1


def total(word, counts):
    if word == "bad":
        raise ValueError("a reducer failed")
    return sum(counts)


def test_verbose_prints_each_map_reduce_phase_and_a_failed_one(make_executor, capsys):
    ex = make_executor(verbose=True)
    with pytest.raises(ValueError, match="a reducer failed"):
        ex.map_reduce(pairs, ["a", "b", "bad"], total, reducers=2)
    ex.shutdown()
    err = capsys.readouterr().err
    summaries = [line for line in err.splitlines() if line.startswith("lambdamr job ")]
    assert "3 tasks (3 calls): 3 ok, 0 failed" in summaries[0]  # the map phase
    assert len(summaries) >= 2 and all("1 failed" in line for line in summaries[1:])  # the reduce phase(s)
