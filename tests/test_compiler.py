"""The formula compiler (models/compiler): exactness, metadata, soft modes, errors."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

from softhard.data.alphabet import Alphabet
from softhard.data.language import Language
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.syntax import (
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Integer,
    Modulo,
    Symbol,
    Unary,
    temporal_depth,
    uses_counting,
)
from softhard.data.registry import REGISTRY
from softhard.models.compiler import compile_formula
from softhard.models.compiler import layout as layout_module
from softhard.models.compiler.blocked import evaluate
from softhard.models.compiler.layout import MAX_LEAVES, leaves, plan
from softhard.models.compiler.operators import aux_score
from softhard.models.transformer import Transformer

NON_COUNTING = [spec for spec in REGISTRY.values() if spec.kind != "counting" and not uses_counting(parse(spec.formula))]


def all_words(k: int, n: int) -> np.ndarray:
    return np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64)


def random_formula(rng: np.random.Generator, depth: int, symbols, ops=("Y", "X", "O", "H", "F", "G", "S", "U")):
    """A random formula of temporal depth <= depth mixing past and future operators."""
    roll = rng.random()
    if depth == 0 or roll < 0.15:
        if rng.random() < 0.1:
            return Constant(bool(rng.integers(2)))
        return Symbol(str(rng.choice(symbols)))
    if roll < 0.3:
        return Unary("!", random_formula(rng, depth, symbols, ops))
    if roll < 0.45:
        op = str(rng.choice(["&", "|", "->", "<->"]))
        return Binary(op, random_formula(rng, depth, symbols, ops), random_formula(rng, depth - 1, symbols, ops))
    op = str(rng.choice(ops))
    if op in ("S", "U"):
        return Binary(op, random_formula(rng, depth - 1, symbols, ops), random_formula(rng, depth - 1, symbols, ops))
    return Unary(op, random_formula(rng, depth - 1, symbols, ops))


def random_formulas(count: int, seed: int, ops=("Y", "X", "O", "H", "F", "G", "S", "U")):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        symbols = ["a", "b", "c"][: 2 + len(out) % 2]
        phi = random_formula(rng, 4, symbols, ops)
        if temporal_depth(phi) >= 1:
            out.append((phi, Alphabet(symbols)))
    return out


RANDOM = random_formulas(30, seed=0)


def check_agrees(compiled, phi, alphabet, lengths=range(1, 9), long_words=20, long_length=200, seed=0):
    for n in lengths:
        ids = all_words(len(alphabet), n)
        np.testing.assert_array_equal(compiled.predict(ids), label_positions(phi, ids, alphabet), err_msg=f"{phi} n={n}")
    if long_words:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, len(alphabet), size=(long_words, long_length))
        np.testing.assert_array_equal(compiled.predict(ids), label_positions(phi, ids, alphabet), err_msg=f"{phi} long")


LONG = 1000
MODES = ("hard", "soft-scaled", "soft-unbounded")


def compile_for(phi, alphabet, mode):
    return compile_formula(phi, alphabet, mode=mode, length=LONG if mode == "soft-scaled" else None)


@pytest.mark.parametrize("spec", NON_COUNTING, ids=lambda s: s.name)
def test_hard_registry_languages(spec):
    phi, alphabet = parse(spec.formula), Alphabet.from_text(spec.alphabet)
    compiled = compile_formula(phi, alphabet, mode="hard")
    assert isinstance(compiled.model, Transformer)
    assert compiled.model.config.n_layers == max(1, temporal_depth(phi))
    check_agrees(compiled, phi, alphabet)


@pytest.mark.parametrize("index", range(len(RANDOM)))
def test_hard_random_formulas(index):
    phi, alphabet = RANDOM[index]
    check_agrees(compile_formula(phi, alphabet, mode="hard"), phi, alphabet, seed=index)


def test_random_formulas_cover_every_operator():
    ops = {n.op for phi, _ in RANDOM for n in phi.walk() if isinstance(n, (Unary, Binary))}
    assert {"Y", "X", "O", "H", "F", "G", "S", "U", "!", "&", "|", "->", "<->"} <= ops


def test_residual_stream_holds_exact_truth_values():
    phi, alphabet = parse("(a | b) S (c & H(a -> F b))"), Alphabet.from_text("a,b,c")
    compiled = compile_formula(phi, alphabet)
    ids = all_words(3, 5)
    out = compiled.model(torch.as_tensor(ids))
    final = out.hidden_states[-1].detach().numpy()
    for sub in phi.subformulas():
        values = final[..., compiled.residual_layout[str(sub)]]
        np.testing.assert_array_equal(values, label_positions(sub, ids, alphabet).astype(values.dtype), err_msg=str(sub))


def test_worked_example_and_layout():
    compiled = compile_formula(parse("b S a"), "a,b")
    assert compiled.predict(Alphabet.from_text("a,b").encode("abba")[None]).astype(int).tolist() == [[0, 1, 1, 1]]
    assert set(compiled.residual_layout) >= {"<one>", "a", "b", "b S a"}
    (head,) = compiled.heads
    assert (head.layer, head.head, head.operator, head.subformula) == (0, 0, "S", "b S a")
    assert (head.mask, head.kind, head.score) == ("strict_past", "rightmost", "a | !b")


METADATA_FORMULAS = [("(a | b) S (c & H(a -> F b))", "a,b,c"), ("X a U (Y b & O a) | G(a -> X b)", "a,b"),
                     ("Y Y a & H(a <-> X b)", "a,b"), ("H(#a >= #b) & #a = #(b S a) + 1 | X(#c < 2)", "a,b,c")]


@pytest.mark.parametrize("text,symbols", METADATA_FORMULAS)
def test_hard_attention_stays_inside_declared_targets(text, symbols):
    phi, alphabet = parse(text), Alphabet.from_text(symbols)
    compiled = compile_formula(phi, alphabet)
    ids = np.concatenate([all_words(len(alphabet), 6), np.random.default_rng(1).integers(0, len(alphabet), (5, 6))])
    out = compiled.model(torch.as_tensor(ids), return_attention=True)
    targets = compiled.hard_targets(ids)
    assert len(targets) == len(compiled.heads) >= 2
    for info, target in zip(compiled.heads, targets):
        att = out.attention[info.layer][:, info.head].detach().numpy()  # (B, n, n+1)
        assert target.shape == att.shape
        assert (att[~target] == 0).all(), info.subformula
        np.testing.assert_allclose(att.sum(-1), 1.0)
        if info.target_rule in ("last", "first"):  # a unique target per query
            assert (target.sum(-1) == 1).all()


def test_hard_targets_examples():
    alphabet = Alphabet.from_text("a,b")
    compiled = compile_formula(parse("Y a & X b & (b S a) & F a"), alphabet)
    word = alphabet.encode("abba")[None]
    sets = {info.operator: t[0] for info, t in zip(compiled.heads, compiled.hard_targets(word))}
    cols = lambda rows: [np.flatnonzero(r).tolist() for r in rows]
    assert cols(sets["Y"]) == [[0], [1], [2], [3]]
    assert cols(sets["X"]) == [[2], [3], [4], [0]]
    assert cols(sets["S"]) == [[0], [1], [1], [1]]  # a | !b holds at 0 only
    assert cols(sets["F"]) == [[4], [4], [4], [0]]


@pytest.mark.parametrize("mode", ["soft-scaled", "soft-unbounded"])
@pytest.mark.parametrize("spec", NON_COUNTING, ids=lambda s: s.name)
def test_soft_registry_languages(spec, mode):
    phi, alphabet = parse(spec.formula), Alphabet.from_text(spec.alphabet)
    compiled = compile_for(phi, alphabet, mode)
    assert all(info.kind == "softmax" for info in compiled.heads)
    assert all(block.attn.kinds == ["softmax"] * len(block.attn.kinds) for block in compiled.model.blocks)
    check_agrees(compiled, phi, alphabet, long_words=5, long_length=500)


@pytest.mark.parametrize("index", range(0, len(RANDOM), 3))
def test_soft_scaled_random(index):
    phi, alphabet = RANDOM[index]
    check_agrees(compile_formula(phi, alphabet, mode="soft-scaled", length=200), phi, alphabet, lengths=range(1, 9),
                 seed=index)


def test_soft_scaled_attention_close_to_targets():
    phi = parse("(a | b) S (c & H(a -> F b)) | X a U Y b | #a - #b != 2 & #c <= #(a S b)")
    alphabet = Alphabet.from_text("a,b,c")
    compiled = compile_formula(phi, alphabet, mode="soft-scaled", length=50)
    ids = np.random.default_rng(2).integers(0, 3, (8, 50))
    out = compiled.model(torch.as_tensor(ids), return_attention=True)
    for info, target in zip(compiled.heads, compiled.hard_targets(ids)):
        att = out.attention[info.layer][:, info.head].detach().numpy()
        assert (att * target).sum(-1).min() >= 1 - compiled.epsilon, info.subformula
        assert info.tau < 1


def test_soft_scaled_weights_switched_to_hard_are_exact():
    phi, alphabet = RANDOM[1]
    compiled = compile_formula(phi, alphabet, mode="soft-scaled", length=100)
    compiled.model.set_attention_kind([[info.hard_kind for info in compiled.heads if info.layer == layer]
                                       + ["rightmost"] * (compiled.model.config.n_heads
                                                          - sum(i.layer == layer for i in compiled.heads))
                                       for layer in range(compiled.model.config.n_layers)])
    check_agrees(compiled, phi, alphabet, lengths=range(1, 9), long_length=100)


@pytest.mark.parametrize("index", range(0, len(RANDOM), 3))
def test_soft_unbounded_random(index):
    phi, alphabet = RANDOM[index]
    compiled = compile_formula(phi, alphabet, mode="soft-unbounded")
    assert compiled.model.config.positional == ["i"]
    assert all(info.kind == "softmax" for info in compiled.heads)
    check_agrees(compiled, phi, alphabet, lengths=range(1, 9), long_words=5, long_length=256, seed=index)


def test_soft_unbounded_attention_close_to_targets():
    phi = parse("H(a -> F b) & (a S Y c) | G X a | (c U Y b) | #a - #(b S c) > 1 & #c = 3")
    alphabet = Alphabet.from_text("a,b,c")
    compiled = compile_formula(phi, alphabet, mode="soft-unbounded")
    assert {info.operator for info in compiled.heads} >= {"n", "i*", "F", "G", "H", "S", "U", "Y", "X", "#", "compare"}
    ids = np.random.default_rng(3).integers(0, 3, (6, 80))
    out = compiled.model(torch.as_tensor(ids), return_attention=True)
    for info, target in zip(compiled.heads, compiled.hard_targets(ids)):
        att = out.attention[info.layer][:, info.head].detach().numpy()
        assert (att * target).sum(-1).min() >= 1 - compiled.epsilon, info.subformula


def test_unsupported_operators_listed_at_once():
    with pytest.raises(NotImplementedError) as err:
        compile_formula(parse("#a > #b & Y(#a % 2 = 0) | #b % 3 = 1"), "a,b", mode="soft-unbounded")
    message = str(err.value)
    assert "\n" not in message
    problems = message.removeprefix("cannot compile: ").split("; ")
    assert len(problems) == 2 and "`#a % 2 = 0`" in problems[0] and "`#b % 3 = 1`" in problems[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode"):
        compile_formula(parse("a"), "a,b", mode="soft")
    with pytest.raises(ValueError, match="length"):
        compile_formula(parse("Y a"), "a,b", mode="soft-scaled")
    with pytest.raises(ValueError, match="exceed length=5"):
        compile_formula(parse("Y a"), "a,b", mode="soft-scaled", length=5).predict(np.zeros((1, 6), dtype=int))
    with pytest.raises(TypeError, match="parsed Formula"):
        compile_formula("Y a", "a,b")
    with pytest.raises(ValueError, match="'c'"):
        compile_formula(parse("Y c"), "a,b")


def test_depth_zero_and_constants():
    for text in ("a", "true", "false", "!a | b", "a <-> b"):
        phi = parse(text)
        compiled = compile_formula(phi, "a,b")
        assert compiled.heads == []
        check_agrees(compiled, phi, Alphabet.from_text("a,b"), long_words=2)


# ---------------------------------------------------------------------------------------------
# counting: #p by uniform attention, comparisons by sign heads (hard and soft-scaled)

COUNTING = [spec for spec in REGISTRY.values() if spec.kind == "counting"]
MODULAR = [spec for spec in REGISTRY.values() if any(isinstance(n, Modulo) for n in parse(spec.formula).walk())]


def random_counting_formula(rng, depth, symbols):
    """A random formula with comparisons of count terms over random (temporal) subformulas."""
    def term():
        out = Count(random_formula(rng, max(0, depth - 1), symbols))
        for _ in range(int(rng.integers(0, 3))):
            right = Count(random_formula(rng, max(0, depth - 1), symbols)) if rng.random() < 0.6 else Integer(int(rng.integers(0, 4)))
            out = Arithmetic(str(rng.choice(["+", "-"])), out, right)
        return out

    compare = Compare(str(rng.choice(["<", "<=", "=", "!=", ">", ">="])), term(),
                      term() if rng.random() < 0.6 else Integer(int(rng.integers(0, 4))))
    other = random_formula(rng, depth, symbols)
    shape = rng.integers(4)
    if shape == 0:
        return compare
    if shape == 1:
        return Binary(str(rng.choice(["&", "|", "<->"])), compare, other)
    return Unary(str(rng.choice(["Y", "X", "O", "H", "F", "G"])), compare) if shape == 2 else Binary("S", other, compare)


COUNTING_RANDOM = [(random_counting_formula(np.random.default_rng(100 + k), 2, ["a", "b", "c"][: 2 + k % 2]),
                    Alphabet(["a", "b", "c"][: 2 + k % 2])) for k in range(12)]


@pytest.mark.parametrize("mode", ["hard", "soft-scaled", "soft-unbounded"])
@pytest.mark.parametrize("spec", COUNTING, ids=lambda s: s.name)
def test_counting_registry(spec, mode):
    phi, alphabet = parse(spec.formula), Alphabet.from_text(spec.alphabet)
    compiled = compile_formula(phi, alphabet, mode=mode, length=200)
    check_agrees(compiled, phi, alphabet)


@pytest.mark.parametrize("mode", ["hard", "soft-scaled", "soft-unbounded"])
@pytest.mark.parametrize("index", range(len(COUNTING_RANDOM)))
def test_counting_random(index, mode):
    phi, alphabet = COUNTING_RANDOM[index]
    check_agrees(compile_formula(phi, alphabet, mode=mode, length=200), phi, alphabet, lengths=range(1, 9), seed=index)


def random_modular_formula(rng, symbols):
    """`#p % 2 = r` over a random temporal p, inside a random formula with future operators."""
    parity = Modulo(Count(random_formula(rng, 1, symbols)), 2, int(rng.integers(2)))
    other = random_formula(rng, 2, symbols, ops=("X", "U", "F", "G", "Y", "S"))
    shape = rng.integers(4)
    if shape == 0:
        return Binary(str(rng.choice(["&", "|", "<->"])), parity, other)
    if shape == 1:
        return Unary(str(rng.choice(["X", "F", "G", "Y"])), parity)
    return Binary("U", other, parity) if shape == 2 else Binary("S", parity, other)


MODULAR_RANDOM = [(random_modular_formula(np.random.default_rng(200 + k), ["a", "b", "c"][: 2 + k % 2]),
                   Alphabet(["a", "b", "c"][: 2 + k % 2])) for k in range(8)]
MODULAR_MODES = ("hard", "soft-scaled")  # soft-unbounded refuses `%` (validation.modulo_problem)


@pytest.mark.parametrize("mode", MODULAR_MODES)
@pytest.mark.parametrize("spec", MODULAR, ids=lambda s: s.name)
def test_modular_registry(spec, mode):
    phi, alphabet = parse(spec.formula), Alphabet.from_text(spec.alphabet)
    compiled = compile_formula(phi, alphabet, mode=mode, length=LONG)
    assert "mod" in {info.operator for info in compiled.heads}
    check_agrees(compiled, phi, alphabet, long_words=4, long_length=256)


@pytest.mark.parametrize("mode", MODULAR_MODES)
@pytest.mark.parametrize("index", range(len(MODULAR_RANDOM)))
def test_modular_random(index, mode):
    phi, alphabet = MODULAR_RANDOM[index]
    check_agrees(compile_formula(phi, alphabet, mode=mode, length=LONG), phi, alphabet, long_words=4,
                 long_length=256, seed=index)


def test_modular_lookup_attends_to_the_count():
    """The residue head picks key j with j + 1 = #p (the sink when #p = 0), and any modulus works."""
    phi, alphabet = parse("#(a | Y b) - #b % 5 = 2 | #a % 3 = 1"), Alphabet.from_text("a,b")
    for mode in MODULAR_MODES:
        compiled = compile_formula(phi, alphabet, mode=mode, length=40)
        ids = np.random.default_rng(4).integers(0, 2, (6, 40))
        out = compiled.model(torch.as_tensor(ids), return_attention=True)
        lookups = [(info, t) for info, t in zip(compiled.heads, compiled.hard_targets(ids)) if info.operator == "mod"]
        assert len(lookups) == 2 * 4 + 2  # (m - 1) residue atoms per count
        for info, target in lookups:
            att = out.attention[info.layer][:, info.head].detach().numpy()
            assert (target.sum(-1) == 1).all()
            assert (att * target).sum(-1).min() >= (1.0 if mode == "hard" else 1 - compiled.epsilon), info.subformula
        check_agrees(compiled, phi, alphabet, lengths=range(1, 7), long_words=4, long_length=40)


