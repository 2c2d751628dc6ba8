"""Word count over a text corpus in storage with ``map_reduce``; checked against ``Counter``.

    python -m examples.wordcount                          # generate 300 MB (cached), count it

Without a corpus location it writes a generated corpus (300 MB by default) to
``~/.cache/lambdamr/wordcount-300mb`` (``$XDG_CACHE_HOME`` if set; ``--corpus-dir`` for another
folder) and keeps it there for the next run; every run prints where it is.
    python -m examples.wordcount --size-mb 50 --reducers 4
    python -m examples.wordcount s3://bucket/books/ --backend aws --storage s3://bucket/lambdamr

The corpus is split into line-aligned chunks (``lambdamr.objects``), one mapper each. A
mapper counts its chunk's words with a ``Counter`` — that is already a combiner, so each
mapper sends every distinct word once — and the reducers add the counts of a word across
mappers. The result is compared with a single-process ``collections.Counter`` of the
same files: they must be identical.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import lambdamr
from lambdamr.cli.help import HelpFormatter
from lambdamr.data.objects import Chunk

WORDS_PER_LINE = 12
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "an", "er", "is", "ol", "un", "ph", "st"]


@functools.lru_cache(maxsize=4)
def vocabulary(size: int = 20_000, seed: int = 0) -> tuple[str, ...]:
    """``size`` distinct made-up words of 1 to 4 syllables."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 5, size=4 * size)
    syllables = rng.integers(0, len(_SYLLABLES), size=(4 * size, 4))
    words = dict.fromkeys("".join(_SYLLABLES[i] for i in row[:n]) for n, row in zip(lengths, syllables.tolist()))
    return tuple(words)[:size]


def corpus_text(nbytes: int, seed: int) -> bytes:
    """About ``nbytes`` of lines of words drawn from a Zipf-like distribution (deterministic)."""
    vocab = np.array(vocabulary(), dtype=object)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    size = 0
    while size < nbytes:
        lines = min(20_000, nbytes // 50 + 1)
        rows = rng.choice(len(vocab), size=(lines, WORDS_PER_LINE), p=weights)
        block = "\n".join(" ".join(line) for line in vocab[rows].tolist()).encode() + b"\n"
        out.append(block)
        size += len(block)
    return b"".join(out)[:nbytes].rsplit(b"\n", 1)[0] + b"\n"


def generate_corpus(folder: str | os.PathLike[str], size_mb: float, *, files: int = 8, seed: int = 0) -> str:
    """Write a corpus of ``size_mb`` MB as ``files`` text files in ``folder`` (kept: the same
    arguments always give the same bytes, so an existing corpus is reused)."""
    folder = Path(folder)
    done = folder / "COMPLETE"
    if done.exists():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = int(size_mb * 1024 * 1024 / files)
    for i in range(files):
        (folder / f"part-{i:03d}.txt").write_bytes(corpus_text(per_file, seed * 1000 + i))
    done.write_bytes(b"")
    return str(folder)


def upload_corpus(executor: Any, folder: str, key_prefix: str) -> str:
    """Copy a local corpus into the executor's S3 bucket; return its s3:// location."""
    store = executor.storage
    existing = {info.key for info in store.list(key_prefix + "/")}
    for path in sorted(Path(folder).glob("part-*.txt")):
        key = f"{key_prefix}/{path.name}"
        if key not in existing:
            store.put(key, path.read_bytes())
    return f"s3://{store.bucket}/{key_prefix}/"


# ---- the job ------------------------------------------------------------------------------------
def count_chunk(chunk: Chunk) -> collections.Counter:
    """Map: the words of one chunk, counted (a dict of word -> count is a list of pairs)."""
    return collections.Counter(chunk.text().split())


def add_counts(word: str, counts: list[int]) -> int:
    """Reduce (and combine): the total count of one word."""
    return sum(counts)


def wordcount(executor: Any, location: str, *, reducers: int, chunk_bytes: int) -> dict[str, int]:
    """Count the words of every object under ``location`` with ``executor.map_reduce``."""
    chunks = lambdamr.objects(location, chunk_bytes=chunk_bytes)
    return executor.map_reduce(count_chunk, chunks, add_counts, reducers=reducers, combine=add_counts)


def local_count(location: str, *, endpoint_url: str | None = None) -> collections.Counter:
    """The reference: one process, one ``Counter``, every object read whole."""
    counts: collections.Counter = collections.Counter()
    for whole in lambdamr.objects(location, chunks_per_object=1, endpoint_url=endpoint_url):
        counts.update(whole.read().decode().split())
    return counts


# ---- command line ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.wordcount", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("location", nargs="?", help="s3://bucket/prefix/ or a folder (default: generate a corpus)")
    parser.add_argument("--size-mb", type=float, default=300, help="size of the generated corpus")
    parser.add_argument("--corpus-dir", default=None, help="where to keep the generated corpus (default: a cache folder)")
    parser.add_argument("--reducers", type=int, default=8, help="reduce tasks (output parts)")
    parser.add_argument("--chunk-mb", type=float, default=16, help="mapper input size")
    parser.add_argument("--backend", choices=("local", "aws"), default="local", help="where the tasks run")
    parser.add_argument("--storage", default=None, help="s3://bucket/prefix or a folder (default: the backend's)")
    parser.add_argument("--memory", type=int, default=1024, help="task memory in MB (Lambda's size)")
    parser.add_argument("--no-check", action="store_true", help="skip the single-process Counter comparison")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from lambdamr import LambdaExecutor

    with LambdaExecutor(backend=args.backend, storage=args.storage, memory_mb=args.memory) as executor:
        location = args.location
        if location is None:
            cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            folder = args.corpus_dir or os.path.join(cache, "lambdamr", f"wordcount-{args.size_mb:g}mb")
            started = time.perf_counter()
            reused = (Path(folder) / "COMPLETE").exists()
            location = generate_corpus(folder, args.size_mb)
            print(
                f"corpus: {args.size_mb:g} MB {'found' if reused else 'written'} in {location} "
                f"({time.perf_counter() - started:.1f} s; kept there for the next run: delete the folder to "
                "free the space, or give --corpus-dir)"
            )
            if executor.storage.kind == "s3":
                location = upload_corpus(executor, location, f"lambdamr-examples/wordcount-{args.size_mb:g}mb")
        started = time.perf_counter()
        counts = wordcount(executor, location, reducers=args.reducers, chunk_bytes=int(args.chunk_mb * 2**20))
        elapsed = time.perf_counter() - started
        print(f"lambdamr map_reduce: {len(counts):,} distinct words, {sum(counts.values()):,} words in {elapsed:.2f} s")
        print(counts.stats)
        print("most common:", ", ".join(f"{w} {n}" for w, n in collections.Counter(counts).most_common(5)))
        if not args.no_check:
            started = time.perf_counter()
            reference = local_count(location, endpoint_url=executor.config.endpoint_url)
            print(f"single-process Counter: {time.perf_counter() - started:.2f} s")
            same = dict(counts) == dict(reference)
            print("identical to collections.Counter:", same)
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
