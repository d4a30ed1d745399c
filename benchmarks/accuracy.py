"""Precision, recall and detection delay of every detector against a ground truth, and
threshold sweeps, through the real dataflow (`replay`, or `run` on Kafka with `--kafka`).

    python -m benchmarks.accuracy --parcels 20000 --json benchmarks/results/accuracy.json \\
        --report benchmarks/results/accuracy --recommend recommended.toml

Generates one scenario, replays it with the default thresholds and once per point of each
sweep of the grid file (`benchmarks/sweeps.toml`, or `--sweeps FILE`), and scores each run.
With `--inputs DIR --truth FILE` the runs replay an analyst's own JSON Lines files instead,
scored against the labelled cases of a truth file (docs/accuracy.md). With `--kafka` the
scenario is produced once to the embedded broker and each run is `run --from-beginning
--exit-at-end` writing to output topics of its own; both paths are scored alike
(`benchmarks.scoring`):
- NO_MOVEMENT against the injected stalls: a stall is found when a FIRING names its parcel
  at or after the stall began; a parcel with a FIRING that was never stalled, or before its
  stall (an ordinary long leg), is a false alarm. Stalls too close to the end of input
  to be judged at that threshold are left out. Delay: the alert's `event_ts` minus the
  parcel's last scan before the stall.
- SIGNED_DISPUTED against the ground-truth alerts (waybill and `event_ts`); delay: alert
  minus dispute.
- ROUTE_DAMAGE_RATE against each route's true damage rate: a flagged route is right when
  its true rate is above `damage_rate_threshold` (the injected bad route, but also a small
  courier's busy lane at 1.2%), a false alarm otherwise; a route is missed when its true
  rate is above the threshold and it had at least the default `damage_min_deliveries` (50)
  deliveries, whatever the setting, but was never flagged. Delay: first FIRING minus the
  start. Settings are compared only within one threshold, which decides what counts.
- WEATHER_DELAY_CLUSTER against the injected storms: a cluster matches a storm in its city
  whose first FIRING falls between the storm's start and two days after its end; precision
  counts clusters, recall storms; delay: first FIRING minus the storm's start.
- PICKUP_OVERDUE, PROMISE_MISSED and DISPUTE_UNANSWERED exactly: every FIRING and every
  RESOLVED at the event time the contract's definition gives on the generated times.
- DWELL_ANOMALY two ways. Against its definition (the generator applies it with exact
  quantiles; silences within 5% of their threshold are left out as ambiguous): a silence is
  found when a FIRING names its parcel and last scan; delay: alert minus the truth's
  `event_ts` (the sketch's error). And for what a merchant gains (DWELL_ANOMALY vs stalls,
  any setting): against every silence of `no_movement_hours` or more, precision (firings on
  such silences over all firings), recall, the share of them it could warn of at all (legs
  with a norm), and the lead over NO_MOVEMENT.
Precision and recall carry 95% bootstrap intervals. The report (markdown, PNG plots) says
which setting to pick for which goal; `--recommend FILE` writes the picks as a `[thresholds]`
table that `parcelwatch --config FILE` loads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import msgspec
import tomli_w
from prometheus_client import CollectorRegistry

from alerts.metrics import Metrics
from benchmarks.machine import report
from benchmarks.merchant_side import MerchantConfig
from benchmarks.plots import pyplot, save
from benchmarks.scenario import (
    DEFAULT_BACKFILL,
    DEFAULT_MERCHANT,
    DEFAULT_OUTAGE,
    Backfill,
    Outage,
    Scenario,
    ScenarioConfig,
    Truth,
)
from benchmarks.scoring import (
    DETECTORS,
    DWELL,
    DWELL_VS_STALLS,
    FEED_SILENT,
    MERCHANT_SIDE,
    Context,
    context_of,
    score,
    score_against,
    truth_summary,
)
from benchmarks.sweep_grid import SWEEPS_FILE, Sweep, load_sweeps
from benchmarks.truth_file import load_truth, write_truth_file
from benchmarks.writers import INPUT_TOPICS, produce, progress_bar, write_files
from connectors.broker import EmbeddedBroker
from connectors.kafka import client_config, ensure_topics, read_topic
from flows.config import Settings, Topics, load_settings
from flows.runner import replay, run
from models.settings import ConfigError, Thresholds

__all__ = ["DETECTORS", "DWELL", "DWELL_VS_STALLS", "MERCHANT_SIDE", "measure",
           "measure_files", "recommend", "score", "write_recommended", "write_report"]

DEFAULTS = Thresholds()
INPUT_FIELDS = ("scans", "disputes", "weather", "shipments", "merchant_actions")
OUTPUT_FIELDS = ("alerts", "merchant_notifications", "route_scores", "dead_letter")
# Scored at their exact event times: a delay is 0 by construction, so none is drawn.
EXACT = (FEED_SILENT, *MERCHANT_SIDE)
Runner = Callable[[int, dict], list[dict]]  # (run number, setting) -> the run's alerts


def measure(parcels: int, days: float, seed: int, sweeps: list[Sweep],
            show_progress: bool = True, kafka: bool = False,
            brokers: str | None = None, outage: Outage | None = None,
            backfill: Backfill | None = None,
            merchant: MerchantConfig | None = DEFAULT_MERCHANT, quick: bool = False,
            truth_file: Path | None = None) -> dict:
    """Every run of the sweeps on one generated scenario, scored. On Kafka (`kafka`, or
    `brokers` naming a cluster to use instead of a fresh embedded broker) runs go through
    `run`, as in production; otherwise through `replay` over files. `truth_file`: also
    write the scenario's truth there, in the truth file format."""
    scenario = Scenario(ScenarioConfig(parcels=parcels, days=days, seed=seed, outage=outage,
                                       backfill=backfill, merchant=merchant))
    path = "kafka" if kafka or brokers else "replay"
    runner = (_generated_replays(scenario) if path == "replay"
              else _kafka_runs(scenario, brokers))
    with (_runs_shown(path, sweeps, quick, show_progress) as (runs, advance),
          runner as alerts_of):
        # The runner has written the scenario out: its truth is complete from here.
        truth, context = scenario.truth, context_of(scenario)
        scored = _scored_runs(runs, alerts_of, truth, context, advance)
    if truth_file is not None:
        write_truth_file(truth, context, truth_file)
    return {"parcels": parcels, "days": days, "seed": seed, "path": path,
            "truth": truth_summary(truth, context),
            "outage": None if outage is None else asdict(outage),
            "backfill": None if backfill is None else asdict(backfill),
            "sweeps": [msgspec.to_builtins(sweep) for sweep in sweeps], "runs": scored}