def test_modular_refusals_name_the_operator_and_the_reason():
    with pytest.raises(NotImplementedError, match=r"`#a % 2 = 0` has no construction in mode 'soft-unbounded'"):
        compile_formula(parse("Y(#a % 2 = 0)"), "a,b", mode="soft-unbounded")
    with pytest.raises(NotImplementedError, match="modulus 17 above 16"):
        compile_formula(parse("#a % 17 = 0"), "a,b")
    with pytest.raises(NotImplementedError, match="14 residue atoms"):
        compile_formula(parse("#a + #b % 8 = 0"), "a,b")


def test_counting_metadata_and_layout():
    compiled = compile_formula(parse("#a - #b >= 2"), "a,b")
    ops = [(h.layer, h.operator, h.subformula, h.mask, h.kind) for h in compiled.heads]
    assert ops == [(0, "#", "#a", "past", "average"), (0, "#", "#b", "past", "average"),
                   (1, "compare", "#a - #b >= 2", "past", "rightmost")]
    assert "<1/i>" in compiled.residual_layout and "#a" in compiled.residual_layout
    ids = Alphabet.from_text("a,b").encode("aabab")[None]
    out = compiled.model(torch.as_tensor(ids))
    np.testing.assert_allclose(out.hidden_states[1][0, :, compiled.residual_layout["#a"]].detach().numpy(),
                               [1, 1, 2 / 3, 3 / 4, 3 / 5], rtol=1e-6)


