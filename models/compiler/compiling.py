"""compile_formula: parsed formula -> Transformer, as named stages (tracr style).

1. ``validation.validate``   fail fast, listing every unsupported operator / bad argument;
2. ``layout.plan``           residual layout and schedule (which block computes what);
3. ``operators.build_heads`` the heads of each temporal / counting node, with gap and tau;
4. ``assemble.build_model``  the weights (embedding, heads, exact ReLU MLPs, output heads);
5. ``CompiledModel``         the model plus per-head metadata and the residual layout.
"""

from __future__ import annotations

from softhard.data.alphabet import as_alphabet
from softhard.data.ltl.syntax import Formula
from softhard.models.compiler.assemble import build_model
from softhard.models.compiler.compiled import CompiledModel, HeadInfo
from softhard.models.compiler.layout import plan
from softhard.models.compiler.operators import EPSILON, build_heads
from softhard.models.compiler.validation import validate


def compile_formula(formula: Formula, alphabet, mode: str = "hard", length: int | None = None) -> CompiledModel:
    """Compile a parsed formula into a models.transformer.Transformer.

    Args:
        formula: a data.ltl Formula (``data.ltl.parse(text)``).
        alphabet: a data.alphabet.Alphabet, or its symbols ("a,b" or a sequence); symbol k is id k.
        mode: "hard" (unique-hard rightmost/leftmost attention, exact), "soft-scaled" (softmax,
            bounded feature i/n, temperatures tau(n) from each head's gap; exact for words of
            length <= ``length``) or "soft-unbounded" (softmax at fixed temperature with the
            unbounded feature i; X and U read the word length from a head of block 0).
            Counting comparisons (``#a > #b + 1``) compile in every mode, modular counting
            (``#a % 2 = 0``) in hard and soft-scaled (features i, i^2 and periodic ones).
        length: soft-scaled: the longest word length n the temperatures are set for (required);
            hard: optional, only recorded in the comparison heads' gaps.

    Returns:
        a CompiledModel: ``.model`` (Transformer), ``.predict(ids)``, ``.heads`` (HeadInfo),
        ``.residual_layout``.

    Raises:
        ValueError: unknown mode, missing length, symbols outside the alphabet.
        NotImplementedError: Modulo in soft-unbounded, with a modulus above 16 or more than
            MAX_LEAVES residue atoms (all listed at once, one line); count coefficients summing
            above operators.MAX_COEFFICIENTS; more than layout.MAX_DIMENSIONS residual dimensions.
    """
    alphabet = as_alphabet(alphabet)
    validate(formula, alphabet, mode, length)
    layout = plan(formula, mode)
    specs = [[spec for node in nodes for spec in build_heads(node, mode, length)] for nodes in layout.attention]
    model, units = build_model(layout, specs, alphabet, formula, mode)
    heads = [
        HeadInfo(
            layer=layer, head=h, operator=s.op, subformula=str(s.node), node=s.node, mask=s.mask, kind=s.kind,
            hard_kind=s.hard_kind, target_rule=s.target_rule,
            score="true" if s.score_formula is None else str(s.score_formula), gap=s.gap, tau=s.tau,
            notes=s.notes, score_formula=s.score_formula,
        )
        for layer, block in enumerate(specs)
        for h, s in enumerate(block)
    ]
    return CompiledModel(
        model=model, formula=formula, alphabet=alphabet, mode=mode, length=length, heads=heads,
        residual_layout={str(c): d for c, d in layout.index.items()},
        auxiliary=[str(a) for a in layout.aux], mlp_units=units,
        epsilon=None if mode == "hard" else EPSILON,
    )
