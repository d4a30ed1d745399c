"""FEED_SILENT: a carrier's feed goes quiet, and what its parcels' deadlines do meanwhile.

A carrier whose feed goes dark for days, then arrives as a backfill, looks to every
per-parcel rule like thousands of parcels that stopped. The shards cannot tell (each sees
a slice of the carrier's scans), so the global step watches each carrier's scans as the
shards report them (`CarrierScans`: scans per minute of `ts`, the largest `ts`, the late
ones) and judges what the shards decided about that carrier's parcels (`ParcelVerdict`s,
delay onsets) before they go out:

- silent: no scan of the carrier with a `ts` in the trailing `feed_silence_minutes` (120)
  of event time, while its scans in the same minutes of each of the 7 days before average
  at least `feed_min_expected_scans` (50). One FEED_SILENT (operations only) per outage,
  `event_ts` = its largest scan ts + 120 min.
- while silent, and until the watermark is `feed_resume_grace_minutes` (60) past where it
  stood when a scan of the carrier was read again, its parcels' NO_MOVEMENT firings and
  delay onsets are held. A backfilled scan that shows the parcel moved before its deadline
  resolves (or ends) one, and both are dropped. What is still held then goes out, firings marked
  `after_feed_silence`, with their own event times; the FEED_SILENT resolves then, under
  its id, with `event_ts` = when the feed came back and the late scans read since.
"""

from __future__ import annotations

import msgspec

from models.detection import Detection
from models.messages import CarrierScans, DelayEnd, DelayOnset
from models.settings import DAY_MS, MINUTE_MS, Thresholds

FEED_SILENT = "FEED_SILENT"
HISTORY_DAYS = 7                       # the usual rate: the same minutes of the days before
KEPT_MS = (HISTORY_DAYS + 1) * DAY_MS  # minutes older than this behind the watermark go
# What a silent feed holds: per-parcel deadlines.
HELD_TYPES = frozenset({"NO_MOVEMENT", "DWELL_ANOMALY", "PICKUP_OVERDUE", "PROMISE_MISSED"})
MAX_CARRIERS = 256
MAX_SPELLS_AT_THE_END = 64  # quiet spells judged at once when the input ends