# ---------------------------------------------------------------------------- words of length 1,000
@functools.lru_cache(maxsize=None)
def long_words(name: str) -> tuple[Language, np.ndarray]:
    """Two members and two non-members of length 1,000 (exact samplers), drawn once per language."""
    language = Language.from_text(REGISTRY[name].formula, REGISTRY[name].alphabet)
    return language, language.sample_both(LONG, 2, seed=7)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", REGISTRY.values(), ids=lambda s: s.name)
def test_registry_languages_at_length_1000(spec, mode):
    """Every registry language in every mode with a construction on words of length 1,000, memory-linear."""
    language, ids = long_words(spec.name)
    if spec in MODULAR and mode == "soft-unbounded":
        with pytest.raises(NotImplementedError, match="soft-unbounded"):
            compile_for(language.formula, language.alphabet, mode)
        return
    compiled = compile_for(language.formula, language.alphabet, mode)
    np.testing.assert_array_equal(evaluate(compiled, ids).predictions, language.label(ids), err_msg=spec.name)


def assert_exact_on_random_long_words(phi, alphabet, mode: str, seed: int) -> None:
    """The compiled model labels two random words of length LONG exactly as data.ltl does."""
    words = np.random.default_rng(seed).integers(0, len(alphabet), size=(2, LONG))
    predictions = evaluate(compile_for(phi, alphabet, mode), words).predictions
    np.testing.assert_array_equal(predictions, label_positions(phi, words, alphabet), err_msg=str(phi))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", range(0, len(RANDOM), 3))
