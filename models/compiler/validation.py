"""Stage 1: static validation. Fails fast, listing every problem in one error.

Checks the mode, the length (soft-scaled), the alphabet (it must cover the formula's
symbols) and the operators: modular counting (``Modulo``) is not compiled, and
``soft-unbounded`` has no construction for until (U) (see ``operators.py``). Unsupported operators raise ``NotImplementedError`` naming each one with
its subformula; malformed arguments raise ``ValueError``.
"""

from __future__ import annotations

from softhard.data.alphabet import Alphabet
from softhard.data.ltl.syntax import Binary, Formula, Modulo, Unary

MODES = ("hard", "soft-unbounded", "soft-scaled")

# operators with no construction in a mode (beyond counting, which no mode supports yet)
UNSUPPORTED_IN_MODE = {"soft-unbounded": ("U",)}


def as_alphabet(alphabet) -> Alphabet:
    if isinstance(alphabet, Alphabet):
        return alphabet
    if isinstance(alphabet, str):
        return Alphabet.from_text(alphabet)
    return Alphabet(alphabet)


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
        raise ValueError("cannot compile:\n  " + "\n  ".join(problems))

    unsupported = []
    for node in formula.walk():
        if isinstance(node, Modulo):
            unsupported.append(f"counting operator Modulo (%) in `{node}`: modular counting is not compiled in any "
                               "mode (it is outside what softmax attention is known to simulate)")
        elif isinstance(node, (Unary, Binary)) and node.op in UNSUPPORTED_IN_MODE.get(mode, ()):
            unsupported.append(f"operator {node.op} in `{node}` has no construction in mode {mode!r} "
                               "(the leftmost target needs n-dependent scores; use 'soft-scaled' or 'hard')")
    if unsupported:
        raise NotImplementedError("cannot compile:\n  " + "\n  ".join(unsupported))
