"""Formulas -> transformers: exact hard-attention and softmax constructions (docs/constructions.md).

    >>> from softhard.data.ltl import parse
    >>> from softhard.models.compiler import compile_formula
    >>> compiled = compile_formula(parse("b S a"), "a,b", mode="hard")
    >>> compiled.predict([[0, 1, 1, 0]]).astype(int).tolist()
    [[0, 1, 1, 1]]
"""

from softhard.models.compiler.compiled import CompiledModel, HeadInfo
from softhard.models.compiler.compiling import compile_formula
from softhard.models.compiler.validation import MODES

__all__ = ["MODES", "CompiledModel", "HeadInfo", "compile_formula"]