def test_random_formulas_at_length_1000(index, mode):
    assert_exact_on_random_long_words(*RANDOM[index], mode, seed=index)


@pytest.mark.parametrize("mode", MODULAR_MODES)
@pytest.mark.parametrize("index", range(0, len(MODULAR_RANDOM), 2))
def test_random_modular_formulas_at_length_1000(index, mode):
    assert_exact_on_random_long_words(*MODULAR_RANDOM[index], mode, seed=index)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", range(0, len(COUNTING_RANDOM), 3))
def test_random_counting_formulas_at_length_1000(index, mode):
    assert_exact_on_random_long_words(*COUNTING_RANDOM[index], mode, seed=index)


# --- Boolean nodes over more than MAX_LEAVES leaves ------------------------------------------

# 15 distinct temporal leaves under one conjunction chain (no U, so every mode applies)
WIDE = ("(Y a | X b) & (O c -> H a) & (F a <-> G b) & ((a S b) | (b S c)) & (Y b | X c | O a) "
        "& ((c S a) -> Y c) & (X a | F b)")


@pytest.mark.slow  # a third of the fast loop's time
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", [WIDE, f"Y ({WIDE})", f"({WIDE}) S c", f"!({WIDE}) & ({WIDE.replace('a', 'c')})"])
def test_boolean_nodes_over_many_leaves_get_a_layer_of_their_own(text, mode, monkeypatch):
    phi = parse(text)
    compiled = compile_for(phi, "a,b,c", mode)
    layout = plan(phi, mode)
    with monkeypatch.context() as patch:
        patch.setattr(layout_module, "MAX_LEAVES", 10**6)  # one truth table whatever its size
        one_table = plan(phi, mode).n_layers
    # a block for the wide conjunction, except where soft-unbounded F/G already leave its parts a block earlier
    assert compiled.model.config.n_layers == one_table + 1 or (mode == "soft-unbounded" and
                                                              compiled.model.config.n_layers == one_table)
    assert max(len(leaves(node, layout)) for block in layout.boolean for node in block) <= MAX_LEAVES
    check_agrees(compiled, phi, Alphabet.from_text("a,b,c"), lengths=range(1, 9), long_words=4, long_length=60)
    words = np.random.default_rng(1).integers(0, 3, size=(2, LONG))
    predictions = evaluate(compiled, words).predictions
    np.testing.assert_array_equal(predictions, label_positions(phi, words, Alphabet.from_text("a,b,c")))


