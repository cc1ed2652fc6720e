"""Refusing what this machine's memory cannot hold before allocating it.

A size that comes from a user's file or option (an ``.npz`` header, a label of 1e9 that makes a billion classes,
``--hidden 100000,100000``) can ask for terabytes. NumPy would then fail with a traceback or, where the kernel
overcommits, succeed and get the process killed later; :func:`require_memory` compares the bytes needed with the
memory available first and says where the size came from.
"""

from __future__ import annotations

import os

from opreg.errors import OpregError

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


class TooLargeError(OpregError, ValueError):
    """A size, from a user's data, options or file, that this machine's memory cannot hold."""


def available_bytes() -> int | None:
    """The memory a new allocation can get: Linux's ``MemAvailable`` (free memory and what the kernel can
    reclaim), else the physical memory, else ``None`` where neither can be read (then nothing is refused)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def require_memory(nbytes: int, what: str, advice: str = "", *, estimate: bool = False) -> None:
    """Raise :class:`TooLargeError` if ``what`` needs more than the memory available: ``"{what} would take
    7.3 TiB, more than the 8.0 GiB of memory available{advice}"`` (``would take about`` for an ``estimate``)."""
    available = available_bytes()
    if available is not None and nbytes > available:
        about = "about " if estimate else ""
        raise TooLargeError(
            f"{what} would take {about}{format_bytes(nbytes)}, more than the {format_bytes(available)} of memory "
            f"available{advice}"
        )


def format_bytes(nbytes: int) -> str:
    """``nbytes`` in binary units, to two or three significant digits: ``8.0 GiB``, ``149 GiB``, ``7.3 TiB``."""
    power = min(max(nbytes.bit_length() - 1, 0) // 10, len(UNITS) - 1)
    value = nbytes / 1024**power
    return f"{value:.1f} {UNITS[power]}" if value < 10 else f"{value:.0f} {UNITS[power]}"
