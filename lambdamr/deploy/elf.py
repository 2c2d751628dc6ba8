"""What a shared object needs from glibc: the version needs of an ELF file.

The dynamic loader refuses a library whose version needs (``.gnu.version_r``; in the dynamic
segment ``DT_VERNEED``) name a symbol version the system's libraries lack, e.g. a ``.so``
built against glibc 2.27 needs ``GLIBC_2.27`` from ``libc.so.6`` or ``libm.so.6`` and fails
to load on Amazon Linux 2 (glibc 2.26) with "version `GLIBC_2.27' not found".

This reads exactly those records (System V gABI, "Symbol Versioning"): the section of type
``SHT_GNU_verneed`` and its linked string table, or — when section headers were stripped —
the ``DT_VERNEED``/``DT_VERNEEDNUM``/``DT_STRTAB`` entries of the dynamic segment, whose
addresses are mapped to file offsets through the ``PT_LOAD`` segments. 32- and 64-bit,
either byte order. ``readelf -V`` prints the same records.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

MAGIC = b"\x7fELF"
_SHT_GNU_VERNEED = 0x6FFFFFFE
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_STRTAB, _DT_VERNEED, _DT_VERNEEDNUM = 0, 5, 0x6FFFFFFE, 0x6FFFFFFF
_GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


class ElfFormatError(ValueError):
    """The file is not a well-formed ELF object."""


class _Layout:
    """Field formats of one ELF class (32/64-bit) and byte order."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != MAGIC or len(data) < 52:
            raise ElfFormatError("not an ELF file")
        bits, order = data[4], data[5]
        if bits not in (1, 2) or order not in (1, 2):
            raise ElfFormatError(f"unknown ELF class {bits} or byte order {order}")
        self.order = "<" if order == 1 else ">"
        wide = bits == 2
        self.header = self.order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH")
        self.section = self.order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
        self.segment = self.order + ("IIQQQQQQ" if wide else "IIIIIIII")
        self.dynamic = self.order + ("qQ" if wide else "iI")
        self.wide = wide


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ElfFormatError(f"truncated at offset {offset}") from None


def _cstring(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    if offset >= len(data) or end < 0:
        raise ElfFormatError(f"string at offset {offset} runs past the end")
    return data[offset:end].decode("ascii", "replace")


def _from_sections(data: bytes, elf: _Layout) -> tuple[int, int, int] | None:
    """(verneed offset, entry count, string table offset) from the section headers."""
    _, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, _ = _unpack(elf.header, data, 16)
    if shoff == 0:
        return None
    if shnum == 0:  # more than 0xff00 sections: the real count is in section 0's sh_size
        shnum = _unpack(elf.section, data, shoff)[5]
    sections = [_unpack(elf.section, data, shoff + i * shentsize) for i in range(shnum)]
    for _, sh_type, _, _, offset, _, link, info, _, _ in sections:
        if sh_type == _SHT_GNU_VERNEED:
            if link >= len(sections):
                raise ElfFormatError(f"version needs link to section {link} of {len(sections)}")
            return offset, info, sections[link][4]
    return (0, 0, 0) if sections else None


def _from_dynamic(data: bytes, elf: _Layout) -> tuple[int, int, int]:
    """(verneed offset, entry count, string table offset) from the dynamic segment."""
    _, _, _, _, phoff, _, _, _, phentsize, phnum, _, _, _ = _unpack(elf.header, data, 16)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        fields = _unpack(elf.segment, data, phoff + i * phentsize)
        if elf.wide:
            p_type, _, offset, vaddr, _, filesz, _, _ = fields
        else:
            p_type, offset, vaddr, _, filesz, _, _, _ = fields
        if p_type == _PT_LOAD:
            loads.append((vaddr, filesz, offset))
        elif p_type == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return 0, 0, 0  # statically linked: needs nothing at load time
    tags: dict[int, int] = {}
    entry = struct.calcsize(elf.dynamic)
    for position in range(dynamic[0], dynamic[0] + dynamic[1], entry):
        tag, value = _unpack(elf.dynamic, data, position)
        if tag == _DT_NULL:
            break
        tags.setdefault(tag, value)
    if _DT_VERNEED not in tags:
        return 0, 0, 0

    def file_offset(address: int) -> int:
        for vaddr, filesz, offset in loads:
            if vaddr <= address < vaddr + filesz:
                return offset + address - vaddr
        raise ElfFormatError(f"address {address:#x} lies in no loaded segment")

    return file_offset(tags[_DT_VERNEED]), tags.get(_DT_VERNEEDNUM, 0), file_offset(tags[_DT_STRTAB])


def version_needs(data: bytes) -> dict[str, set[str]]:
    """Symbol versions an ELF object needs, by the library that must provide them:
    ``{"libc.so.6": {"GLIBC_2.14", ...}, "libm.so.6": {...}}``.

    Raises:
        ElfFormatError: ``data`` is not a well-formed ELF object.
    """
    elf = _Layout(data)
    located = _from_sections(data, elf)
    offset, count, strtab = located if located is not None else _from_dynamic(data, elf)
    needs: dict[str, set[str]] = {}
    for _ in range(count):  # Elf_Verneed: version, cnt, file, aux, next
        _, aux_count, file_name, aux, next_need = _unpack(elf.order + "HHIII", data, offset)
        names = needs.setdefault(_cstring(data, strtab + file_name), set())
        position = offset + aux
        for _ in range(aux_count):  # Elf_Vernaux: hash, flags, other, name, next
            _, _, _, name, next_aux = _unpack(elf.order + "IHHII", data, position)
            names.add(_cstring(data, strtab + name))
            position += next_aux
        if next_need == 0:
            break
        offset += next_need
    return needs


def glibc_version(name: str) -> tuple[int, ...] | None:
    """``GLIBC_2.27`` -> ``(2, 27)``; ``None`` for other names (``GLIBC_PRIVATE``, ``GCC_3.0``)."""
    match = _GLIBC_VERSION.match(name)
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def required_glibc(data: bytes) -> tuple[int, ...] | None:
    """The newest ``GLIBC_x.y`` an ELF object needs, or ``None`` when it needs none."""
    found = [v for names in version_needs(data).values() for v in map(glibc_version, names) if v is not None]
    return max(found, default=None)


def is_elf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == MAGIC
