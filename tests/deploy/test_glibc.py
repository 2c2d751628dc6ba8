"""The layer's compiled code must load on the runtime's OS: glibc version needs, read from
real ELF files (numpy's, and shared objects compiled here with gcc), against each runtime."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy
import pytest

from lambdamr.deploy import LayerPlatformError, layer
from lambdamr.deploy.elf import ElfFormatError, required_glibc, version_needs

NUMPY_CORE = Path(numpy.__file__).parent / "_core"
MULTIARRAY = next(NUMPY_CORE.glob("_multiarray_umath*.so"), None)

# One symbol per glibc version: memfd_create appeared in 2.27 (newer than Amazon Linux 2's
# 2.26), arc4random in 2.36 (newer than Amazon Linux 2023's 2.34).
_CALLS = {
    (2, 27): "#define _GNU_SOURCE\n#include <sys/mman.h>\nint probe(void) { return memfd_create(\"x\", 0); }\n",
    (2, 36): "#include <stdlib.h>\nunsigned probe(void) { return arc4random(); }\n",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], Path]:
    """Shared objects built with gcc here, each needing one glibc version (the host must have it)."""
    gcc = shutil.which("gcc")
    if gcc is None:  # every machine this project runs on has it (and CI's): its absence is a broken set-up
        pytest.fail("these tests compile shared objects with gcc, which is not installed: apt-get install gcc")
    folder = tmp_path_factory.mktemp("elf")
    built = {}
    for version, code in _CALLS.items():
        source = folder / f"probe_{version[1]}.c"
        source.write_text(code)
        target = folder / f"libprobe_{version[1]}.so"
        done = subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(target), str(source)], capture_output=True)
        if done.returncode == 0:
            built[version] = target
    if not built:
        pytest.fail("gcc built none of the probes: this host's glibc is older than 2.27, or gcc cannot link")
    return built


def _readelf_needs(path: Path) -> dict[str, set[str]]:
    out = subprocess.run(["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    needs: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in out.partition("'.gnu.version_r'")[2].splitlines():
        if match := re.search(r"File: (\S+)", line):
            current = needs.setdefault(match.group(1), set())
        elif (match := re.search(r"Name: (\S+)", line)) and current is not None:
            current.add(match.group(1))
    return needs


@pytest.mark.skipif(MULTIARRAY is None or shutil.which("readelf") is None, reason="needs numpy's core .so and readelf")
def test_version_needs_agree_with_readelf_on_numpys_core():
    needs = version_needs(MULTIARRAY.read_bytes())
    assert needs == _readelf_needs(MULTIARRAY)
    assert "GLIBC_2.2.5" in needs["libc.so.6"] or "GLIBC_2.17" in needs["libc.so.6"]  # x86_64 or aarch64 base


def test_a_compiled_object_needs_the_glibc_of_the_symbol_it_calls(compiled):
    for version, path in compiled.items():
        assert required_glibc(path.read_bytes()) == version
        assert f"GLIBC_{version[0]}.{version[1]}" in version_needs(path.read_bytes())["libc.so.6"]


def test_without_section_headers_the_dynamic_segment_gives_the_same_needs(compiled, tmp_path):
    path = next(iter(compiled.values()))
    data = bytearray(path.read_bytes())
    assert data[4] == 2 and data[5] == 1  # ELF64 little-endian: e_shoff at 0x28, e_shnum at 0x3c
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<H", data, 0x3C, 0)
    assert version_needs(bytes(data)) == version_needs(path.read_bytes())


def _elf32_big_endian(needs: dict[str, list[str]]) -> bytes:
    """A minimal ELF32 MSB object with a version-needs section and its string table."""
    strings = bytearray(b"\0")

    def string(text: str) -> int:
        strings.extend(text.encode() + b"\0")
        return len(strings) - len(text) - 1

    records = bytearray()
    for index, (file_name, versions) in enumerate(needs.items()):
        last = index == len(needs) - 1
        size = 16 + 16 * len(versions)
        records += struct.pack(">HHIII", 1, len(versions), string(file_name), 16, 0 if last else size)
        for j, name in enumerate(versions):
            records += struct.pack(">IHHII", 0, 0, j + 2, string(name), 0 if j == len(versions) - 1 else 16)
    header_size, section_size = 52, 40
    verneed_at = header_size
    strtab_at = verneed_at + len(records)
    sections_at = strtab_at + len(strings)
    header = b"\x7fELF" + bytes([1, 2, 1]) + bytes(9)
    header += struct.pack(">HHIIIIIHHHHHH", 3, 20, 1, 0, 0, sections_at, 0, header_size, 32, 0, section_size, 3, 0)
    sections = bytes(section_size)  # the null section
    sections += struct.pack(">IIIIIIIIII", 0, 0x6FFFFFFE, 2, 0, verneed_at, len(records), 2, len(needs), 4, 0)
    sections += struct.pack(">IIIIIIIIII", 0, 3, 2, 0, strtab_at, len(strings), 0, 0, 1, 0)
    return header + bytes(records) + bytes(strings) + sections


def test_32_bit_big_endian_objects_are_read_too():
    data = _elf32_big_endian({"libc.so.6": ["GLIBC_2.0", "GLIBC_2.28"], "libm.so.6": ["GLIBC_2.4", "GLIBC_PRIVATE"]})
    assert version_needs(data) == {"libc.so.6": {"GLIBC_2.0", "GLIBC_2.28"}, "libm.so.6": {"GLIBC_2.4", "GLIBC_PRIVATE"}}
    assert required_glibc(data) == (2, 28)


def test_malformed_files_are_refused():
    with pytest.raises(ElfFormatError, match="not an ELF file"):
        version_needs(b"#!/bin/sh\n" + bytes(100))
    data = _elf32_big_endian({"libc.so.6": ["GLIBC_2.28"]})
    with pytest.raises(ElfFormatError):
        version_needs(data[:60])


def _pip_installing(files: dict[str, Path], distribution: str = "fastlib-1.4.0"):
    """A pip stand-in that installs ``files`` (layer path -> source) as one distribution."""

    def pip(command: Sequence[str]) -> None:
        target = Path(command[command.index("--target") + 1])
        info = target / f"{distribution}.dist-info"
        info.mkdir(parents=True)
        record = []
        for relative, source in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / relative)
            record.append(f"{relative},sha256=x,1")
        (info / "RECORD").write_text("\n".join(record) + "\n")

    return pip


def test_a_layer_needing_a_newer_glibc_than_amazon_linux_2_is_refused_with_what_to_do(compiled, tmp_path):
    pip = _pip_installing({"fastlib/_speedups.so": compiled[(2, 27)]})
    message = (
        r"the layer cannot load on python3.11: python/fastlib/_speedups.so \(from fastlib 1.4.0\) needs GLIBC_2.27, "
        r"but python3.11 runs on Amazon Linux 2 with glibc 2.26. To fix it, pin an older release of that package, "
        r"one with a manylinux wheel for glibc 2.26 \(e.g. --package 'fastlib<1.4.0'\), or deploy for python3.12 "
        r"or later \(Amazon Linux 2023, glibc 2.34: --python-version 3.12, with the driver on that Python too\)"
    )
    with pytest.raises(LayerPlatformError, match=message):
        layer.build_layer("3.11", "x86_64", ["fastlib"], workdir=tmp_path / "al2", pip=pip)
    build = layer.build_layer("3.12", "x86_64", ["fastlib"], workdir=tmp_path / "al2023", pip=pip)
    assert build.packages[-1] == "fastlib"


def test_a_glibc_newer_than_any_runtimes_leaves_only_pinning(compiled, tmp_path):
    assert (2, 36) in compiled, "this test needs a host with glibc 2.36 or newer (Debian 12, as this project's machines)"
    pip = _pip_installing({"fastlib.libs/libfast-1a2b.so.1": compiled[(2, 36)]})
    with pytest.raises(LayerPlatformError) as caught:
        layer.build_layer("3.13", "arm64", ["fastlib"], workdir=tmp_path, pip=pip)
    text = str(caught.value)
    assert "python/fastlib.libs/libfast-1a2b.so.1 (from fastlib 1.4.0) needs GLIBC_2.36" in text
    assert "Amazon Linux 2023 with glibc 2.34" in text and "--package 'fastlib<1.4.0'" in text
    assert "--python-version" not in text  # no Lambda runtime has glibc 2.36


@pytest.mark.skipif(MULTIARRAY is None, reason="needs numpy's core .so")
def test_the_installed_numpy_would_not_load_on_python_3_11(tmp_path):
    version = numpy.__version__
    needed = required_glibc(MULTIARRAY.read_bytes())
    pip = _pip_installing({f"numpy/_core/{MULTIARRAY.name}": MULTIARRAY}, f"numpy-{version}")
    if needed is None or needed <= (2, 26):
        layer.build_layer("3.11", "x86_64", [], workdir=tmp_path, pip=pip)  # a manylinux2014 build: it loads
        return
    with pytest.raises(LayerPlatformError, match=rf"from numpy {version}\) needs GLIBC_{needed[0]}\.{needed[1]}"):
        layer.build_layer("3.11", "x86_64", [], workdir=tmp_path, pip=pip)
