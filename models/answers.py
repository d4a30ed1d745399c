"""DISPUTE_UNANSWERED: the platform steps in after `merchant_response_hours` of silence.

A FIRING alert of a type in `sla_alert_types` (SIGNED_DISPUTED) opens a wait of 24 h of
event time from its `event_ts`. The global step applies merchant actions at their own `ts`,
in event-time order with everything else, so when the watermark passes the end of a wait,
every action up to it has been read: an action at or before it answers in time, and nothing
fires; else DISPUTE_UNANSWERED fires at the wait's end and resolves (same id) at the first
action after it. An action names its alert by `alert_id`, or by `waybill` (+ `alert_type`:
the waybill's latest alert under an SLA). An action applied before its alert was seen (the
claim reached the merchant first; a tie) is kept for `dispute_window_days` and answers the
alert when it opens, if its `ts` is at or after the alert's `event_ts`.
"""

from __future__ import annotations

from typing import NamedTuple

from models.detection import Detection
from models.events import MerchantAction
from models.settings import HOUR_MS, Thresholds

DISPUTE_UNANSWERED = "DISPUTE_UNANSWERED"
# On a tie, an action at the very end of a wait is applied before the wait is judged.
AFTER_TIES = 1 << 62


class WaitEnds(NamedTuple):
    """The end of an alert's wait for its merchant, judged when the watermark passes
    `judge_at`: the end itself, or, for an alert found after the reading had passed its end
    (a claim read late), `allowed_lateness` past where the reading stood, so that answers
    read with it land first."""

    judge_at: int
    alert_id: str
    ends: int


class MerchantResponse(NamedTuple):
    """A merchant's first answer to an alert under an SLA: for the response-time metric."""

    seconds: float


class _Wait:
    __slots__ = ("alert", "answered_ts", "fired", "kept_until")

    def __init__(self, alert: Detection, kept_until: int):
        self.alert = alert
        self.kept_until = kept_until          # forgotten once the watermark passes this
        self.answered_ts: int | None = None   # the first answering action's ts
        self.fired = False


class MerchantAnswers:
    def __init__(self, thresholds: Thresholds):
        self.types = frozenset(thresholds.sla_alert_types)
        self.wait_ms = thresholds.merchant_response_ms
        self.lateness = thresholds.lateness_ms
        self.keep_ms = thresholds.dispute_window_ms
        self.waits: dict[str, _Wait] = {}              # alert id -> its wait
        self.latest: dict[str, str] = {}               # waybill -> its latest SLA alert's id
        self.early: dict[str, list[MerchantAction]] = {}  # alert id or waybill -> actions

    def opened(self, alert: Detection, reading: int | None) -> WaitEnds | None:
        """A detection the step made: if it is a FIRING under an SLA, its wait begins.
        `reading`: the largest ts the inputs have been read to (less the lateness)."""
        if alert.status != "FIRING" or alert.type not in self.types:
            return None
        alert_id = alert.alert_id
        if alert_id in self.waits:  # a re-emission keeps its wait
            return None
        ends = alert.event_ts + self.wait_ms
        judge_at = reading + self.lateness if reading is not None and ends <= reading else ends
        wait = self.waits[alert_id] = _Wait(alert, judge_at + self.keep_ms)
        if alert.waybill is not None:
            self.latest[alert.waybill] = alert_id
        kept = [*self.early.pop(alert_id, ()), *self._early_of_waybill(alert)]
        answers = [action.ts for action in kept if action.ts >= alert.event_ts]
        if answers:
            wait.answered_ts = min(answers)
        return WaitEnds(judge_at, alert_id, ends)

    def _early_of_waybill(self, alert: Detection) -> list[MerchantAction]:
        kept = self.early.get(alert.waybill or "")
        if not kept:
            return []
        taken = [a for a in kept if a.alert_type in (None, alert.type)
                 and a.ts >= alert.event_ts]
        rest = [a for a in kept if a not in taken]
        if rest:
            self.early[alert.waybill] = rest
        else:
            del self.early[alert.waybill]
        return taken

    def on_action(self, action: MerchantAction, out: list) -> None:
        """An action, applied at its ts."""
        if action.alert_type is not None and action.alert_type not in self.types:
            return  # about an alert without an SLA
        alert_id = action.alert_id or self.latest.get(action.waybill or "")
        wait = None if alert_id is None else self.waits.get(alert_id)
        if wait is None or action.ts < wait.alert.event_ts:
            key = action.alert_id or action.waybill
            if key is not None:
                self.early.setdefault(key, []).append(action)
            return
        if wait.answered_ts is not None:
            return  # answered before: this one changes nothing
        wait.answered_ts = action.ts
        out.append(MerchantResponse((action.ts - wait.alert.event_ts) / 1000))
        if wait.fired:
            out.append(self._detection(wait, "RESOLVED", action.ts))
            del self.waits[alert_id]

    def on_wait_end(self, item: WaitEnds, out: list) -> None:
        wait = self.waits.get(item.alert_id)
        if wait is None or wait.fired:
            return
        ends = item.ends
        if wait.answered_ts is not None and wait.answered_ts <= ends:
            del self.waits[item.alert_id]  # answered in time
            return
        wait.fired = True
        out.append(self._detection(wait, "FIRING", ends))
        if wait.answered_ts is not None:  # answered late, and that answer was read already
            out.append(self._detection(wait, "RESOLVED", wait.answered_ts))
            del self.waits[item.alert_id]

    def forget_before(self, watermark: int) -> None:
        """(Daily) waits judged more than `dispute_window_days` ago, and kept actions older
        than that, go: nothing can answer them any more."""
        for alert_id in [i for i, w in self.waits.items() if w.kept_until < watermark]:
            del self.waits[alert_id]
        self.latest = {w: i for w, i in self.latest.items() if i in self.waits}
        horizon = watermark - self.keep_ms
        early = {key: [a for a in actions if a.ts >= horizon]
                 for key, actions in self.early.items()}
        self.early = {key: actions for key, actions in early.items() if actions}

    def _detection(self, wait: _Wait, status: str, event_ts: int) -> Detection:
        alert = wait.alert
        return Detection(
            type=DISPUTE_UNANSWERED, status=status, severity="CRITICAL",
            subject=alert.subject, onset_ts=alert.event_ts + self.wait_ms, event_ts=event_ts,
            carrier=alert.carrier, merchant_id=alert.merchant_id, order_id=alert.order_id,
            waybill=alert.waybill,
            details={"sla_alert_id": alert.alert_id, "sla_alert_type": alert.type,
                     "hours_waited": round((event_ts - alert.event_ts) / HOUR_MS, 2)})