class Feed:
    """One carrier's feed: its scans per minute of `ts` (how many, the first and the last),
    from a day past the history behind the watermark to as far ahead as it was read, and
    its outage.

    A minute is one packed int (`packed_minute`): about 110 bytes a minute in the dict,
    1.3 MB a carrier for 8 days of minutes."""

    __slots__ = ("backfilled", "checked_to", "expected", "held", "held_onsets", "in_flight",
                 "last_scan", "minutes", "pruned_day", "release_at", "resumed_at",
                 "silent_since")

    def __init__(self) -> None:
        self.minutes: dict[int, int] = {}
        self.pruned_day = 0
        self.checked_to: int | None = None      # silences beginning up to here are judged
        self.silent_since: int | None = None    # the open FEED_SILENT's event_ts
        self.last_scan = 0                      # the last scan before it
        self.expected = 0.0
        self.resumed_at: int | None = None      # watermark when a scan was read again
        self.release_at: int | None = None      # when what it holds goes out (+ the grace)
        self.backfilled = 0                     # late scans read since
        self.held: dict[tuple[str, str], Detection] = {}  # (type, subject) -> held FIRING
        self.held_onsets: dict[str, DelayOnset] = {}    # waybill -> held delay onset
        self.in_flight: dict[int, int] = {}     # shard -> its parcels on their way, last told

    def count(self, minutes: dict[int, int]) -> None:
        """Adds a batch's minutes, packed as these are (`packed_minute`)."""
        known_minutes = self.minutes
        for minute, packed in minutes.items():
            known = known_minutes.get(minute)
            if known is not None:
                first, last = packed >> 16 & 0xFFFF, packed & 0xFFFF
                known_first, known_last = known >> 16 & 0xFFFF, known & 0xFFFF
                packed = ((packed >> 32) + (known >> 32)) << 32 | (
                    first if first < known_first else known_first) << 16 | (
                    last if last > known_last else known_last)
            known_minutes[minute] = packed

    def scans_in(self, minute: int) -> int:
        return self.minutes.get(minute, 0) >> 32

    def first_in(self, minute: int) -> int:
        return minute * MINUTE_MS + (self.minutes[minute] >> 16 & 0xFFFF)

    def last_in(self, minute: int) -> int:
        return minute * MINUTE_MS + (self.minutes[minute] & 0xFFFF)

    def prune(self, watermark: int) -> None:
        """Once a day of event time, forget minutes no question can reach any more."""
        day = watermark // DAY_MS
        if day > self.pruned_day:
            self.pruned_day = day
            oldest = (watermark - KEPT_MS) // MINUTE_MS
            for minute in [m for m in self.minutes if m < oldest]:
                del self.minutes[minute]

    def expected_before(self, at: int, span_minutes: int) -> float:
        """Average scans in the `span_minutes` before `at`, on each of the 7 days before."""
        last = (at - 1) // MINUTE_MS
        scans = self.scans_in
        return sum(scans(minute) for day in range(1, HISTORY_DAYS + 1)
                   for minute in range(last - day * 1440 - span_minutes + 1,
                                       last - day * 1440 + 1)) / HISTORY_DAYS

    def quiet_spells(self, after: int | None, until: int, silence: int
                     ) -> list[tuple[int, int | None]]:
        """(last scan, next scan read or None) of every spell of more than `silence`
        without a scan read, in ts order, falling silent after `after` and by `until`."""
        if not self.minutes:
            return []
        low = min(self.minutes) if after is None else (after - silence) // MINUTE_MS
        # A scan after `until` cannot end a spell that fell silent by then: stop there.
        occupied = [m for m in range(low, until // MINUTE_MS + 1) if m in self.minutes]
        if not occupied:
            return []
        spells = []
        # Scans in minutes k apart are less than k + 1 minutes apart: no silence between.
        closest = -(-silence // MINUTE_MS) - 1
        for this, following in zip(occupied, [*occupied[1:], None], strict=True):
            if following is not None and following - this < closest:
                continue
            last = self.last_in(this)
            onset = last + silence
            if onset > until or (after is not None and onset <= after):
                continue
            if following is None or self.first_in(following) > onset:
                spells.append((last, None if following is None else self.first_in(following)))
        if spells and spells[-1][1] is None:
            spells[-1] = (spells[-1][0], self.next_scan_after(spells[-1][0]))
        return spells

    def next_scan_after(self, ts: int) -> int | None:
        """The first scan read with a ts after `ts` (a batch may be read days ahead of event
        time), or None."""
        later = [m for m in self.minutes if m > ts // MINUTE_MS]
        return self.first_in(min(later)) if later else None

    @property
    def holding(self) -> bool:
        return self.silent_since is not None


class CarrierFeeds:
    def __init__(self, thresholds: Thresholds):
        self.silence = round(thresholds.feed_silence_minutes * MINUTE_MS)
        self.silence_minutes = round(thresholds.feed_silence_minutes)
        self.min_expected = thresholds.feed_min_expected_scans
        self.grace = round(thresholds.feed_resume_grace_minutes * MINUTE_MS)
        self.feeds: dict[str, Feed] = {}
        self.releases: list[int] = []

    # -- what the shards read --------------------------------------------------------------

    def take_releases(self) -> list[int]:
        """The times at which feeds that came back let out what they held (when they came
        back + the grace), since the last call: for the caller to wait for."""
        releases, self.releases = self.releases, []
        return releases

    def on_scans(self, item: CarrierScans) -> None:
        """Counts the scans; a silent feed read again is back."""
        for carrier, minutes in item.minutes.items():
            feed = self._feed(carrier)
            if feed is not None:
                feed.count(minutes)
        for carrier, parcels in (item.in_flight or {}).items():
            feed = self.feeds.get(carrier)
            if feed is not None:
                feed.in_flight[item.shard] = parcels
        for carrier in item.latest:
            feed = self.feeds.get(carrier)
            if feed is None or not feed.holding:
                continue
            late = item.late.get(carrier, 0)
            feed.backfilled += late
            # A batch is read as one: the grace runs from where it left the watermark, and
            # each batch more of this outage's backfill (another partition's, a coarser
            # one) extends it; late scans from before the outage (another backfill) do not.
            release_at = max(item.settled_at or item.read_at, item.read_at) + self.grace
            if feed.resumed_at is None:
                feed.resumed_at = item.read_at
            elif not (late and (feed.release_at is None or release_at > feed.release_at)
                      and self._fills(item, carrier, feed)):
                continue
            feed.release_at = release_at
            self.releases.append(release_at)

    @staticmethod
    def _fills(item: CarrierScans, carrier: str, feed: Feed) -> bool:
        """The batch read scans of `carrier` from after its outage began."""
        return any(minute * MINUTE_MS + (packed & 0xFFFF) > feed.last_scan
                   for minute, packed in item.minutes.get(carrier, {}).items())

    def _feed(self, carrier: str) -> Feed | None:
        feed = self.feeds.get(carrier)
        if feed is None and len(self.feeds) < MAX_CARRIERS:  # carrier codes are few
            feed = self.feeds[carrier] = Feed()
        return feed

    # -- silence -----------------------------------------------------------------------------

    def check(self, at: int, out: list, carrier: str | None = None) -> None:
        """Opens the outage of every carrier (or of `carrier`) that fell silent by `at`:
        the quiet spells in what has been read, each judged once, so the onset is exact
        however often this is asked (on the clusters' cadence, and before judging a parcel's
        alert of that carrier)."""
        feeds = self.feeds.items() if carrier is None else [(carrier, self.feeds.get(carrier))]
        for name, feed in feeds:
            if feed is None or feed.holding or (feed.checked_to or at - 1) >= at:
                continue
            feed.prune(at if feed.checked_to is None else feed.checked_to)  # what is judged
            for last_scan, following in feed.quiet_spells(feed.checked_to, at, self.silence):
                if feed.resumed_at is not None and last_scan < feed.resumed_at:
                    continue  # inside the outage before: its backfill, not a new one
                onset = last_scan + self.silence
                expected = feed.expected_before(onset, self.silence_minutes)
                if expected >= self.min_expected:
                    feed.silent_since, feed.expected, feed.last_scan = onset, expected, last_scan
                    feed.resumed_at, feed.backfilled = following, 0
                    feed.release_at = None
                    out.append(self._detection(name, feed, "FIRING", onset))
                    if following is not None:  # found in what was read: it came back then
                        feed.release_at = following + self.grace
                        self.releases.append(feed.release_at)
                    # Later spells are judged once this outage is over, from here on.
                    feed.checked_to = onset
                    break
            else:
                feed.checked_to = at

    # -- what the shards decided about a carrier's parcels ---------------------------------

    def verdict(self, detection: Detection, at: int, out: list) -> None:
        """A per-parcel alert the shards raised, judged at event time `at`."""
        carrier = detection.carrier
        if detection.type not in HELD_TYPES or carrier is None:
            out.append(detection)
            return
        self.check(at, out, carrier)
        feed = self.feeds.get(carrier)
        if feed is None or not feed.holding:
            out.append(detection)
        elif detection.status == "FIRING":
            feed.held[detection.type, detection.subject] = detection
        else:
            fired = feed.held.pop((detection.type, detection.subject), None)
            if fired is None:  # it fired before the outage: its RESOLVED goes out
                out.append(detection)
            elif detection.event_ts >= fired.event_ts:  # the parcel did sit that long
                out += [self._after_silence(fired), detection]
            # else a scan from before its deadline, read late: it never stalled

    def onset(self, onset: DelayOnset, out: list) -> bool:
        """True if the delay onset is held (its carrier's feed is silent)."""
        if onset.carrier is None:
            return False
        self.check(onset.onset_ts, out, onset.carrier)
        feed = self.feeds.get(onset.carrier)
        if feed is None or not feed.holding:
            return False
        feed.held_onsets[onset.waybill] = onset
        return True

    def end(self, end: DelayEnd) -> bool:
        """True if the delay end closes a held onset (both are dropped)."""
        for feed in self.feeds.values():
            held = feed.held_onsets.get(end.waybill)
            if held is not None and held.onset_ts == end.onset_ts:
                del feed.held_onsets[end.waybill]
                return True
        return False

    def release(self, at: int, out: list) -> list[DelayOnset]:
        """Feeds back for the grace by `at`: their held firings go out, marked, and their
        outage resolves; returns their held delay onsets, in onset order."""
        onsets: list[DelayOnset] = []
        for name, feed in self.feeds.items():
            if not feed.holding or feed.release_at is None or feed.release_at > at:
                continue
            self._release(name, feed, out, onsets)
        return sorted(onsets, key=lambda o: (o.onset_ts, o.waybill))

    def finish(self, at: int, out: list) -> list[DelayOnset]:
        """Every input is finished: what feeds hold goes out, then the silences they fell
        into after coming back and every other by the end are judged; returns the held
        delay onsets."""
        onsets = self.release_all(out)
        for _ in range(MAX_SPELLS_AT_THE_END):  # one a pass: each came back before the next
            found = len(out)
            self.check(at, out)
            onsets += self.release_all(out)
            if len(out) == found:
                break
        return onsets

    def release_all(self, out: list) -> list[DelayOnset]:
        """Every input is finished: nothing more can resolve what is held, and a feed read
        again is back."""
        onsets: list[DelayOnset] = []
        for name, feed in self.feeds.items():
            if feed.holding:
                self._release(name, feed, out, onsets, resolve=feed.resumed_at is not None)
        return sorted(onsets, key=lambda o: (o.onset_ts, o.waybill))

    def _release(self, name: str, feed: Feed, out: list, onsets: list,
                 resolve: bool = True) -> None:
        held = sorted(feed.held.values(), key=lambda d: (d.event_ts, d.subject))
        out += map(self._after_silence, held)
        onsets += feed.held_onsets.values()
        feed.held, feed.held_onsets = {}, {}
        if resolve:
            out.append(self._detection(name, feed, "RESOLVED", feed.resumed_at))
            feed.silent_since = None

    @staticmethod
    def _after_silence(fired: Detection) -> Detection:
        return msgspec.structs.replace(
            fired, details={**fired.details, "after_feed_silence": True})

    def _detection(self, carrier: str, feed: Feed, status: str, event_ts: int) -> Detection:
        details = {
            "carrier": carrier,
            "last_scan_ts": feed.last_scan,
            "expected_scans": round(feed.expected, 1),
            "silent_minutes": round((event_ts - feed.last_scan) / MINUTE_MS),
            "parcels_in_flight": sum(feed.in_flight.values()),
        }
        if status == "RESOLVED":
            details["backfilled"] = feed.backfilled
        return Detection(type=FEED_SILENT, status=status, severity="CRITICAL",
                         subject=f"feed:{carrier}", onset_ts=feed.silent_since,
                         event_ts=event_ts, carrier=carrier, details=details)

