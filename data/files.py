"""Files and folders written whole or not at all.

A reader (another process, a resumed run, `softhard report` on a grid that is still running)
never sees half a file: the content goes to a hidden temporary beside the target, which then
replaces it in one rename. The lowest layer holds this so that every layer can use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Calls ``write(temporary)`` (a path beside ``path``, which ``write`` makes a file or a folder),
    then renames the temporary onto ``path``; on any failure the temporary is removed and ``path``
    left as it was. Returns ``path``. A folder replaces only an absent or empty folder.

    The temporary ends in ``.tmp``: ``write`` must not infer a file's format from its name
    (pass it, e.g. ``figure.savefig(file, format="png")``).
    """
    path = Path(path)
    # unique per call: parallel writers (processes, threads) of one path do not collide
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise
    return path
