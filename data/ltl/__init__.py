"""Formulas of LTL with past, future and counting (shared/docs/ltl-spec.md): parse and evaluate.

    >>> from softhard.data.ltl import parse
    >>> parse("b S a").evaluate("abba").astype(int).tolist()
    [0, 1, 1, 1]
"""

from softhard.data.alphabet import is_symbol
from softhard.data.errors import FormulaSyntaxError, UnknownSymbolError
from softhard.data.ltl.parser import MAX_NESTING, parse
from softhard.data.ltl.syntax import Formula, Term

__all__ = ["parse", "is_symbol", "MAX_NESTING", "Formula", "Term", "FormulaSyntaxError", "UnknownSymbolError"]