def measure_files(inputs_dir: Path, truth_path: Path, sweeps: list[Sweep],
                  show_progress: bool = True, quick: bool = False) -> dict:
    """Every run of the sweeps over an analyst's JSON Lines files, scored against the truth
    file. A sweep whose detector the truth cannot judge is left out (it would cost runs to
    say nothing). Raises ConfigError, before any run, for missing inputs or a bad truth."""
    inputs = input_files(inputs_dir)
    truth, context = load_truth(truth_path)
    usable = [sweep for sweep in sweeps if sweep.detector in context.scored]
    with (_runs_shown("replay", usable, quick, show_progress) as (runs, advance),
          _replays(inputs) as alerts_of):
        scored = _scored_runs(runs, alerts_of, truth, context, advance)
    return {"inputs": str(inputs_dir), "input_files": sorted(p.name for p in inputs.values()),
            "truth_file": str(truth_path), "path": "replay",
            "truth": truth_summary(truth, context),
            "sweeps": [msgspec.to_builtins(sweep) for sweep in usable],
            "sweeps_left_out": [sweep.name for sweep in sweeps if sweep not in usable],
            "runs": scored}


def input_files(inputs_dir: Path) -> dict[str, Path]:
    """The inputs `replay` takes, by the names `write_files` gives them (scans.jsonl, ...,
    merchant-actions.jsonl): those present; scans.jsonl is needed."""
    found = {topic: inputs_dir / f"{topic}.jsonl" for topic in INPUT_TOPICS
             if (inputs_dir / f"{topic}.jsonl").is_file()}
    if "scans" not in found:
        raise ConfigError(f"--inputs {inputs_dir}: no scans.jsonl there (inputs are "
                          f"{', '.join(f'{t}.jsonl' for t in INPUT_TOPICS)})")
    return found


