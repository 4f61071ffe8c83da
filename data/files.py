"""Files written whole or not at all.

A reader (another process, a resumed run, `softhard report` on a grid that is still running)
never sees half a file: the content goes to a hidden temporary beside the target, which then
replaces it in one rename. The lowest layer holds this so that every layer can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Calls ``write(temporary)`` (a path in ``path``'s folder), then renames the temporary onto
    ``path``; on any failure the temporary is removed and ``path`` left as it was. Returns ``path``.

    The temporary ends in ``.tmp``: ``write`` must not infer the format from the file name
    (pass it, e.g. ``figure.savefig(file, format="png")``).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: parallel writers do not collide
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
