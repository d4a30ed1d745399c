"""The `parcelwatch` command. Bad arguments or configuration: one line on stderr, exit 2."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from connectors.kafka import BrokerUnreachable
from flows.config import ConfigError, Settings, check_kafka_properties, load_settings

config_option = click.option("--config", type=click.Path(path_type=Path),
                             help="TOML configuration file.")
existing_file = click.Path(path_type=Path, dir_okay=False)


def _metrics(settings: Settings):
    """Serve /metrics when enabled; a busy port is reported, not fatal."""
    from alerts.metrics import metrics, serve

    registry = metrics()
    if settings.metrics.enabled:
        try:
            serve(settings.metrics.host, settings.metrics.port, registry)
        except OSError as exc:
            logging.getLogger("parcelwatch").warning(
                "metrics not served on %s:%s: %s", settings.metrics.host, settings.metrics.port,
                exc)
    return registry


LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(log_format: str = "text", log_level: str = "info") -> None:
    """Lines on stderr: `parcelwatch: message`, or one JSON object a line (`ts`, `level`,
    `event`, `logger` and any fields) for a log pipeline."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(levelname)s %(name)s %(message)s", timestamp="ts",
            rename_fields={"levelname": "level", "message": "event", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("parcelwatch: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries: warnings and worse
    logging.getLogger("parcelwatch").setLevel(log_level.upper())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="parcelwatch", prog_name="parcelwatch",
                      message="%(prog)s %(version)s")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines as text, or as one JSON object each.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="The least severe log lines shown.")
def cli(log_format: str, log_level: str) -> None:
    """Watch courier scans; alert when a parcel is in trouble."""
    configure_logging(log_format, log_level)


@cli.command()
@click.option("--brokers", help="Kafka bootstrap servers HOST:PORT[,...].")
@config_option
@click.option("--from-beginning", is_flag=True,
              help="With no saved state, read the inputs from their start.")
@click.option("--exit-at-end", is_flag=True,
              help="Stop once every input partition is read to its end.")
@click.option("--state-dir", help="Recovery state directory.")
@click.option("--process-id", type=click.IntRange(min=0),
              help="This process's index in --addresses (a job of several processes).")
@click.option("--addresses", help="HOST:PORT;HOST:PORT... of every process of the job.")
def run(brokers, config, from_beginning, exit_at_end, state_dir, process_id,
        addresses) -> None:
    """The production job against any Kafka-protocol cluster."""
    from flows.runner import ProcessGroup
    from flows.runner import run as run_job

    settings = load_settings(config, brokers=brokers, state_dir=state_dir)
    check_kafka_properties(settings.kafka)
    processes = ProcessGroup.parse(process_id, addresses)
    run_job(settings, _metrics(settings), from_beginning=from_beginning,
            exit_at_end=exit_at_end, processes=processes)


@cli.command()
@click.option("--scans", type=existing_file, required=True, help="Scans, JSON Lines.")
@click.option("--disputes", type=existing_file, help="Disputes, JSON Lines.")
@click.option("--weather", type=existing_file, help="Weather warnings, JSON Lines.")
@click.option("--shipments", type=existing_file, help="Shipments, JSON Lines.")
@click.option("--merchant-actions", type=existing_file, help="Merchant actions, JSON Lines.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the output files.")
@config_option
def replay(scans, disputes, weather, shipments, merchant_actions, out, config) -> None:
    """The same detectors over files; writes alerts.jsonl and the other outputs into OUT."""
    from alerts.metrics import metrics
    from flows.runner import replay as replay_files

    settings = load_settings(config)
    inputs = {name: path for name, path in
              (("scans", scans), ("disputes", disputes), ("weather", weather),
               ("shipments", shipments), ("merchant-actions", merchant_actions)) if path}
    replay_files(settings, inputs, out, metrics())
    click.echo(f"outputs written to {out}")


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9092, show_default=True)
def broker(port) -> None:
    """Run the embedded Kafka-compatible broker (memory only) in the foreground."""
    from connectors.broker import EmbeddedBroker, stop_with_parent

    # Stop on SIGTERM, SIGHUP and SIGINT however it was started: a shell script's `&`
    # starts it with SIGINT ignored, so SIGTERM must not go through SIGINT.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _interrupt)
    stop_with_parent()
    with contextlib.suppress(KeyboardInterrupt), EmbeddedBroker(port) as running:
        click.echo(f"broker listening on {running.bootstrap} (memory only; Ctrl-C stops it)")
        running.process.wait()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


scenario_options = [
    click.option("--parcels", type=click.IntRange(min=100), default=20_000, show_default=True),
    click.option("--days", type=click.FloatRange(min=7), default=30, show_default=True),
    click.option("--seed", type=int, default=7, show_default=True),
]


