"""The record of installed plugins that hung while loading, so that later processes skip them without waiting.

A plugin whose import or hook does not finish within ``OPREG_PLUGIN_TIMEOUT`` seconds is given up on
(:mod:`opreg.plugin_manager`) and remembered here; the next processes skip it at once, until its distribution
changes (another version, or a reinstall, which rewrites its ``RECORD``) or ``OPREG_RETRY_PLUGINS=1`` forgets every
remembered plugin and tries each again. Loading plugins lazily instead would only move the wait to the first use
of an op, in every process, and a hang is rarely cured by waiting again; remembering costs a process nothing but
opening one file that does not exist, as long as no plugin ever hung.

The record is one small JSON file per environment, named after ``sys.prefix``, in ``OPREG_CACHE_DIR``, else
``$XDG_CACHE_HOME/opreg``, else ``~/.cache/opreg``: the user's, since a system Python's prefix is not writable.
Where it cannot be written, nothing is remembered, and a hung plugin costs each process the timeout, as before.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # entry points come from opreg.plugin_manager, which imports importlib.metadata when it loads them
    from importlib import metadata

RETRY_VAR = "OPREG_RETRY_PLUGINS"
CACHE_VAR = "OPREG_CACHE_DIR"


def read() -> dict[str, str]:
    """:func:`identity` -> why, of each plugin remembered as hung; empty when none ever hung (no file)."""
    try:
        hung = json.loads(_path().read_text())
    except (OSError, ValueError):  # nothing recorded (the usual case), or unreadable: every plugin is tried
        return {}
    return {str(key): str(why) for key, why in hung.items()} if isinstance(hung, dict) else {}


def remember(entry_point: metadata.EntryPoint, why: str) -> None:
    """Add a plugin that hung, and ``why`` (what the skip warning of later processes says)."""
    _write({**read(), identity(entry_point): why})


def forget_all() -> None:
    """Forget every remembered plugin (``OPREG_RETRY_PLUGINS=1``), so that each is tried again."""
    _write({})


def identity(entry_point: metadata.EntryPoint) -> str:
    """What a remembered hang holds for: the distribution, its version, the entry point, and a digest of the
    distribution's ``RECORD`` (which lists a hash of every installed file), so that reinstalling ends the skip."""
    import hashlib  # only for a plugin that hung: not imported by every `import opreg`

    dist = entry_point.dist
    record = (dist.read_text("RECORD") if dist else None) or ""
    digest = hashlib.sha256(record.encode()).hexdigest()[:16]
    distribution = f"{dist.name} {dist.version}" if dist else "no distribution"
    return f"{distribution}, entry point {entry_point.name} = {entry_point.value}, RECORD {digest}"


def _path() -> Path:
    folder = os.environ.get(CACHE_VAR) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opreg"
    environment = re.sub(r"[^\w.]+", "-", sys.prefix).strip("-")  # /work/.venv: work-.venv
    return Path(folder) / f"hung-plugins-{environment}.json"


def _write(hung: dict[str, str]) -> None:
    """Replace the record, atomically (another process may be reading it); an empty one is no file at all."""
    path = _path()
    try:
        if not hung:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(hung, indent=1, sort_keys=True))
        os.replace(partial, path)
    except OSError:  # a read-only home, a full disk: nothing is remembered
        pass