# 12 temporal leaves in p, one in q: p and q fit one truth table each, the target indicator q | !p does not
TWELVE = "(Y a | O a | H a | X a | F a | G a | Y b | O b | H b | X b | F b | G b)"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", [f"{TWELVE} S Y c", f"{TWELVE} U X c"])
def test_since_and_until_wait_for_a_target_indicator_over_many_leaves(text, mode):
    phi = parse(text)
    compiled = compile_for(phi, "a,b,c", mode)
    layout = plan(phi, mode)
    helper = aux_score(phi)
    if mode != "soft-unbounded":  # there F/G of p take two layers, which leave p's leaves a block earlier
        assert layout.depth[helper] == max(layout.depth[phi.left], layout.depth[phi.right]) + 1  # a layer of its own
    assert layout.depth[phi] == layout.depth[helper] + 1  # the heads of S/U run after the MLP that writes it
    check_agrees(compiled, phi, Alphabet.from_text("a,b,c"), lengths=range(1, 7), long_words=4, long_length=60)


def test_leaves_stop_at_boolean_nodes_of_earlier_blocks():
    phi = parse(f"Y ({WIDE})")
    layout = plan(phi, "hard")
    chain = phi.arg  # the wide conjunction, depth 2 (its own layer); Y of it is depth 3
    assert layout.depth[chain] == 2 and layout.depth[phi] == 3
    assert leaves(chain, layout) == [chain.left.left, chain.left.right, chain.right]  # children of block 1


