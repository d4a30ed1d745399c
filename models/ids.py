"""Every deterministic id the job writes, in one place.

The same detection on the same input gets the same id on every rerun, restart and process, so
consumers can upsert and receivers can drop repeats. Ids are short blake2b digests of the parts
that make a detection what it is, never of when or where it was computed.
"""

from __future__ import annotations

import hashlib


def stable_id(*parts: object, digest_size: int = 12) -> str:
    """Hex digest of the parts joined by "|" (None as empty): 24 characters by default."""
    text = "|".join("" if p is None else str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=digest_size).hexdigest()


def alert_id(alert_type: str, subject: str, onset_ts: int) -> str:
    """One id per detection: its FIRING, re-emissions and RESOLVED share it."""
    return stable_id(alert_type, subject, onset_ts)


def notification_id(alert_id: str, merchant_id: str, waybill: str | None = None) -> str:
    """One per (alert, merchant), or per (alert, merchant, parcel) for an alert about many
    parcels (a delay cluster notifies each affected parcel's merchant)."""
    if waybill is None:
        return stable_id(alert_id, merchant_id)
    return stable_id(alert_id, merchant_id, waybill)


def cluster_id(founder_onset_ts: int, founder_waybill: str, fired_ts: int) -> str:
    return "dc-" + stable_id(founder_onset_ts, founder_waybill, fired_ts, digest_size=8)


def digest_id(notification_ids: list[str]) -> str:
    """The webhook id of a digest: the same notifications give the same id on a retry."""
    return "digest-" + stable_id(*sorted(notification_ids))
