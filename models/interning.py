"""Low-cardinality strings (carriers, hubs, cities, merchants) stored once, referenced by code."""

from __future__ import annotations


class StringTable:
    """Maps strings to small integer codes and back. Code 0 stands for "absent"."""

    __slots__ = ("_codes", "_strings")

    def __init__(self, strings: list[str | None] | None = None):
        self._strings: list[str | None] = strings or [None]
        self._codes = {s: i for i, s in enumerate(self._strings) if s is not None}

    def code(self, value: str | None) -> int:
        if value is None:
            return 0
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._strings)
            self._strings.append(value)
        return code

    def text(self, code: int) -> str | None:
        return self._strings[code]

    def __len__(self) -> int:
        return len(self._strings) - 1

    def __reduce__(self):
        return StringTable, (self._strings,)
