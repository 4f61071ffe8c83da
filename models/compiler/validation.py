"""Stage 1: static validation. Fails fast, listing every problem in one error.

Checks the mode, the length (soft-scaled), the alphabet (it must cover the formula's
symbols) and the operators: modular counting (``Modulo``) has no soft-unbounded construction and
is built for moduli up to ``MAX_PERIOD`` with at most ``MAX_LEAVES`` residue atoms (see
``operators.py``). Unsupported operators raise ``NotImplementedError`` naming each one with its
subformula and the reason, one line each; malformed arguments raise ``ValueError``.
"""

from __future__ import annotations

from softhard.data.alphabet import Alphabet
from softhard.data.ltl.syntax import Formula, Modulo
from softhard.models.compiler.layout import MAX_LEAVES
from softhard.models.compiler.operators import residue_atoms
from softhard.models.positional import MAX_PERIOD

MODES = ("hard", "soft-unbounded", "soft-scaled")


def validate(formula: Formula, alphabet: Alphabet, mode: str, length) -> None:
    """Raise ValueError (bad arguments) or NotImplementedError (unsupported operators)."""
    problems = []
    if not isinstance(formula, Formula):
        raise TypeError(f"compile_formula expects a parsed Formula (data.ltl.parse), got {type(formula).__name__}")
    if mode not in MODES:
        problems.append(f"unknown mode {mode!r}; expected one of {MODES}")
    if mode == "soft-scaled" and not (isinstance(length, int) and length >= 1):
        problems.append(f"mode 'soft-scaled' needs length=n (the longest word, an int >= 1) for tau(n); got {length!r}")
    missing = sorted(formula.symbols - set(alphabet.symbols))
    if missing:
        problems.append(f"formula {formula} uses symbols {missing} not in the alphabet {alphabet}")
    if problems:
        raise ValueError("cannot compile: " + "; ".join(problems))

    unsupported = [problem for node in formula.walk() if isinstance(node, Modulo)
                   for problem in [modulo_problem(node, mode)] if problem]
    if unsupported:
        raise NotImplementedError("cannot compile: " + "; ".join(unsupported))


def modulo_problem(node: Modulo, mode: str) -> str | None:
    """Why ``t % m = r`` cannot be compiled in ``mode`` (one line), or None."""
    where = f"modular counting (%) in `{node}`"
    if mode == "soft-unbounded":
        return (f"{where} has no construction in mode 'soft-unbounded': the lookup of #p's residue separates "
                "keys by 1/(i+1), which no fixed temperature keeps for every length (use 'hard' or 'soft-scaled')")
    if node.modulus > MAX_PERIOD:
        return f"{where}: modulus {node.modulus} above {MAX_PERIOD}, the longest period of the periodic features"
    atoms = len(residue_atoms(node))
    if atoms > MAX_LEAVES:
        return (f"{where}: {atoms} residue atoms ((m - 1) per count) exceed the {MAX_LEAVES} leaves of one truth "
                "table (split the term)")
    return None
