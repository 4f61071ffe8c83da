"""softhard: the command-line entry point that ties data/, models/, train/ and analysis/ together.

The layers live in the repository's top-level folders and are installed as
`softhard.data`, `softhard.models`, `softhard.train` and `softhard.analysis`
(pyproject.toml maps the names). In a source checkout the folders sit beside this
package, so the checkout itself is searched for them too: tests and scripts run from
any clone or worktree then import that tree's layers, whatever was installed.
"""
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "models" / "transformer.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file():
    __path__.append(str(_CHECKOUT))