def test_periodic_features():
    """(-1)^i and cos/sin(2 pi i/m), the values the residue heads read."""
    from softhard.models.positional import theory_features

    names = ["(-1)^i", "cos(2pi i/3)", "sin(2pi i/3)", "cos(2pi i/16)"]
    T = 3 * 16 * 4
    values = theory_features(names, T, None, dtype=torch.float64)[0].numpy()  # (T, 4)
    i = np.arange(T)
    expected = np.stack([(-1.0) ** i, np.cos(2 * np.pi * i / 3), np.sin(2 * np.pi * i / 3),
                         np.cos(2 * np.pi * i / 16)], axis=1)
    np.testing.assert_allclose(values, expected, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# formulas deeper than Python's recursion limit: the compiler's traversals are iterative

DEEP = 10_000


def nested(depth: int, wrap, inner=Symbol("a")):
    """``wrap`` applied ``depth`` times to ``inner``."""
    for _ in range(depth):
        inner = wrap(inner)
    return inner


def test_layer_depth_of_a_formula_nested_10000_deep():
    """Y Y ... Y a needs one layer per Y; Y !Y ! ... a too (the ! ride in the MLPs of the Y's blocks)."""
    for phi, layers in [(nested(DEEP, lambda f: Unary("Y", f)), DEEP),
                        (nested(DEEP // 2, lambda f: Unary("Y", Unary("!", f))), DEEP // 2)]:
        memo: dict = {}
        assert layout_module.layer_depth(phi, memo, "hard", set(phi.walk())) == layers
        assert memo[Symbol("a")] == 0


def test_leaves_and_truth_value_of_a_boolean_chain_10000_deep():
    """!!...!(Y a & Y b) (even count): leaves Y a, Y b in reading order; the value is their conjunction."""
    y_a, y_b = Unary("Y", Symbol("a")), Unary("Y", Symbol("b"))
    phi = nested(DEEP, lambda f: Unary("!", f), Binary("&", y_a, y_b))
    depth = {node: 1 for node in phi.walk() if not isinstance(node, Symbol)}  # all in block 1, as plan puts them
    assert layout_module.boolean_leaves(phi, depth.__contains__, depth, 1) == [y_a, y_b]
    for a, b in itertools.product((False, True), repeat=2):
        assert layout_module.boolean_value(phi, {y_a: a, y_b: b}) == (a and b)
        assert layout_module.boolean_value(Unary("!", phi), {y_a: a, y_b: b}) == (not (a and b))


def test_linear_form_of_a_sum_10000_deep():
    """#a + #a + ... - #b: the compiler's linear form of a left-nested sum, and of a comparison with it."""
    from softhard.models.compiler.operators import linear_term

    count_a, count_b = Count(Symbol("a")), Count(Symbol("b"))
    total = nested(DEEP, lambda t: Arithmetic("+", t, count_a), Integer(3))
    assert linear_term(total) == ({count_a: DEEP}, 3)
    cancelled = nested(DEEP, lambda t: Arithmetic("-", Arithmetic("+", t, count_a), count_a), Integer(0))
    assert linear_term(Compare("<", cancelled, count_b)) == ({count_b: -1}, 0)  # a's coefficient 0 is dropped


def test_a_formula_deeper_than_the_recursion_limit_compiles_exactly():
    """b | Y !(b | Y !(... a)), nested three nodes per layer deeper than Python's recursion limit."""
    import sys

    phi = nested(sys.getrecursionlimit() // 3 + 30, lambda f: Binary("|", Symbol("b"), Unary("Y", Unary("!", f))))
    compiled = compile_formula(phi, "a,b", mode="hard")
    assert compiled.model.config.n_layers == temporal_depth(phi)
    ids = all_words(2, 6)  # a past formula: every prefix up to length 6 too
    np.testing.assert_array_equal(compiled.predict(ids), label_positions(phi, ids, compiled.alphabet))


@pytest.mark.parametrize("text", ["Y " * DEEP + "a", "!" * DEEP + "a", "(a S " * DEEP + "b" + ")" * DEEP],
                         ids=["Y", "!", "S"])
def test_a_formula_nested_10000_deep_is_refused_in_one_line(text):
    with pytest.raises(NotImplementedError, match=f"above MAX_DIMENSIONS = {layout_module.MAX_DIMENSIONS}") as err:
        compile_formula(parse(text), "a,b", mode="hard")
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
