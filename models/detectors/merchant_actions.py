"""The shard's part of DISPUTE_UNANSWERED: merchant actions pass through to the global step.

Actions are few and answer alerts that only the global step sees whole (a SIGNED_DISPUTED is
made there), so the shard only drops repeated event ids and hands each action on, its
free-text note dropped (nothing downstream shows it), with the batch's watermark tick after
it: the global step never judges a deadline before an action read ahead of it.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from models.detectors import Detector
from models.events import MerchantAction
from models.settings import DAY_MS


class MerchantActionRelay(Detector):
    records: ClassVar[tuple[type, ...]] = (MerchantAction,)

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.keep_ms = thresholds.dispute_window_ms
        self.seen: dict[str, int] = {}   # action event id -> ts
        self.pruned_day: int | None = None

    def on_record(self, action: MerchantAction, out: list, settled: int | None = None) -> bool:
        if action.event_id in self.seen:
            return True
        self.seen[action.event_id] = action.ts
        out.append(msgspec.structs.replace(action, note=None))
        return False

    def on_watermark(self, watermark: int, out: list) -> None:
        day = watermark // DAY_MS
        if day != self.pruned_day:  # once a day: forget ids no repeat can still meet
            self.pruned_day = day
            horizon = watermark - self.keep_ms
            self.seen = {eid: ts for eid, ts in self.seen.items() if ts > horizon}
