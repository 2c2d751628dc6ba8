"""``objects()`` inputs read by real tasks on every backend × storage (tests/targets.py): a list
mixing stored objects and HTTP(S) URLs, per-object chunk counts, ``map`` and ``map_reduce``.

The HTTP server listens on 127.0.0.1: local workers and the AWS stand-in's runtimes run on this
machine and reach it. On AWS the stored inputs sit inside the prefix the deployment grants.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

import lambdamr
from lambdamr.data.objects import Chunk
from lambdamr.errors import ConfigurationError
from tests.data.http_server import FileServer, serve_files
from tests.targets import AWS_ONLY

WAIT_S = 120

TEXTS = {
    "a.txt": b"".join(b"alpha line %d\n" % i for i in range(200)),
    "b.txt": b"beta\ngamma\nbeta\n" * 30,
    "c.txt": b"delta " * 50 + b"\nlast line without newline",
}


@pytest.fixture(scope="module")
def http_files() -> Iterator[FileServer]:
    with serve_files() as server:
        server.files.update(TEXTS)
        yield server


def _store(executor, tmp_path: Path, files: dict[str, bytes]) -> str:
    """Put ``files`` where the executor's tasks may read them, in a folder of the test's own
    (the module's tests share the executor, so its session prefix); return its location."""
    if executor.storage.kind != "s3":
        for name, data in files.items():
            (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "in" / name).write_bytes(data)
        return str(tmp_path / "in") + "/"
    prefix = f"{executor.session_prefix}/{tmp_path.name}"  # inside the temp prefix, which every deployment grants
    for name, data in files.items():
        executor.storage.put(f"{prefix}/{name}", data)
    return executor.storage.url(prefix + "/")


def lines_of(chunk: Chunk) -> list[str]:
    return chunk.lines()


def words(chunk: Chunk):
    return collections.Counter(chunk.text().split()).items()


def total(_word, counts):
    return sum(counts)


def _expected_lines() -> list[str]:
    return [line for name in sorted(TEXTS) for line in TEXTS[name].decode().splitlines()]


def test_map_reads_stored_objects_and_urls_of_one_list(target_executor, http_files, tmp_path):
    folder = _store(target_executor, tmp_path, {"a.txt": TEXTS["a.txt"]})
    source = lambdamr.objects(
        [folder, http_files.link("ranges", "b.txt"), http_files.link("plain", "c.txt")], chunks_per_object=4
    )
    http_files.forget()
    got = [line for lines in target_executor.map(lines_of, source, timeout=WAIT_S) for line in lines]
    assert got == _expected_lines()  # every line once, in the list's order
    chunks = target_executor.last_job.tasks
    assert len(chunks) == 4 + 4 + 1  # c.txt's server serves no ranges: one chunk
    ranged = [h for method, path, h in http_files.asked("GET") if path.endswith("b.txt") and h != "bytes=0-0"]
    assert len(ranged) == 4 and all(h.startswith("bytes=") for h in ranged)  # one ranged GET per chunk


def test_map_reduce_over_urls_and_stored_objects_with_keyword_items(target_executor, http_files, tmp_path):
    folder = _store(target_executor, tmp_path, {"c.txt": TEXTS["c.txt"]})
    inputs = lambdamr.objects([http_files.link("ranges", "a.txt"), http_files.link("nohead", "b.txt"), folder], chunks=6)
    result = target_executor.map_reduce(words, inputs, total, reducers=2)
    assert result == collections.Counter(b" ".join(TEXTS.values()).decode().split())
    assert result.stats.mappers >= 3
    config = target_executor.config
    chunks = inputs.resolve(region=config.region, endpoint_url=config.endpoint_url)
    items = [{"chunk": c, "scale": 2} for c in chunks]  # chunks inside keyword items are checked like arguments
    sizes = list(target_executor.map(_scaled_lines, items, unpack="kwargs", timeout=WAIT_S))
    assert sum(sizes) == 2 * len(_expected_lines())


def _scaled_lines(chunk: Chunk, scale: int) -> int:
    return scale * len(chunk.lines())


@pytest.mark.parametrize("target", AWS_ONLY, indirect=True, ids=str)  # only the AWS backend has grants to check
def test_urls_need_no_grant_and_stored_objects_outside_the_grants_are_refused(target, target_executor, http_files):
    outside = "not-granted/in/x.txt"
    target_executor.storage.put(outside, b"x\n")
    url = target_executor.storage.url(outside)
    before = len(target_executor.jobs)
    with pytest.raises(ConfigurationError, match=f"may not read {url}") as caught:
        target_executor.map(lines_of, lambdamr.objects([http_files.link("ranges", "a.txt"), url]))
    assert "127.0.0.1" not in str(caught.value)  # the URL is no grant's business
    assert len(target_executor.jobs) == before  # nothing launched
    target_executor.storage.delete([outside])