@contextmanager
def _runs_shown(path: str, sweeps: list[Sweep], quick: bool, show: bool):
    """The runs to make (the defaults, then each sweep's points; `quick`: two per sweep)
    and a callback that advances the progress bar by one."""
    runs = [("defaults", None, {})] + [
        (sweep.name, sweep.detector, point) for sweep in sweeps
        for point in (sweep.points()[:2] if quick else sweep.points())]
    with progress_bar(transient=not show) as bar:
        task = bar.add_task(f"runs ({path})", total=len(runs))
        yield runs, lambda: bar.advance(task)


def _scored_runs(runs: list[tuple[str, str | None, dict]], alerts_of: Runner, truth: Truth,
                 context: Context, advance: Callable[[], None]) -> list[dict]:
    scored = []
    for n, (sweep, detector, point) in enumerate(runs):
        scored.append(_scored(sweep, detector, point, alerts_of(n, point), truth, context))
        advance()
    return scored


def _scored(sweep: str, detector: str | None, point: dict, alerts: list[dict], truth: Truth,
            context: Context) -> dict:
    """One run's figures. Delay lists are kept only where a plot draws them (every detector
    at the defaults, the swept detector in a sweep), to keep the JSON small."""
    detectors = score_against(alerts, truth, context, point)
    if sweep != "defaults":
        for name, figures in detectors.items():
            if name != detector:
                del figures["delays_hours"]
    return {"sweep": sweep, "setting": point, "detectors": detectors}


def _settings(point: dict, **overrides) -> Settings:
    """Daily route scores keep the outputs small; nothing comes from the environment, so
    both paths run the same configuration."""
    return load_settings(environ={}, thresholds={"score_interval_hours": 24, **point},
                         **overrides)


@contextmanager
def _replays(inputs: dict[str, Path]) -> Iterator[Runner]:
    """Each run a `replay` of the input files into a folder of its own."""
    with tempfile.TemporaryDirectory() as work:
        def alerts_of(n: int, point: dict) -> list[dict]:
            out = Path(work) / f"run-{n}"
            replay(_settings(point), inputs, out, Metrics(CollectorRegistry()))
            with (out / "alerts.jsonl").open(encoding="utf-8") as lines:
                return [json.loads(line) for line in lines if line.strip()]
        yield alerts_of


@contextmanager
def _generated_replays(scenario: Scenario) -> Iterator[Runner]:
    """The scenario written once to JSON Lines files, each run a `replay` of them."""
    with tempfile.TemporaryDirectory() as work:
        paths = write_files(scenario, Path(work) / "scenario", show_progress=False)
        with _replays(dict(paths)) as alerts_of:
            yield alerts_of


