"""Waybills whose state was freed, remembered as 64-bit hashes for a while.

A finished parcel's row is freed once the dispute window (15 days) has passed, a stalled
one once it is stale; a late or repeated scan that arrives after that must not start
tracking the parcel again (it would look stalled three days later). Keeping the whole row
for weeks costs hundreds of bytes a parcel; a hash costs 16 (hash and expiry), in one
sorted numpy array probed with a binary search.
"""

from __future__ import annotations

import hashlib

import numpy as np


def waybill_hash(waybill: str) -> int:
    return int.from_bytes(hashlib.blake2b(waybill.encode(), digest_size=8).digest(), "little")


class ForgottenWaybills:
    def __init__(self, keep_ms: int, merge_every_ms: int = 3_600_000):
        self.keep_ms = keep_ms
        self.merge_every_ms = merge_every_ms
        self.recent: dict[int, int] = {}             # hash -> forget-until, not merged yet
        self.hashes = np.empty(0, dtype=np.uint64)   # sorted
        self.until = np.empty(0, dtype=np.int64)     # forget-until of each hash
        self.merged_at: int | None = None

    def add(self, waybill: str, now: int) -> None:
        self.recent[waybill_hash(waybill)] = now + self.keep_ms

    def __contains__(self, waybill: str) -> bool:
        if not self.recent and not len(self.hashes):
            return False
        key = waybill_hash(waybill)
        if key in self.recent:
            return True
        if not len(self.hashes):
            return False
        at = int(np.searchsorted(self.hashes, np.uint64(key)))
        return at < len(self.hashes) and int(self.hashes[at]) == key

    def __len__(self) -> int:
        return len(self.recent) + len(self.hashes)

    def expire(self, watermark: int) -> None:
        """Fold recent hashes into the sorted array and drop expired ones, hourly."""
        if self.merged_at is not None and watermark < self.merged_at + self.merge_every_ms:
            return
        self.merged_at = watermark
        keep = self.until > watermark
        hashes, until = self.hashes[keep], self.until[keep]
        if self.recent:
            new_hashes = np.fromiter(self.recent.keys(), dtype=np.uint64, count=len(self.recent))
            new_until = np.fromiter(self.recent.values(), dtype=np.int64, count=len(self.recent))
            hashes = np.concatenate([hashes, new_hashes])
            until = np.concatenate([until, new_until])
            self.recent = {}
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.until = hashes[order], until[order]
