"""Named languages: formula, alphabet, one-line description and class.

Classes:
- ``local``: only Y/X (the truth at the last position looks a bounded distance back);
- ``star-free``: needs O/H/S (or future operators under them): tie-breaking attention;
- ``counting``: compares counts (non-regular, C-RASP style; uniform attention);
- ``non-star-free``: modular counting controls (parity and friends), outside what
  softmax attention is known to simulate.

``regex`` (when given) describes the same non-empty words; the tests check that the
compiled DFA equals the regular expression's.
"""

from __future__ import annotations

from dataclasses import dataclass

from softhard.data.language import Language

CLASSES = ("local", "star-free", "counting", "non-star-free")


@dataclass(frozen=True)
class RegisteredLanguage:
    name: str
    formula: str
    alphabet: str
    description: str
    kind: str
    regex: str | None = None

    def language(self) -> Language:
        return Language.from_text(self.formula, self.alphabet, self.name)


def _never_again(pattern: str) -> str:
    """``pattern`` holds at no position: now (the last position) or strictly before."""
    return f"!{pattern} & H !{pattern}"


_AA, _BB = "(a & Y a)", "(b & Y b)"
_OPEN_AA = f"(!{_BB} S {_AA})"  # an 'aa' since which no 'bb' occurred
_DEPTH2_STEP = f"(({_AA} -> !{_OPEN_AA}) & ({_BB} -> {_OPEN_AA}))"
_FIRST_A = "O(a & H false)"  # the first symbol (strictly before the last) is a

_LANGUAGES = [
    # local: Y/X only
    RegisteredLanguage("last_a", "a", "a,b", "the last symbol is a", "local", "(a|b)*a"),
    RegisteredLanguage("penultimate_a", "Y a", "a,b", "the second-to-last symbol is a", "local", "(a|b)*a(a|b)"),
    RegisteredLanguage("ends_ab", "Y a & b", "a,b,c", "the word ends with ab", "local", "(a|b|c)*ab"),
    RegisteredLanguage("ends_abc", "Y Y a & Y b & c", "a,b,c", "the word ends with abc", "local", "(a|b|c)*abc"),
    RegisteredLanguage(
        "ends_double", "(a & Y a) | (b & Y b)", "a,b", "the last two symbols are equal", "local", "(a|b)*(aa|bb)"
    ),
    # star-free: since/until, tie-breaking attention
    RegisteredLanguage(
        "first_a", f"(a & H false) | {_FIRST_A}", "a,b", "the first symbol is a (leftmost attention)", "star-free", "a(a|b)*"
    ),
    RegisteredLanguage("tomita1", "a & H a", "a,b", "Tomita 1: a+", "star-free", "a+"),
    RegisteredLanguage(
        "tomita2", f"b & {_FIRST_A} & H(a <-> X b)", "a,b", "Tomita 2: (ab)+", "star-free", "(ab)+"
    ),
    RegisteredLanguage(
        "tomita4", _never_again("(a & Y a & Y Y a)"), "a,b", "Tomita 4: no aaa", "star-free", "(b|ab|aab)*(a|aa)?"
    ),
    RegisteredLanguage(
        "tomita7",
        _never_again("(b & O(a & O(b & O a)))"),
        "a,b",
        "Tomita 7: b*a*b*a* (no scattered subword abab; O nested 3 deep)",
        "star-free",
        "b*a*b*a*",
    ),
    RegisteredLanguage("a_star_b_star", _never_again("(a & O b)"), "a,b", "a*b*: no a after a b", "star-free", "a*b*"),
    RegisteredLanguage("no_aa", _never_again("(a & Y a)"), "a,b", "no two adjacent a's", "star-free", "(b|ab)*a?"),
    RegisteredLanguage(
        "dyck_depth1", f"b & {_FIRST_A} & H(a <-> X b)", "a,b", "D_1 of Bhattamishra et al.: (ab)+", "star-free", "(ab)+"
    ),
    RegisteredLanguage(
        "dyck_depth2",
        f"b & {_FIRST_A} & {_DEPTH2_STEP} & H {_DEPTH2_STEP} & ({_BB} | !{_OPEN_AA})",
        "a,b",
        "D_2 of Bhattamishra et al.: (a(ab)*b)+, as 'aa' and 'bb' alternating, starting with aa, ending at depth 0",
        "star-free",
        "(a(ab)*b)+",
    ),
    RegisteredLanguage(
        "since_ab",
        "a S b",
        "a,b,c",
        "a b occurred strictly before the last position, and only a's since (rightmost attention)",
        "star-free",
        "(a|b|c)*ba*(a|b|c)",
    ),
    RegisteredLanguage(
        "since_nested", "a S (b S c)", "a,b,c", "nested since, depth 2: a's since a point where b's ran since a c", "star-free"
    ),
    RegisteredLanguage(
        "since_left_nested",
        "(b S a) S c",
        "a,b,c",
        "left-nested since, depth 2: since a c, every position had (b since a)",
        "star-free",
    ),
    RegisteredLanguage(
        "request_response",
        "H(a -> F b)",
        "a,b,c",
        "every a before the last position is answered by a later b (past over future, depth 2)",
        "star-free",
    ),
    RegisteredLanguage(
        "once_until",
        "O(a & (b U c))",
        "a,b,c",
        "at some earlier a, b's ran until a c (past over until, depth 2)",
        "star-free",
    ),
    RegisteredLanguage(
        "since_history_future",
        "(a | b) S (c & H(a -> F b))",
        "a,b,c",
        "only a/b since the last c, and every a before that c was answered by a b (depth 3)",
        "star-free",
    ),
    # counting: non-regular, compares counts
    RegisteredLanguage("majority", "#a > #b", "a,b", "more a's than b's", "counting"),
    RegisteredLanguage("majority_abc", "#a > #b + #c", "a,b,c", "a's outnumber b's and c's together", "counting"),
    RegisteredLanguage("equal_count", "#a = #b", "a,b,c", "as many a's as b's", "counting"),
    RegisteredLanguage(
        "dyck1", "H(#a >= #b) & #a = #b", "a,b", "Dyck-1 (a opens, b closes) by counting", "counting"
    ),
    RegisteredLanguage(
        "dyck_depth3",
        "H(#a >= #b & #a - #b <= 3) & #a = #b",
        "a,b",
        "D_3 of Bhattamishra et al. (star-free as a language; written here with counts)",
        "counting",
    ),
    # non-star-free controls: modular counting
    RegisteredLanguage("parity", "#a % 2 = 0", "a,b", "an even number of a's", "non-star-free", "b*(ab*ab*)*"),
    RegisteredLanguage(
        "even_length",
        "a & H a & #a % 2 = 0",
        "a,b",
        "(aa)+: only a's, an even number of them (over {a,b}, so every even length has both classes)",
        "non-star-free",
        "(aa)+",
    ),
    RegisteredLanguage(
        "tomita5", "#a % 2 = 0 & #b % 2 = 0", "a,b", "Tomita 5: even numbers of a's and of b's", "non-star-free"
    ),
    RegisteredLanguage(
        "tomita6", "#a - #b % 3 = 0", "a,b", "Tomita 6: #a - #b divisible by 3", "non-star-free"
    ),
]

REGISTRY: dict[str, RegisteredLanguage] = {spec.name: spec for spec in _LANGUAGES}


def get(name: str) -> RegisteredLanguage:
    """The registered language ``name``; a clear error lists the names on a typo."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown language {name!r}; registered: {', '.join(REGISTRY)}") from None
