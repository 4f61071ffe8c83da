"""Formulas -> transformers: exact hard-attention and softmax constructions (docs/constructions.md).

    >>> from data.ltl import parse
    >>> from models.compiler import compile_formula
    >>> compiled = compile_formula(parse("b S a"), "a,b", mode="hard")
    >>> compiled.predict([[0, 1, 1, 0]]).astype(int).tolist()
    [[0, 1, 1, 1]]
"""

from models.compiler.compiled import CompiledModel, HeadInfo
from models.compiler.compiling import compile_formula
from models.compiler.validation import MODES

__all__ = ["MODES", "CompiledModel", "HeadInfo", "compile_formula"]