@contextmanager
def _kafka_runs(scenario: Scenario, brokers: str | None) -> Iterator[Runner]:
    """The scenario produced once to input topics named for this measurement (a shared
    cluster may hold others), each run `run --exit-at-end` from the beginning of them; on a
    fresh embedded broker unless `brokers` names a cluster."""
    if brokers is None:
        with EmbeddedBroker() as broker, _kafka_runs(scenario, broker.bootstrap) as alerts_of:
            yield alerts_of
        return
    prefix = f"accuracy-{uuid.uuid4().hex[:8]}"
    base = _settings({}, brokers=brokers, recovery=False)
    inputs = _prefixed(base.topics, prefix, INPUT_FIELDS)
    config = client_config(brokers)
    ensure_topics(config, list(inputs.inputs().values()), base.topic_partitions,
                  base.connect_timeout_seconds)
    produce(scenario, config, inputs.inputs(), show_progress=False)

    def alerts_of(n: int, point: dict) -> list[dict]:
        settings = _settings(point, brokers=brokers, recovery=False)
        settings = msgspec.structs.replace(
            settings, topics=_prefixed(inputs, f"{prefix}-run{n}", OUTPUT_FIELDS))
        if run(settings, Metrics(CollectorRegistry()), from_beginning=True, exit_at_end=True):
            raise KeyboardInterrupt  # stopped by Ctrl-C: its alerts would be partial
        records = read_topic(config, settings.topics.alerts)
        return [json.loads(value) for _key, value, _partition in records]
    yield alerts_of


def _prefixed(topics: Topics, prefix: str, fields: tuple[str, ...]) -> Topics:
    """`topics` with `fields` renamed `<prefix>-<default name>`: runs on one cluster never
    read or write each other's topics."""
    defaults = Topics()
    return msgspec.structs.replace(
        topics, **{field: f"{prefix}-{getattr(defaults, field)}" for field in fields})


def recommend(results: dict) -> dict[str, dict]:
    """Per sweep: the setting with the best F1, and the one with the best recall among those
    with precision at least 0.8 (for teams that would rather hear of every case); between
    equals, the one that alerts sooner. Where a setting decides what counts as a case
    (compared_within), the picks are made among the settings that share its value."""
    picks: dict[str, dict] = {}
    for sweep in results["sweeps"]:
        name, detector, within = sweep["name"], sweep["detector"], sweep["compared_within"]
        points = [r for r in results["runs"] if r["sweep"] == name]
        if within is None:
            pick = _pick(points, detector)
            if pick is not None:
                picks[name] = {"detector": detector, **pick}
            continue
        groups: dict[str, list[dict]] = {}
        for r in points:
            groups.setdefault(_group(within, r["setting"][within]), []).append(r)
        chosen = {group: _pick(members, detector) for group, members in groups.items()}
        picks[name] = {"detector": detector,
                       "within": {g: pick for g, pick in chosen.items() if pick is not None}}
    return picks


def _group(setting: str, value: float) -> str:
    return f"{setting}={value:g}"


def _pick(points: list[dict], detector: str) -> dict | None:
    scored = [(r["setting"], r["detectors"][detector]) for r in points]
    scored = [(s, f) for s, f in scored if f["f1"] is not None]
    if not scored:
        return None
    best = max(scored, key=lambda sf: (sf[1]["f1"], sf[1]["recall"] or 0, _sooner(sf[1])))
    careful = [sf for sf in scored if (sf[1]["precision"] or 0) >= 0.8]
    recall_first = max(careful, key=lambda sf: (sf[1]["recall"] or 0, _sooner(sf[1]))
                       ) if careful else None
    return {"best_f1": best[0],
            "best_recall_at_precision_0_8": recall_first and recall_first[0]}


def _sooner(figures: dict) -> float:
    """Larger for a shorter median detection delay (none found: the smallest)."""
    median = figures["delay_hours_median"]
    return -math.inf if median is None else -median


