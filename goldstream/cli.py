"""The `goldstream` command: run, replay, status, show, copy-gold, validate-config, healthcheck, generate-silver, demo, export."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional

import typer

from goldstream.errors import ConfigError, GoldstreamError
from goldstream.units import count, plural, size

# No pretty tracebacks with local variables: they would print settings and client objects.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"max_content_width": 120},  # help as wide as the terminal, up to 120
                  help="Lightweight stream processor: Delta Silver → windowed aggregates → Delta Gold, exactly once.")
log = logging.getLogger("goldstream")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="TOML configuration file")]
SilverOpt = Annotated[Optional[str], typer.Option("--silver", help="Silver table URI (overrides [source] path)")]
GoldOpt = Annotated[Optional[str], typer.Option("--gold-root", help="Gold root URI (overrides [sink] gold_root)")]
QueryOpt = Annotated[Optional[str], typer.Option(help="only this query")]


def _fail(err: GoldstreamError) -> None:
    from goldstream.secrets import redact

    typer.echo(redact(f"error: {err}"), err=True)
    raise typer.Exit(err.exit_code)


def _guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except GoldstreamError as err:
        _fail(err)
    except Exception as err:
        from goldstream.retry import storage_failure

        failure = storage_failure(err, "storage")  # a storage error no loop caught (status, show)
        if failure is None:
            _internal_error(err)
        _fail(failure)


def _internal_error(err: Exception) -> None:
    """A bug, not a bad input: the traceback helps whoever fixes it, with secrets masked
    (it can quote a request or a client's state)."""
    import traceback

    from goldstream.secrets import redact

    typer.echo(redact("".join(traceback.format_exception(err))), err=True)
    typer.echo(redact(f"error: internal error ({type(err).__name__}: {err}). Nothing partial was committed: "
                      "Gold commits are atomic, and a restart resumes from Gold's offsets. Please report "
                      "this with the lines above."), err=True)
    raise typer.Exit(1)


def _load_settings(config: Path):  # type: ignore[no-untyped-def]
    """The settings in `config`. The image carries no configuration (a default one would
    point at paths that do not exist in it, and `run` would wait for them forever), so a
    missing file is the usual first mistake in a container: say how to provide it."""
    from goldstream.config import load_settings

    if not config.is_file():
        raise ConfigError(
            f"configuration file {config} does not exist. Copy config.example.toml, edit it and pass it with "
            f"--config; in a container, mount it at {config} (docker run -v \"$PWD/config.toml:{config}:ro\" ..., "
            "or the goldstream-config ConfigMap in Kubernetes)")
    return load_settings(config)


def _settings(config: Path, silver: str | None, gold_root: str | None,  # type: ignore[no-untyped-def]
              query: str | None = None):
    from goldstream.config import with_overrides

    settings = with_overrides(_load_settings(config), silver=silver, gold_root=gold_root)
    return settings if query is None else settings.only(query)


def _install_stop_handlers(stop: Callable[[], None]) -> list[signal.Signals]:
    """Stop cleanly on SIGTERM/SIGINT; the returned list receives the signals as they come."""
    received: list[signal.Signals] = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum))
        log.info("received %s: finishing the current batch, then exiting", received[-1].name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return received


@app.command(short_help="Process Silver up to a version, commit closed windows to Gold, exit.")
def replay(
    config: ConfigOpt,
    silver: SilverOpt = None,
    gold_root: GoldOpt = None,
    from_version: Annotated[Optional[int], typer.Option(help="first Silver version, for a query with no Gold yet")] = None,
    to_version: Annotated[Optional[int], typer.Option(help="last Silver version to process (default: latest)")] = None,
    flush: Annotated[bool, typer.Option(help="emit still-open windows at the end")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON line, last on stdout")] = False,
) -> None:
    """Process a bounded range of Silver versions, commit closed windows to Gold, exit."""
    from goldstream.observability import setup_logging
    from goldstream.progress_bar import shown
    from goldstream.runner import Pipeline

    if to_version is not None and to_version < 0 or from_version is not None and from_version < 0:
        typer.echo("error: --from-version and --to-version must not be negative", err=True)
        raise typer.Exit(2)
    if from_version is not None and to_version is not None and from_version > to_version:
        typer.echo(f"error: --from-version {from_version} is after --to-version {to_version}", err=True)
        raise typer.Exit(2)

    def go() -> int:
        settings = _settings(config, silver, gold_root)
        setup_logging(settings.log_level, route_native_stderr=True)
        pipeline = Pipeline(settings, from_version=from_version, metrics=False)  # nothing serves them
        if to_version is not None:
            _check_reaches(pipeline.source, to_version)
        received = _install_stop_handlers(pipeline.stop_event.set)
        with shown(pipeline.progress, "replay", len(settings.queries), lambda: pipeline.replay_stop):
            completed = pipeline.replay(to_version=to_version, flush=flush)
        summary = pipeline.summary()
        _print_summary(summary, as_json)
        for r in summary:
            if to_version is not None and r["silver_version"] > to_version:
                typer.echo(f"{r['query']}: Gold already holds Silver through version {r['silver_version']}, past "
                           f"--to-version {to_version}: nothing to process")
        if completed:
            return 0
        return _interrupted(received[0] if received else signal.SIGTERM, summary, pipeline.replay_stop)

    raise typer.Exit(_guarded(go))


def _interrupted(sig: signal.Signals, summary: list[dict[str, Any]], target: int | None) -> int:
    """An interrupted replay did not do what was asked: its exit code is 128 + the signal's
    number, as a shell's, and it says how far each query got (recorded in Gold: a new replay
    resumes there)."""
    of = "" if target is None else f" of {target}"
    reached = "; ".join(f"{r['query']}: Silver processed through version {r['silver_version']}{of}"
                        for r in summary) or "no query was opened yet"
    typer.echo(f"replay interrupted by {sig.name}: {reached}. Nothing partial was committed; run the same "
               "replay again to resume from Gold's offsets.", err=True)
    return 128 + sig.value


def _check_reaches(source: Any, to_version: int) -> None:
    """Refuse --to-version past Silver's latest version before anything is written: the
    replay could only stop short of it, and exit 0 would say it got there."""
    from goldstream.errors import SourceError

    latest = source.latest_version()
    if latest is not None and to_version > latest:
        raise SourceError(f"--to-version {to_version} is beyond the latest version of Silver table {source.uri} "
                          f"(latest version: {latest}); nothing was processed. Give a version up to {latest}, "
                          "or leave --to-version out to replay up to the latest")


@app.command()
def run(
    config: ConfigOpt,
    silver: SilverOpt = None,
    gold_root: GoldOpt = None,
    http_port: Annotated[Optional[int], typer.Option(min=0, max=65535,
                                                     help="health, metrics and status page port (0 disables; "
                                                          "default from config)")] = None,
) -> None:
    """Tail Silver forever: poll, process, commit, sleep. SIGTERM/SIGINT stop cleanly (exit 0)."""
    from goldstream.durations import to_us
    from goldstream.observability import setup_logging
    from goldstream.progress_bar import shown
    from goldstream.retry import FOREVER
    from goldstream.runner import Pipeline

    def go() -> None:
        from goldstream.secrets import bearer_token

        settings = _settings(config, silver, gold_root)
        token = bearer_token()  # a blank token is refused at start, whether or not the page is served
        setup_logging(settings.log_level, route_native_stderr=True)
        pipeline = Pipeline(settings, retry=FOREVER)  # the daemon never exits on a transient error
        _install_stop_handlers(pipeline.stop_event.set)
        port = settings.server.http_port if http_port is None else http_port
        if port:
            from goldstream.server import stale_after_s, start_http_server
            from goldstream.web.app import attach

            start_http_server(pipeline.status, pipeline.progress.metrics.registry, stale_after_s(settings),
                              port, settings.server.http_host, page=attach(settings, pipeline.progress, pipeline.status),
                              token=token)
        # opens (waiting for a missing Silver, as replay does not) inside the loop, so losing the
        # first commit of a fresh Gold to another instance makes this one a standby too
        # on a terminal, a bar up to Silver's latest version when the first batch is read
        with shown(pipeline.progress, "catching up", len(settings.queries), lambda: None):
            pipeline.run_forever(to_us(settings.source.poll_interval) / 1e6, wait_for_table=True)
        log.info("stopped cleanly")

    _guarded(go)


@app.command(short_help="Compact, checkpoint, clean the log and vacuum every table once.")
def maintain(
    config: ConfigOpt,
    silver: SilverOpt = None,
    gold_root: GoldOpt = None,
    query: QueryOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be compacted and vacuumed; write nothing")]
    = False,
) -> None:
    """Compact, checkpoint, clean the log and vacuum every Gold and late table once ([maintenance]
    settings; every file smaller than target_file_size is compacted). Safe beside a live `run`."""
    from goldstream.observability import setup_logging
    from goldstream.runner.upkeep import maintain as maintain_once
    from goldstream.storage import Storage

    def go() -> None:
        settings = _settings(config, silver, gold_root, query)
        setup_logging(settings.log_level, route_native_stderr=True)
        reports = maintain_once(settings, Storage.from_env(settings.storage), dry_run=dry_run)
        for (name, kind), r in reports.items():
            verb = "would compact" if dry_run else "compacted"
            vacuumed = "would vacuum" if dry_run else "vacuumed"
            typer.echo(f"{name} {kind} table: {plural(r.files_before, 'data file')} -> {count(r.files_after)}; "
                       f"{verb} {plural(r.compacted, 'file')} ({size(r.bytes_rewritten)}); "
                       f"{vacuumed} {plural(len(r.vacuumed), 'file')}"
                       + ("; a compaction lost a race with another writer: run again" if r.gave_up else ""))
            if dry_run:
                for path in r.vacuumed:
                    typer.echo(f"  would delete {path}")

    _guarded(go)


@app.command(short_help="Per query: lag, watermark, open windows, late rows.")
def status(
    config: ConfigOpt,
    silver: SilverOpt = None,
    gold_root: GoldOpt = None,
    query: QueryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One table of every query: lag in versions and event time, watermark, open windows, late rows."""
    from goldstream.report import status as get_status

    def go() -> None:
        logging.basicConfig(level=logging.WARNING)
        rows = get_status(_settings(config, silver, gold_root, query))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console

        from goldstream.report import status_frame
        from goldstream.tables import tables

        console = Console(highlight=False)
        for table in tables(status_frame(rows), console.width, identity=1):
            console.print(table)
        for r in rows:
            if r["event_time_warning"]:
                typer.echo(f"{r['query']}: {r['event_time_warning']}")

    _guarded(go)


@app.command(short_help="Gold's row counts, latest windows and top keys; or a plot.")
def show(
    config: ConfigOpt,
    gold_root: GoldOpt = None,
    query: QueryOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 10,
    plot: Annotated[Optional[Path], typer.Option(help="draw the query's Gold over time into this .png or .html "
                                                      "file (needs --query)")] = None,
    metric: Annotated[Optional[str], typer.Option(help="the aggregate --plot draws (default: the first)")] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, help="--plot draws the keys with the largest total")] = 8,
) -> None:
    """Row counts of the Gold tables, the latest windows, the highest anomaly rates; or a plot."""
    from rich.console import Console

    from goldstream.report import show as get_sections
    from goldstream.tables import tables

    def go() -> None:
        settings = _settings(config, None, gold_root, query)
        if plot is not None:
            from goldstream.plot import plot_gold

            if query is None:
                raise ConfigError("--plot draws one query: add --query NAME")
            typer.echo(plot_gold(settings, settings.queries[0], plot, metric, top))
            return
        console = Console(highlight=False)
        for section in get_sections(settings, limit=limit):
            console.print(f"\n== {section.title}", markup=False)
            if section.note:
                console.print(section.note, markup=False, style="dim")
            for table in tables(section.frame, console.width, section.identity):
                console.print(table)

    _guarded(go)


@app.command("copy-gold", short_help="Copy a query's Gold and offsets into a table with widened types.")
def copy_gold(
    config: ConfigOpt,
    query: Annotated[str, typer.Option(help="the query whose Gold table is copied")],
    to: Annotated[str, typer.Option("--to", help="the new Gold table's path (must not hold commits)")],
    silver: SilverOpt = None,
    gold_root: GoldOpt = None,
) -> None:
    """Copy a query's Gold rows and offsets into a new table with Silver's widened column
    types (after Delta type widening); then set the query's gold_path to it and restart."""
    from goldstream.observability import setup_logging
    from goldstream.sink.copy import copy_gold as copy
    from goldstream.storage import Storage

    def go() -> None:
        settings = _settings(config, silver, gold_root)
        setup_logging(settings.log_level)
        rows = copy(settings, query, to, Storage.from_env(settings.storage))
        typer.echo(f"copied {plural(rows, 'Gold row')} and the offsets of query {query!r} into {to}; set its gold_path "
                   "to that path and restart it")

    _guarded(go)


@app.command("validate-config", short_help="Check a configuration without touching storage.")
def validate_config(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML configuration file")] = None,
    file: Annotated[Optional[Path], typer.Argument(help="the same file, given without --config",
                                                   show_default=False)] = None,
) -> None:
    """Check a configuration file (and GOLDSTREAM_* overrides) without touching storage."""
    import os

    from goldstream.durations import format_duration as fmt

    if (config is None) == (file is None):
        _fail(ConfigError("validate-config checks one file: give it as --config FILE"
                          + (" (not also as an argument)" if config is not None else "")))
    config = config or file
    assert config is not None

    def go() -> None:
        from goldstream.secrets import bearer_token

        settings = _load_settings(config)  # pydantic only: no storage client is created
        bearer_token()  # set but blank: refused here as at the start of `run`
        src, srv = settings.source, settings.server
        typer.echo(f"source {src.path}: starting at {src.starting_version}, poll every {fmt(src.poll_interval)}, "
                   f"at most {count(src.max_commits_per_batch)} commits / {count(src.max_files_per_batch)} files / "
                   f"{count(src.max_rows_per_batch)} rows per batch")
        for q in settings.queries:
            w = q.window
            keys = [k.sql(dialect="spark") for k in q.sql_query.keys] if q.sql_query is not None else q.keys
            kind = " (Spark SQL)" if q.sql is not None else ""
            typer.echo(f"query {q.name}{kind}: {w.kind} window {w.extent}, watermark delay "
                       f"{fmt(q.watermark_delay)}, keys {keys}, {len(q.aggregates)} aggregates -> {settings.gold_path(q)}")
        typer.echo(f"server: {'off' if not srv.http_port else f'{srv.http_host}:{srv.http_port}'}; "
                   f"log level {settings.log_level}")
        overrides = sorted(k for k in os.environ if k.upper().startswith("GOLDSTREAM_"))
        if overrides:
            typer.echo("environment overrides: " + ", ".join(overrides))
        typer.echo(f"{config}: OK (storage not contacted)")

    _guarded(go)


@app.command(short_help="Each query's plan: columns read, filter, joins, window, aggregates, Gold schema.")
def explain(
    config: ConfigOpt,
    query: Annotated[Optional[str], typer.Option("--query", help="only this query")] = None,
    silver: Annotated[Optional[str], typer.Option("--silver", help="Silver table (overrides [source] path)")] = None,
) -> None:
    """Print each query's plan: Silver columns read, filter, joins (with the dimension version
    a batch would join now), window and watermark, keys, aggregates with their state and
    Spark form, and the Gold schema. Reads schemas; writes nothing."""
    from goldstream.explain import explain as plan
    from goldstream.storage import Storage

    def go() -> None:
        settings = _settings(config, silver, None, query)
        typer.echo(plan(settings, Storage.from_env(settings.storage)), nl=False)

    _guarded(go)


@app.command(short_help="Exit 0 if the local `run` answers /healthz, else 1.")
def healthcheck(config: ConfigOpt) -> None:
    """Exit 0 if the local `run` answers /healthz with 200 on its configured port, else 1.

    The container's HEALTHCHECK: the port comes from the same configuration and
    GOLDSTREAM_SERVER__HTTP_PORT as `run`, so moving the port never breaks the probe.
    Every failure exits 1, the only "unhealthy" code Docker defines."""
    import http.client

    from goldstream.secrets import redact

    def unhealthy(why: object) -> NoReturn:
        typer.echo(redact(f"unhealthy: {why}"), err=True)
        raise typer.Exit(1)

    try:
        server = _load_settings(config).server
    except ConfigError as err:
        unhealthy(err)
    if not server.http_port:
        typer.echo("the health server is disabled ([server] http_port = 0): nothing to check")
        return
    host = "127.0.0.1" if server.http_host in ("", "0.0.0.0", "::") else server.http_host
    url = f"http://{host}:{server.http_port}/healthz"
    conn = http.client.HTTPConnection(host, server.http_port, timeout=4)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except OSError as err:
        unhealthy(f"{url}: {err}")
    finally:
        conn.close()
    if status != 200:
        unhealthy(f"{url} answered {status}")


@app.command("generate-silver", short_help="Write a seeded OpenSky-like synthetic Silver table.")
def generate_silver(
    out: Annotated[str, typer.Option(help="Silver table URI to create or append to")],
    commits: Annotated[int, typer.Option(min=1)] = 60,
    rows_per_commit: Annotated[int, typer.Option(min=0)] = 2000,
    seed: int = 0,
    commit_interval: Annotated[float, typer.Option(min=0.001, max=86_400.0, help="seconds of event time per commit")] = 10.0,
    aircraft: Annotated[Optional[int], typer.Option(min=1, max=10_000_000, help="distinct icao24 in the fleet (default 4000)")]
    = None,
) -> None:
    """Write a seeded OpenSky-like synthetic Silver table (one Delta commit per batch)."""
    import time

    from goldstream.demo.synth import generate_silver as gen
    from goldstream.storage import Storage

    started = time.monotonic()
    with _commit_progress(commits, rows_per_commit) as on_commit:
        s = gen(out, commits, rows_per_commit, seed, commit_interval_s=commit_interval,
                storage_options=Storage.from_env().delta_options(out), aircraft=aircraft, on_commit=on_commit)
    span = ("no event time" if s.first_event_time is None or s.last_event_time is None else
            f"event time {s.first_event_time:%Y-%m-%d %H:%M:%S} to {s.last_event_time:%Y-%m-%d %H:%M:%S} UTC")
    empty = f" ({count(s.empty_commits)} of them empty)" if s.empty_commits else ""
    typer.echo(f"wrote {plural(s.versions_written, 'Silver commit')}{empty} with {plural(s.rows_written, 'row')} "
               f"to {out}: {span}, in {time.monotonic() - started:,.1f} s")


@contextlib.contextmanager
def _commit_progress(total: int, rows_per_commit: int) -> Iterator[Callable[[int, int], None]]:
    """Progress of a long generation: a bar on a terminal, else a line on stderr every few
    seconds (a short run prints nothing but its summary)."""
    import time

    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("generating Silver"), BarColumn(), MofNCompleteColumn(), TextColumn("commits"),
                      TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("commits", total=total)
            yield lambda done, rows: bar.update(task, completed=done)
        return
    last = time.monotonic()

    def line(done: int, rows: int) -> None:
        nonlocal last
        if time.monotonic() - last >= 5 and done < total:
            last = time.monotonic()
            typer.echo(f"generating Silver: {count(done)} of {count(total)} commits, {plural(rows, 'row')} so far",
                       err=True)

    yield line


@app.command(short_help="Live OpenSky traffic, both seed queries, their Gold and the status page.")
def demo(
    workdir: Annotated[Path, typer.Option(help="workspace for the demo tables (its old demo tables are replaced)")]
    = Path("goldstream-demo"),
    data: Annotated[str, typer.Option(help="auto (real OpenSky data, synthetic until it is ready), opensky, synthetic")]
    = "auto",
    commit_every: Annotated[float, typer.Option(min=0.01, help="wall seconds between Silver commits (10 s of event time each)")]
    = 0.15,
    duration: Annotated[Optional[float], typer.Option(min=0, help="stop after this many seconds")] = None,
    max_commits: Annotated[Optional[int], typer.Option(min=1, help="stop after this many Silver commits are processed")]
    = None,
    plain: Annotated[Optional[bool], typer.Option("--plain/--live", help="plain lines or the live view "
                                                  "(default: live view on a terminal)", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="where the traffic wheel and its conversion are cached "
                                                      "(default ~/.cache/goldstream)")] = None,
    http_port: Annotated[int, typer.Option(min=0, max=65535, help="the status page on http://127.0.0.1:PORT/ "
                                           "(0: off; a busy port falls back to a free one)")] = 9108,
) -> None:
    """Stream real OpenSky traffic into Silver, run both seed queries live, show the Gold windows."""
    from goldstream.demo.run import DemoOptions, run_demo

    if data not in ("auto", "opensky", "synthetic"):
        _fail(ConfigError(f"--data {data!r}: use auto, opensky or synthetic"))
    opts = DemoOptions(workdir=workdir, data=data, commit_every_s=commit_every,  # type: ignore[arg-type]
                       duration_s=duration, max_commits=max_commits, cache_dir=cache_dir,
                       live=None if plain is None else not plain, http_port=http_port)
    raise typer.Exit(_guarded(lambda: run_demo(opts)) or 0)


export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Write the configured queries as a job for another engine.")
app.add_typer(export_app, name="export")


@export_app.command("spark")
def export_spark(
    config: ConfigOpt,
    out: Annotated[Optional[Path], typer.Option("--out", help="write the job to this file (default: stdout)")] = None,
    approx_distinct: Annotated[bool, typer.Option("--approx-distinct", help="export distinct counts as Spark's "
                                                  "approx_count_distinct (Spark streams have no exact one)")] = False,
) -> None:
    """Write a self-contained PySpark Structured Streaming job computing the same Gold tables."""
    from goldstream.export import export_spark as export
    from goldstream.export.literal import printable

    def go() -> None:
        job, notes = export(_load_settings(config), str(config), approximate=approx_distinct)
        for note in notes:  # one line each, whatever control characters the configuration held
            typer.echo(f"note: {printable(note)}", err=True)
        if out is None:
            typer.echo(job, nl=False)
        else:
            out.write_text(job)
            typer.echo(f"wrote the Spark job for {printable(str(config))} to {printable(str(out))}", err=True)

    _guarded(go)


def _print_summary(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"summary": rows}))  # one line: logs share stdout
        return
    for r in rows:
        typer.echo(
            f"{r['query']}: {plural(r['commits_read'], 'commit')} read, {plural(r['rows_in'], 'row')} in, "
            + (f"{count(r['rows_filtered'])} filtered out, " if r.get("rows_filtered") else "")
            + f"{count(r['rows_late'])} late, {count(r['rows_null_event_time'])} without event time, "
            f"{plural(r['windows_emitted'], 'window')} emitted -> {r['gold']}; Silver version "
            f"{r['silver_version']}, watermark {r['watermark']}"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
