"""Per-parcel identifiers without a Python object per parcel.

A `str` costs about 64 bytes and a dict entry with its boxed row number about 70 more; with
millions of parcels in flight that was most of the state. Waybills live in the compiled
`WaybillSlots` (fixed-width slots and a hash index, `models/_waybills.pyx`); order ids, read
only to write records, in a `PackedStrings` column. Identifiers longer than a slot (the
schema allows 64 characters), or holding a NUL, live in a side dict, so nothing is ever cut
or confused.
"""

from __future__ import annotations

from models._waybills import WaybillSlots

WIDTH = 24            # bytes per identifier slot; longer ones go to the side dict


class PackedStrings:
    """One optional string per row in a fixed-width byte column."""

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self.data = bytearray()
        self.long: dict[int, str] = {}   # row -> a value that does not fit a slot

    def grow(self, rows: int) -> None:
        """Room for `rows` rows (new rows hold None)."""
        missing = rows * self.width - len(self.data)
        if missing > 0:
            self.data.extend(bytes(missing))

    def set(self, row: int, value: str | None) -> None:
        base = row * self.width
        self.long.pop(row, None)
        encoded = b"" if value is None else value.encode()
        if value is not None and not (0 < len(encoded) <= self.width and b"\0" not in encoded):
            self.long[row] = value
            encoded = b""
        self.data[base:base + self.width] = encoded.ljust(self.width, b"\0")

    def get(self, row: int) -> str | None:
        if row in self.long:
            return self.long[row]
        base = row * self.width
        value = bytes(self.data[base:base + self.width]).rstrip(b"\0")
        return value.decode() if value else None


__all__ = ["WIDTH", "PackedStrings", "WaybillSlots"]
