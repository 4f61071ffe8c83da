"""Heads by name (``L<layer>H<head>``) and per-head attention kinds given as text (``L0H0=rightmost,...``)."""

from __future__ import annotations

from softhard.models.transformer import KINDS


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_kinds(text: str, option: str = "--kinds") -> dict[tuple[int, int], str]:
    """``L0H0=rightmost,L1H2=average`` -> {(0, 0): "rightmost", (1, 2): "average"}; ValueError names a bad item."""
    kinds = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, kind = item.partition("=")
        layer, _, head = name.upper().removeprefix("L").partition("H")
        if not (layer.isdigit() and head.isdigit()) or kind not in KINDS:
            raise ValueError(f"{option}: {item!r} is not L<layer>H<head>=<kind> with kind one of {', '.join(KINDS)}")
        kinds[int(layer), int(head)] = kind
    return kinds


def with_kinds(kinds: list[list[str]], explicit: dict, option: str = "--kinds") -> list[list[str]]:
    """``kinds`` (per layer and head) with the ``explicit`` ones set; ValueError names a head the model lacks."""
    kinds = [list(row) for row in kinds]
    for (layer, head), kind in explicit.items():
        if not (layer < len(kinds) and head < len(kinds[layer])):
            raise ValueError(f"{option}: the model has no head {head_name(layer, head)} "
                             f"({len(kinds)} layers of {len(kinds[0])} heads)")
        kinds[layer][head] = kind
    return kinds
