"""fsimpl's ``counted``: the generated wrapper (the method's own parameters) counts
each call once and passes positional, keyword and default arguments through
exactly as the method receives them; other signatures keep the generic wrapper."""

from __future__ import annotations

from collections import Counter

from fsimpl.state import counted

SENTINEL: list[int] = []


class Fake:
    def __init__(self) -> None:
        self._ops: Counter[str] = Counter()

    @counted
    def plain(self, a: int, b: int = 2, c: list[int] = SENTINEL) -> tuple[int, int, object]:
        return a, b, c

    @counted
    def starred(self, *args: int, key: int = 0) -> tuple[tuple[int, ...], int]:
        return args, key


def test_generated_wrapper_passes_arguments_and_counts() -> None:
    f = Fake()
    assert f.plain(1) == (1, 2, SENTINEL) and f.plain(1)[2] is SENTINEL
    assert f.plain(1, 5) == (1, 5, SENTINEL)
    assert f.plain(a=3, c=[7]) == (3, 2, [7])
    assert f.plain(4, c=[1], b=0) == (4, 0, [1])
    assert f._ops["plain"] == 5  # the first line calls it twice
    assert Fake.plain.__name__ == "plain" and Fake.plain.__wrapped__ is not None
    assert Fake.plain.__code__.co_argcount == 4  # self, a, b, c: not *args


def test_other_signatures_keep_the_generic_wrapper() -> None:
    f = Fake()
    assert f.starred(1, 2, key=3) == ((1, 2), 3)
    assert f._ops["starred"] == 1