def write_recommended(results: dict, path: Path, command: str) -> None:
    """The best-F1 setting of each sweep as a `[thresholds]` table that `parcelwatch
    --config FILE` loads, each under a comment naming its sweep and the figures that chose
    it. Where a setting decides what counts as a case (compared_within), the pick is made
    at that setting's default: which rate is worth hearing about is a business choice, not
    a figure's."""
    picks = recommend(results)
    lines = [f"# Recommended by: {command}",
             "# The best F1 of each sweep (ties: the better recall, then the sooner alert).",
             "# Apply: parcelwatch run --config THIS_FILE, or copy the table into yours.",
             "", "[thresholds]"]
    for sweep in results["sweeps"]:
        setting, why = _recommended(sweep, picks.get(sweep["name"]), results["runs"])
        lines += ["", f"# {why}"]
        if setting is not None:
            lines.append(tomli_w.dumps(setting).rstrip("\n"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _recommended(sweep: dict, pick: dict | None, runs: list[dict]) -> tuple[dict | None, str]:
    """A sweep's setting to apply (None: no pick) and the comment that says why."""
    name, detector, within = sweep["name"], sweep["detector"], sweep["compared_within"]
    points = [r for r in runs if r["sweep"] == name]
    about = f"{name} ({detector})"
    if within is not None:
        group = _group(within, getattr(DEFAULTS, within))
        about += f", within the default {group}"
        points = [r for r in points if _group(within, r["setting"][within]) == group]
        pick = (pick or {}).get("within", {}).get(group)
    if not points:
        return None, f"{about}: no pick (no run had that setting)"
    if pick is None:
        return None, f"{about}: no pick (no setting found a case or gave an alert)"
    setting = pick["best_f1"]
    figures = next(r["detectors"][detector] for r in points if r["setting"] == setting)
    return setting, (f"{about}: best F1 {figures['f1']} of {len(points)} settings; precision "
                     f"{_with_ci(figures, 'precision')}, recall {_with_ci(figures, 'recall')}, "
                     f"median delay {figures['delay_hours_median']} h")


def write_report(results: dict, out_dir: Path, command: str) -> None:
    """accuracy.md with tables and recommendations, and PNG plots next to it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Accuracy against ground truth", "", f"`{command}`", "", _source(results), "",
             PATHS["files" if "inputs" in results else results.get("path", "replay")], "",
             INTERVALS, ""]
    lines += _defaults_section(results["runs"][0]["detectors"], out_dir)
    picks = recommend(results)
    for sweep in results["sweeps"]:
        points = [r for r in results["runs"] if r["sweep"] == sweep["name"]]
        if points:
            lines += _sweep_section(sweep, points, picks.get(sweep["name"]), out_dir)
    (out_dir / "accuracy.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


PATHS = {
    "replay": "Each run is `replay` over the scenario written to JSON Lines files.",
    "files": "Each run is `replay` over the input files.",
    "kafka": "Each run is `run --from-beginning --exit-at-end` over the scenario produced once "
             "to Kafka, writing to output topics of its own; its alerts are read back from "
             "its alerts topic.",
}
INTERVALS = ("Precision and recall are followed by their 95% interval, [low, high]: the "
             "percentile bootstrap over 1000 resamples (fixed seed) of the alerts (found and "
             "false alarms) for precision and of the true cases (found and missed) for "
             "recall; none under 2 of them. A narrow interval says the figure would hold on "
             "another sample of the same kind; a wide one, that there were few cases.")
MARKERS = "os^Dv<>PX*"
LINESTYLES = ("-", "--", ":", "-.")


def _source(results: dict) -> str:
    """What was scored: the generated scenario, or the analyst's files."""
    truth = ", ".join(f"{kind} {n}" for kind, n in results["truth"].items() if n is not None)
    if "inputs" not in results:
        return (f"Scenario: {results['parcels']:,} parcels over {results['days']:g} days, seed "
                f"{results['seed']}; ground truth: {truth}.")
    text = (f"Inputs: `{results['inputs']}` ({', '.join(results['input_files'])}); ground "
            f"truth: `{results['truth_file']}` ({truth}).")
    if results["sweeps_left_out"]:
        text += (" Sweeps left out, the truth having no case of their detector: "
                 f"{', '.join(results['sweeps_left_out'])}.")
    return text


def _label(setting: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in setting.items())


def _with_ci(figures: dict, name: str) -> str:
    """A figure with its interval: `0.95 [0.91, 0.98]`."""
    ci = figures[f"{name}_ci"]
    return f"{figures[name]}" if ci is None else f"{figures[name]} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _defaults_section(defaults: dict, out_dir: Path) -> list[str]:
    """The table at the default thresholds and the CDF of each detector's delays."""
    lines = ["## Default thresholds", "",
             "| detector | found | false alarms | missed | precision | recall | F1 | "
             "median delay (h) | p90 delay (h) |", "|---|---|---|---|---|---|---|---|---|"]
    for detector, f in defaults.items():
        lines.append(f"| {detector} | {f['found']} | {f['false_alarms']} | {f['missed']} | "
                     f"{_with_ci(f, 'precision')} | {_with_ci(f, 'recall')} | {f['f1']} | "
                     f"{f['delay_hours_median']} | {f['delay_hours_p90']} |")
    exact = [kind for kind in MERCHANT_SIDE if kind in defaults]
    if exact:
        lines += ["", "The merchant's side is scored exactly (delay 0: each FIRING at the event "
                  "time the contract's definition gives); its resolutions likewise: " + "; ".join(
                      f"{kind} {defaults[kind]['resolved']} of "
                      f"{defaults[kind]['resolved_expected']} RESOLVED at their time, "
                      f"{defaults[kind]['resolved_wrong']} wrong" for kind in exact) + "."]
    if "WEATHER_DELAY_CLUSTER" in defaults:
        lines += ["", "WEATHER_DELAY_CLUSTER's false alarms are clusters that match no injected "
                  "storm. The scenario's background delays (stalls, failed deliveries retried "
                  "the next day) can make them: five or more delayed parcels within the radius "
                  "and the window are a cluster by the contract's definition, so they are not "
                  "detector errors but what the thresholds let through."]
    if "ROUTE_DAMAGE_RATE" in defaults:
        lines += ["", "ROUTE_DAMAGE_RATE counts a flagged route as found when its true damage "
                  "rate is above the threshold."]
    drawn = [detector for detector in defaults if detector not in EXACT]
    if drawn:
        _plot_default_delays({d: defaults[d]["delays_hours"] for d in drawn},
                             out_dir / "delays.png")
        lines += ["", "Detection delay at the defaults: per detector, the empirical CDF of its "
                  "delays (x: hours; y: the share of the cases it found that it had reported "
                  "by then; n: cases found). The exactly scored types are left out (delay 0).",
                  "", "![detection delay at the defaults](delays.png)"]
    return [*lines, ""]


def _sweep_section(sweep: dict, points: list[dict], pick: dict | None,
                   out_dir: Path) -> list[str]:
    """A sweep's table, its two plots and the settings to pick."""
    name, detector = sweep["name"], sweep["detector"]
    slug = name.split(" ")[0]
    lines = [f"## Sweep: {name} ({detector})", "", sweep["note"], "",
             "| setting | precision | recall | F1 | median delay (h) | p90 delay (h) |",
             "|---|---|---|---|---|---|"]
    for r in points:
        f = r["detectors"][detector]
        lines.append(f"| {_label(r['setting'])} | {_with_ci(f, 'precision')} | "
                     f"{_with_ci(f, 'recall')} | {f['f1']} | {f['delay_hours_median']} | "
                     f"{f['delay_hours_p90']} |")
    _plot_precision_recall(name, detector, points, out_dir / f"sweep-{slug}.png")
    _plot_delays(name, detector, points, out_dir / f"delays-{slug}.png")
    lines += ["", f"![precision against recall](sweep-{slug}.png)", "",
              f"Detection delay by setting: the empirical CDF of {detector}'s delays, one step "
              "line per setting (x: hours; y: the share of the cases that setting found that it "
              "had reported by then; n: cases found). A line to the left reports sooner; "
              "compare n and recall too, since a setting that finds only the easy cases can "
              "look fast.", "", f"![detection delay by setting](delays-{slug}.png)", ""]
    if pick is not None:
        for group, choice in pick.get("within", {"": pick}).items():
            lines += [f"Pick{f' within {group}' if group else ''}: best F1 at "
                      f"{choice['best_f1']}; for the most cases found with precision ≥ 0.8: "
                      f"{choice['best_recall_at_precision_0_8']} (between equals, the one "
                      "that alerts sooner).", ""]
    return lines


def _plot_precision_recall(sweep: str, detector: str, points: list[dict], path: Path) -> None:
    """One marker per distinct (recall, precision), with the settings that give it listed in
    the legend: several settings often land on the same point, where labels would overlap."""
    shared: dict[tuple[float, float], list[str]] = {}
    for r in points:
        f = r["detectors"][detector]
        if f["precision"] is not None and f["recall"] is not None:
            shared.setdefault((f["recall"], f["precision"]), []).append(_label(r["setting"]))
    legend_lines = len(shared) + sum(len(labels) for labels in shared.values())
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(9, max(4.5, 1 + 0.2 * legend_lines)),
                              layout="constrained")
    for n, ((recall, precision), labels) in enumerate(shared.items()):
        ax.scatter(recall, precision, s=60, marker=MARKERS[n % len(MARKERS)], color=f"C{n % 10}",
                   label="\n".join([f"precision {precision:g}, recall {recall:g}:", *labels]))
    ax.set(xlabel="recall", ylabel="precision", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
    figure.suptitle(f"Precision against recall: {detector}, {sweep}")
    if shared:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=9, frameon=False,
                  labelspacing=0.9)
    save(figure, path, dpi=100)


def _ecdf(ax, hours: list[float], label: str, n: int = 0) -> None:
    """One step line of the share of cases reported within x hours; a setting that found
    none keeps its place in the legend."""
    style = {"color": f"C{n % 10}", "linestyle": LINESTYLES[n // 10 % len(LINESTYLES)]}
    if hours:
        ax.ecdf(hours, label=f"{label} (n={len(hours)})", **style)
    else:
        ax.plot([], [], label=f"{label} (n=0, none found)", **style)


def _plot_delays(sweep: str, detector: str, points: list[dict], path: Path) -> None:
    """The empirical CDF of the swept detector's detection delays per setting: how soon each
    setting reports the cases it finds, the whole distribution and not one median."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    for n, r in enumerate(points):
        _ecdf(ax, r["detectors"][detector]["delays_hours"], _label(r["setting"]), n)
    ax.set(xlabel="detection delay (h)", ylabel="share of the cases found", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=9, frameon=False)
    figure.suptitle(f"Detection delay by setting: {detector}, {sweep}")
    save(figure, path, dpi=100)


def _plot_default_delays(delays: dict[str, list[float]], path: Path) -> None:
    """One panel per detector: the empirical CDF of its delays at the defaults."""
    columns = min(3, len(delays))
    rows = math.ceil(len(delays) / columns)
    plt = pyplot()
    figure, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.2 * rows),
                                squeeze=False, layout="constrained")
    for ax, (detector, hours) in zip(axes.flat, delays.items(), strict=False):
        _ecdf(ax, hours, "defaults")
        ax.set(title=detector, xlabel="detection delay (h)", ylabel="share of the cases found",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(delays):]:
        ax.set_visible(False)
    save(figure, path, dpi=100)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    generated = parser.add_argument_group("the generated scenario (the default)")
    generated.add_argument("--parcels", type=int, help="default 20000")
    generated.add_argument("--days", type=float, help="default 30")
    generated.add_argument("--seed", type=int, help="default 7")
    generated.add_argument("--kafka", action="store_true",
                           help="run each setting through Kafka (`run`) on the embedded broker")
    generated.add_argument("--outage", action="store_true",
                           help="the scenario with a carrier's 4-day outage and its backfill; "
                                "the defaults only, no sweeps")
    generated.add_argument("--backfill", action="store_true",
                           help="a second scenario (a tenth as many parcels more) read days "
                                "behind the watermark, claims with it; the defaults only")
    generated.add_argument("--without-merchant-side", action="store_true",
                           help="scans, claims and weather only (no shipments or merchant "
                                "actions): the scenario of the figures before 0.5")
    generated.add_argument("--write-truth", type=Path, metavar="FILE",
                           help="also write the scenario's truth here, as a truth file")
    own = parser.add_argument_group("your own labelled data (docs/accuracy.md)")
    own.add_argument("--inputs", type=Path, metavar="DIR",
                     help="scans.jsonl and any of disputes.jsonl, weather.jsonl, "
                          "shipments.jsonl, merchant-actions.jsonl, as `replay` reads them")
    own.add_argument("--truth", type=Path, metavar="FILE", help="their truth file (JSON)")
    parser.add_argument("--sweeps", type=Path, default=SWEEPS_FILE, metavar="FILE",
                        help="the sweep grid (TOML; default benchmarks/sweeps.toml)")
    parser.add_argument("--quick", action="store_true", help="two points per sweep")
    parser.add_argument("--defaults-only", action="store_true",
                        help="the default thresholds only, no sweeps")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--report", type=Path, help="write accuracy.md and plots here")
    parser.add_argument("--recommend", type=Path, metavar="FILE",
                        help="write the recommended thresholds here (TOML, for --config)")
    return parser


GENERATOR_ONLY = ("parcels", "days", "seed", "kafka", "outage", "backfill",
                  "without_merchant_side", "write_truth")


def _checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.inputs is None) != (args.truth is None):
        parser.error("--inputs DIR and --truth FILE go together")
    if args.inputs is not None:
        given = [name for name in GENERATOR_ONLY if getattr(args, name) not in (None, False)]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} is for the generated scenario, "
                         "not --inputs")
    else:
        args.parcels = 20_000 if args.parcels is None else args.parcels
        args.days = 30 if args.days is None else args.days
        args.seed = 7 if args.seed is None else args.seed


def _command(args: argparse.Namespace) -> str:
    """The command line that gives these figures again (outputs left out)."""
    words = ["python -m benchmarks.accuracy"]
    if args.inputs is not None:
        words += [f"--inputs {args.inputs}", f"--truth {args.truth}"]
    else:
        words += [f"--parcels {args.parcels}", f"--days {args.days:g}", f"--seed {args.seed}"]
    if args.sweeps != SWEEPS_FILE:
        words.append(f"--sweeps {args.sweeps}")
    words += [f"--{name.replace('_', '-')}" for name in
              ("quick", "defaults_only", "kafka", "outage", "backfill",
               "without_merchant_side")
              if getattr(args, name)]
    return " ".join(words)


def _measured(args: argparse.Namespace) -> dict:
    sweeps = [] if args.defaults_only else load_sweeps(args.sweeps)
    if args.inputs is not None:
        return measure_files(args.inputs, args.truth, sweeps, quick=args.quick)
    untidy = args.outage or args.backfill
    return measure(args.parcels, args.days, args.seed, [] if untidy else sweeps,
                   quick=args.quick, kafka=args.kafka,
                   outage=DEFAULT_OUTAGE if args.outage else None,
                   backfill=DEFAULT_BACKFILL if args.backfill else None,
                   merchant=None if args.without_merchant_side else DEFAULT_MERCHANT,
                   truth_file=args.write_truth)


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    _checked(parser, args)
    command = _command(args)
    try:
        results = _measured(args)
    except ConfigError as exc:
        print(f"benchmarks.accuracy: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    results["recommended"] = recommend(results)
    if args.report:
        write_report(results, args.report, command)
    if args.recommend:
        write_recommended(results, args.recommend, command)
    report("accuracy", command, results, args.json)


if __name__ == "__main__":
    main()