def with_scenario_options(command):
    for option in reversed(scenario_options):
        command = option(command)
    return command


@cli.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write JSON Lines files here.")
@click.option("--brokers", help="Or produce to the input topics on these brokers.")
@with_scenario_options
@config_option
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def generate(out, brokers, parcels, days, seed, config, progress) -> None:
    """Write a synthetic scenario (scans, disputes, weather) and its ground truth."""
    from benchmarks.scenario import Scenario, ScenarioConfig
    from benchmarks.writers import produce, write_files, write_truth
    from connectors.kafka import client_config, ensure_topics

    if (out is None) == (brokers is None):
        raise click.UsageError("give exactly one of --out DIR or --brokers HOST:PORT")
    settings = load_settings(config, brokers=brokers)
    scenario = Scenario(ScenarioConfig(
        parcels=parcels, days=days, seed=seed,
        no_movement_hours=settings.thresholds.no_movement_hours,
        allowed_lateness_minutes=settings.thresholds.allowed_lateness_minutes))
    if out is not None:
        write_files(scenario, out, progress)
        click.echo(f"scenario written to {out}")
        return
    kafka = client_config(settings.brokers, settings.kafka)
    ensure_topics(kafka, list(settings.topics.inputs().values()), settings.topic_partitions,
                  settings.connect_timeout_seconds)
    count = produce(scenario, kafka, settings.topics.inputs(), progress)
    truth_dir = Path("scenario-truth")
    truth_dir.mkdir(exist_ok=True)
    write_truth(scenario, truth_dir)
    click.echo(f"{count} records produced to {settings.brokers}; ground truth in {truth_dir}")


@cli.command()
@with_scenario_options
@config_option
def demo(parcels, days, seed, config) -> None:
    """Everything on this machine: broker, topics, a scenario, the detectors, a summary."""
    from flows.demo import run_demo

    # A daily route scorecard keeps the demo's 30 days of output small.
    settings = load_settings(config, recovery=False, idle_advance=False,
                             thresholds={"score_interval_hours": 24})
    run_demo(settings, _metrics(settings), parcels=parcels, days=days, seed=seed)


@cli.command()
@click.option("--brokers", help="Read the route-scores topic on these brokers.")
@click.option("--from", "from_file", type=existing_file,
              help="Or read a route-scores.jsonl written by replay.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@config_option
def scores(brokers, from_file, top, config) -> None:
    """Print the worst routes by damage rate: the latest route scores, as a table."""
    import json
    import shutil

    from rich.console import Console

    from alerts.scorecard import scorecard
    from connectors.kafka import client_config, read_topic

    if (brokers is None) == (from_file is None):
        raise click.UsageError("give exactly one of --brokers HOST:PORT or --from FILE")
    settings = load_settings(config, brokers=brokers)
    if from_file is not None:
        if not from_file.is_file():
            raise ConfigError(f"--from {from_file}: no such file")
        with from_file.open(encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()]
    else:
        kafka = client_config(settings.brokers, settings.kafka)
        records = [json.loads(value) for _, value, _ in
                   read_topic(kafka, settings.topics.route_scores)]
    width = max(shutil.get_terminal_size().columns, 110)  # never squeeze the columns
    Console(width=width).print(scorecard(records, settings.thresholds, settings.zone, top))


@cli.command()
@click.option("--brokers", help="Kafka bootstrap servers HOST:PORT[,...].")
@click.option("--endpoints", type=existing_file, required=True,
              help="TOML file: merchant id -> webhook URL and where its secret is.")
@click.option("--group", default="parcelwatch-push", show_default=True,
              help="Consumer group of the merchant-notifications topic.")
@click.option("--exit-at-end", is_flag=True,
              help="Stop once every notification read so far has an outcome.")
@config_option
def push(brokers, endpoints, group, exit_at_end, config) -> None:
    """Push merchant notifications to their merchants' webhooks (Standard Webhooks)."""
    from alerts.endpoints import load_endpoints
    from flows.pushing import push as push_job

    settings = load_settings(config, brokers=brokers)
    check_kafka_properties(settings.kafka)
    push_job(settings, load_endpoints(endpoints), group, _metrics(settings), exit_at_end)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    try:
        code = cli.main(args=argv, prog_name="parcelwatch", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        code = 0
    except click.UsageError as exc:
        click.echo(f"parcelwatch: error: {exc.format_message()}", err=True)
        code = 2
    except ConfigError as exc:
        click.echo(f"parcelwatch: error: {exc}", err=True)
        code = 2
    except BrokerUnreachable as exc:
        click.echo(f"parcelwatch: error: {exc}", err=True)
        code = 1
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
