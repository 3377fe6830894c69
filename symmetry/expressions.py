"""The standard expressions of a facial-nerve visit (reference section 2).

Sir Charles Bell Society minimum set and the MEEI Facial Palsy Photo and Video
Standard Set, in clinic order. ``rest`` is the baseline of every movement.
"""

from __future__ import annotations

import enum

__all__ = ["Expression", "EXPRESSIONS", "REST"]


class Expression(str, enum.Enum):
    """Standard expression keys."""

    REST = "rest"  # face relaxed, eyes open
    BROW_RAISE = "brow_raise"  # frontalis
    EYE_CLOSURE_GENTLE = "eye_closure_gentle"  # orbicularis oculi; mouth movement = synkinesis
    EYE_CLOSURE_TIGHT = "eye_closure_tight"
    SMILE_CLOSED = "smile_closed"  # zygomaticus
    SMILE_OPEN = "smile_open"  # eye narrowing here = synkinesis
    PUCKER = "pucker"  # orbicularis oris
    LOWER_TEETH = "lower_teeth"  # "eee": depressor labii inferioris, oral competence
    SNARL = "snarl"  # levator labii superioris alaeque nasi

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


#: Expression keys in clinic order.
EXPRESSIONS: tuple[str, ...] = tuple(e.value for e in Expression)
REST: str = Expression.REST.value
