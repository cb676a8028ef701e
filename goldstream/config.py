"""Configuration: one TOML file, validated by pydantic, every field overridable by env.

Queries are data: window kind/size/slide, watermark delay, keys and the aggregate list
are declared in the file (the seed queries live in `config.example.toml`), so a new
query needs no code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from goldstream.durations import format_duration, parse_duration, to_us
from goldstream.errors import ConfigError
from goldstream.functions.registry import FUNCTION_NAMES, build, check_arguments
from goldstream.identifiers import Identifier, collision_message, first_collision
from goldstream.identity import check_apart

MAX_DURATION = timedelta(days=36500)  # longer is a typo, and overflows a thread's wait


def _bounded(td: timedelta) -> timedelta:
    if td > MAX_DURATION:
        raise ValueError(f"duration {format_duration(td)} is too long: at most {format_duration(MAX_DURATION)}")
    return td


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_bounded),
                     PlainSerializer(format_duration)]


def _positive(td: timedelta, info: ValidationInfo) -> timedelta:
    if td <= timedelta(0):
        raise ValueError(f"{info.field_name} must be positive, got {format_duration(td)}")
    return td


def _not_negative(td: timedelta, info: ValidationInfo) -> timedelta:
    if td < timedelta(0):
        raise ValueError(f"{info.field_name} must not be negative, got {format_duration(td)}")
    return td


# The one rule each duration field states in its type, named in the config's own notation.
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]


def _text(value: str) -> str:
    """A path, URL, host or column name: an empty or padded value is a slip (an empty
    environment variable, a stray space), never a location or a name to act on."""
    if not value.strip():
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError(f"{value!r} has leading or trailing whitespace; remove it")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_text)]
# Counts bounded where every client (Polars, delta-rs, the OS) still takes them.
Count = Annotated[int, Field(ge=1, le=2**31 - 1)]



class _Strict(BaseModel):
    # A field's docstring is its description: docs/reference/configuration.md is made from them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class WindowSpec(_Strict):
    """Event-time window: tumbling (slide = size), sliding (size a multiple of slide), or
    session (per key, ended by `gap` without a row; its length follows the data)."""

    kind: Literal["tumbling", "sliding", "session"]
    """The window's shape."""
    size: Duration | None = None
    """Length of a tumbling or sliding window, whole milliseconds (e.g. `"1m"`)."""
    slide: Duration | None = None
    """How far a sliding window moves; `size` must be a multiple of it."""
    gap: Duration | None = None
    """A session window: a key's session ends once no row of it came for this long."""

    @model_validator(mode="after")
    def _check(self) -> WindowSpec:
        if self.kind == "session":
            return self._check_session()
        if self.gap is not None:
            raise ValueError(f"a {self.kind} window has no gap; gap applies to kind = 'session'")
        if self.size is None:
            raise ValueError(f"a {self.kind} window needs a size, e.g. size = \"1m\"")
        if self.size <= timedelta(0):
            raise ValueError(f"window size must be positive, got {format_duration(self.size)}")
        if self.kind == "tumbling":
            if self.slide is not None and self.slide != self.size:
                raise ValueError("a tumbling window has no slide (or slide equal to size); use kind = 'sliding'")
        else:
            if self.slide is None or self.slide <= timedelta(0):
                shown = "none" if self.slide is None else format_duration(self.slide)
                raise ValueError(f"a sliding window needs a positive slide, got {shown}")
            if to_us(self.size) % to_us(self.slide) != 0:
                raise ValueError(
                    f"window size {format_duration(self.size)} must be a multiple of slide {format_duration(self.slide)}"
                )
        if to_us(self.size) % 1000 != 0 or to_us(self.slide_value) % 1000 != 0:
            raise ValueError("window size and slide must be whole milliseconds")
        return self

    def _check_session(self) -> WindowSpec:
        if self.size is not None or self.slide is not None:
            raise ValueError("a session window has no size or slide: it lasts from its first row to its last "
                             "row plus the gap; set only gap, e.g. window = { kind = \"session\", gap = \"5m\" }")
        if self.gap is None:
            raise ValueError("a session window needs a gap, e.g. window = { kind = \"session\", gap = \"5m\" }: "
                             "a key's session ends once no row of it came for that long")
        if self.gap <= timedelta(0) or to_us(self.gap) % 1000 != 0:
            raise ValueError(f"a session gap must be positive whole milliseconds, got {format_duration(self.gap)}")
        return self

    @property
    def slide_value(self) -> timedelta:
        assert self.size is not None, "session windows have no size"
        return self.size if self.slide is None else self.slide

    @property
    def extent(self) -> str:
        """Its length as a person reads it: "1m", "5m every 1m", "gap 5m"."""
        if self.kind == "session":
            assert self.gap is not None
            return f"gap {format_duration(self.gap)}"
        assert self.size is not None
        every = f" every {format_duration(self.slide_value)}" if self.kind == "sliding" else ""
        return f"{format_duration(self.size)}{every}"


AggFn = Literal[FUNCTION_NAMES]


class AggregateSpec(_Strict):
    """One output column. `fn` picks the function; the other fields are the arguments
    that function takes (each function declares which, and their rules)."""

    name: Identifier
    """The Gold column it fills."""
    fn: AggFn
    """The function (docs/reference/functions.md lists them and their arguments)."""
    where: str | None = None
    """A Spark SQL condition on Silver rows: only rows where it is true count (`FILTER (WHERE ...)`)."""
    column: Text | None = None
    """The Silver column the function reads."""
    equals: bool | float | str | None = None
    """`count_if`: count rows whose `column` equals this value."""
    above: float | None = None
    """`count_if`: count rows whose `column` is strictly above this (NaN is above every bound)."""
    below: float | None = None
    """`count_if`: count rows whose `column` is strictly below this."""
    p: float | None = None
    """`percentile`: the fraction, from 0 to 1."""
    by: Text | None = None
    """`max_by` / `min_by`: the Silver column whose greatest / least value picks the row."""
    numerator: list[str] | None = None
    """`ratio`: aggregates declared before this one, summed (a null counts as 0)."""
    denominator: str | None = None
    """`ratio`: an aggregate declared before this one; zero or null gives null."""

    @model_validator(mode="after")
    def _check(self) -> AggregateSpec:
        check_arguments(self)
        return self


@dataclass(frozen=True)
class GoldColumns:
    """A query's Gold columns by role: the window bounds, the keys, the values."""

    window_start: str
    window_end: str | None
    keys: list[str]
    values: list[str]


class QuerySpec(_Strict):
    """One streaming query: Silver → windowed aggregate → its own Gold table. Defined either
    by `window`, `keys`, `aggregates` (and `filter`), or by `sql`: Spark SQL text, from which
    those are derived (goldstream/sql/), so the engine runs both the same way."""

    name: Identifier
    """The query's name: its Gold table is `<gold_root>/<name>`, its application id `goldstream-<name>`."""
    event_time: Text = "event_timestamp"
    """The Silver timestamp column that places a row in windows."""
    keys: list[Identifier] = Field(default_factory=list)
    """Silver columns to group by, besides the window (a null is a group of its own). A SQL query's keys come from its GROUP BY."""
    window: WindowSpec | None = None
    """`{ kind = "tumbling", size = "1m" }`, `{ kind = "sliding", size = "5m", slide = "1m" }` or `{ kind = "session", gap = "5m" }`. A SQL query's window comes from its GROUP BY."""
    watermark_delay: NonNegativeDuration
    """How far the watermark trails the largest event time seen (Spark's `withWatermark`), whole milliseconds."""
    aggregates: list[AggregateSpec] = Field(default_factory=list)
    """The output columns after the window and keys, in order (a SQL query's come from its SELECT)."""
    sql: str | None = None
    """Spark SQL: `SELECT ... FROM silver ... GROUP BY window(...), keys` (see the query language), instead of `window`, `keys`, `aggregates` and `filter`."""
    ansi: bool = True
    """Spark 4's default ANSI mode: division by zero, overflow and invalid casts stop the query; `false` gives Spark's legacy NULLs instead."""
    filter: str | None = None
    """A Spark SQL condition on Silver rows: rows failing it are not input to this query (they move no watermark, as with Spark's filter before `withWatermark`) and are counted."""
    app_id: Text | None = None
    """The application id of the Delta `txn` offsets in Gold (default `goldstream-<name>`)."""
    gold_path: Text | None = None
    """This query's Gold table, instead of `<gold_root>/<name>`."""
    late_sink: Text | None = None
    """A Delta table that receives the rows dropped as late, with the window they missed (not Spark's behaviour: the export refuses it)."""
    idle_timeout: PositiveDuration | None = None
    """Opt-in, not Spark's behaviour: with no new Silver commit for this long, event time is assumed to go on at wall-clock speed from the last event seen, so the watermark moves and windows close when traffic stops."""
    max_event_time_skew: NonNegativeDuration | None = None
    """Opt-in departure from Spark: rows whose event time is more than this ahead of the time their Silver commit was written are refused (late sink, counted as late) instead of moving the watermark. Overrides `[source] max_event_time_skew`."""
    allow_foreign_gold: bool = False
    """Accept a Gold table that another application id already wrote to (e.g. several streams deliberately appending to one table)."""

    @field_validator("watermark_delay")
    @classmethod
    def _whole_ms(cls, v: timedelta) -> timedelta:
        if to_us(v) % 1000 != 0:
            raise ValueError("watermark_delay must be whole milliseconds")
        return v

    _sql_query: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _from_sql(self) -> QuerySpec:
        """A SQL query: parse it and fill in the window, keys and aggregates it means."""
        if self.sql is None:
            if self.window is None:
                raise ValueError(f"query {self.name!r} needs either `sql` or a `window` with `aggregates`")
            if not self.aggregates:
                raise ValueError(f"query {self.name!r}: `aggregates` must list at least one aggregate")
            return self
        given = [f for f in ("window", "keys", "aggregates", "filter") if f in self.model_fields_set]
        if given:
            raise ValueError(f"query {self.name!r} has `sql` and also {', '.join(given)}: a SQL query says its "
                             "window, keys, aggregates and WHERE in the SQL; remove the other fields")
        from goldstream.sql.errors import SqlError
        from goldstream.sql.plan import plan_fields
        try:
            parsed, window, keys, aggregates = plan_fields(self.sql)
        except SqlError as err:
            raise ValueError(f"query {self.name!r}: sql: {err}") from None
        if "event_time" in self.model_fields_set and self.event_time != parsed.event_time:
            raise ValueError(f"query {self.name!r}: event_time is {self.event_time!r} but the SQL's window is over "
                             f"{parsed.event_time!r}; the watermark and the window must use one column")
        if not any(type(e).__name__ == "Column" and e.name == "__window_start" for _, e in parsed.outputs):
            raise ValueError(f"query {self.name!r}: sql: select window.start (under any name): Gold's rows are "
                             "laid out and identified by their window's start")
        object.__setattr__(self, "event_time", parsed.event_time)
        object.__setattr__(self, "window", WindowSpec(**window))
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "aggregates", [AggregateSpec.model_construct(**a) for a in aggregates])
        self._sql_query = parsed
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A SQL query dumps as its SQL (what it derived is derived again when loaded)."""
        data = handler(self)
        if self.sql is not None:
            for derived in ("window", "keys", "aggregates", "filter"):
                data.pop(derived, None)
        return data

    @property
    def gold_columns(self) -> GoldColumns:
        """Gold's columns by role, as named in Gold (a SQL query's SELECT names)."""
        sql = self._sql_query
        if sql is None:
            return GoldColumns("window_start", "window_end", list(self.keys), [a.name for a in self.aggregates])
        roles = {"__window_start": "start", "__window_end": "end", **{k: "key" for k in sql.key_names}}
        by_role: dict[str, list[str]] = {"start": [], "end": [], "key": [], "value": []}
        for name, expr in sql.outputs:
            ref = expr.name if type(expr).__name__ == "Column" and not expr.table else None
            by_role[roles.get(ref, "value") if ref else "value"].append(name)
        return GoldColumns(by_role["start"][0], (by_role["end"] or [None])[0], by_role["key"], by_role["value"])

    @property
    def sql_query(self) -> Any:
        """The parsed SQL (goldstream.sql.query.SqlQuery), or None for a TOML query."""
        return self._sql_query

    @model_validator(mode="after")
    def _check_names(self) -> QuerySpec:
        if self.sql is not None:
            return self
        outputs = ["window_start", "window_end", *self.keys, *(a.name for a in self.aggregates)]
        if clash := first_collision(outputs):
            raise ValueError(f"query {self.name!r}: output column {collision_message(*clash)}; "
                             "give every key and aggregate its own name")
        declared: set[str] = set()
        for agg in self.aggregates:
            for ref in build(agg).finalized_inputs():
                if ref not in declared:
                    raise ValueError(
                        f"query {self.name!r}: {agg.fn} {agg.name!r} refers to {ref!r}, "
                        "which is not an aggregate declared before it"
                    )
            declared.add(agg.name)
        if self.conditions():  # sqlglot is imported only when a query has SQL in it
            from goldstream.sql.condition import Condition
            from goldstream.sql.errors import SqlError
        for where, text in self.conditions():
            try:
                Condition.parse(text)
            except SqlError as err:
                raise ValueError(f"query {self.name!r}: {where}: {err}") from None
        return self

    def conditions(self) -> list[tuple[str, str]]:
        """Its Spark SQL conditions, each with the field it is in: the query's `filter` and
        every aggregate's `where`."""
        out = [] if self.filter is None else [("filter", self.filter)]
        return out + [(f"aggregate {a.name!r} where", a.where) for a in self.aggregates if a.where is not None]

    @property
    def resolved_app_id(self) -> str:
        return self.app_id or f"goldstream-{self.name}"


StartingVersion = Literal["earliest", "latest"] | int | datetime


_STARTING_HINT = "use 'earliest', 'latest', a version number or an RFC 3339 timestamp"


def _parse_starting_version(v: Any) -> Any:
    """A number is a version, never seconds since 1970: a fraction or a boolean is refused."""
    if isinstance(v, bool) or isinstance(v, float):
        raise ValueError(f"starting_version {v!r} is not a whole version number: {_STARTING_HINT}")
    if isinstance(v, str):
        s = v.strip()
        if s in ("earliest", "latest"):
            return s
        if s.isascii() and s.isdigit():
            return int(s)
        try:
            ts = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"starting_version {v!r}: {_STARTING_HINT}") from None
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=timezone.utc)
    return v


class SourceSpec(_Strict):
    """The Silver table every query reads, and how it is tailed."""

    path: Text = "./data/silver"
    """The Silver Delta table: a local path or an `s3://bucket/prefix` URI."""
    starting_version: Annotated[StartingVersion, BeforeValidator(_parse_starting_version)] = "earliest"
    """Where a query with no Gold yet starts: `"earliest"` (the whole table, then tail), `"latest"` (only commits after start), a version number, or an RFC 3339 timestamp (the first commit at or after it)."""
    poll_interval: PositiveDuration = timedelta(seconds=5)
    """`run` looks for new Silver commits this often."""
    max_commits_per_batch: Count = 100
    """At most this many Silver commits in one batch (a commit is never split)."""
    max_files_per_batch: Count = 1000
    """At most this many data files in one batch (a commit is never split)."""
    max_rows_per_batch: Count = 1_000_000
    """At most this many rows in one batch (a commit is never split): bounds memory during catch-up."""
    max_rows_per_chunk: Count = 1_048_576
    """A batch's rows are read and aggregated in chunks of at most this many rows (whole files, or row ranges of a larger file), so memory follows the chunk, not the commit; 2^20 is delta-rs's row-group size."""
    skip_change_commits: bool = False
    """Skip (and count) commits that remove or rewrite data, as Spark's `skipChangeCommits`; without it such a commit stops the query with an error naming its version."""
    wait_for_table_timeout: NonNegativeDuration = timedelta(0)
    """`run` waits this long for a missing Silver table to appear (`"0s"`: forever), logging every 30 s; `replay` never waits."""
    max_dimension_rows: Count = 10_000_000
    """A dimension table a SQL query joins (`[tables]`) is held in memory, read once per version: one with more rows than this stops the query instead of exhausting memory."""
    max_event_time_skew: NonNegativeDuration | None = None
    """Default for every query's `max_event_time_skew`."""
    future_event_time_warning: PositiveDuration = timedelta(days=1)
    """A commit whose largest event time is this far past the wall clock still moves the watermark (Spark's rule) but is reported: a WARNING, a metric and `status`."""

    @field_validator("starting_version")
    @classmethod
    def _non_negative_version(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 0:
            raise ValueError(f"starting_version must not be negative, got {v}")
        return v



class SinkSpec(_Strict):
    """Where the Gold tables go."""

    gold_root: Text = "./data/gold"
    """A query's Gold table is `<gold_root>/<name>` unless it sets `gold_path`."""
    takeover_after: PositiveDuration = timedelta(minutes=10)
    """`run`: an instance that finds another one owning its Gold tables stands by, and takes over once they have not moved for this long while Silver got new versions."""


# The shortest retention of files that compaction removed: a reader (a dashboard query, a
# Spark or Polars scan, a downstream goldstream query reading this table as its Silver)
# holding a snapshot, or a streaming reader behind by less than this, still finds its files.
MIN_RETENTION = timedelta(days=1)
_MIB = 1 << 20


class MaintenanceSpec(_Strict):
    """Upkeep of every table goldstream writes (sink/maintenance.py): in `run` between
    batches, on this schedule; `goldstream maintain` does one full round now."""

    enabled: bool = True
    """Maintain in `run`, between batches; `goldstream maintain` works either way."""
    compact_every: PositiveDuration = timedelta(hours=1)
    """`run` starts a compaction round this often (the first one this long after start)."""
    vacuum_every: PositiveDuration = timedelta(days=1)
    """`run` starts a vacuum round this often."""
    retention: Duration = timedelta(days=7)
    """Files compaction removed are deleted once older than this (Delta's default; at least 1 day, whole hours)."""
    log_retention: Duration = timedelta(days=30)
    """Commit files older than this and covered by a checkpoint are deleted (Delta's default; at least 1 day, whole hours)."""
    target_file_size: Annotated[int, Field(ge=_MIB, le=1024 * _MIB)] = 64 * _MIB
    """Bytes. Files smaller than this are compacted; a compacted file is at most about this large."""
    checkpoint_every: Count = 100
    """Commits between log checkpoints (Delta's default)."""

    @field_validator("retention", "log_retention")
    @classmethod
    def _long_enough(cls, v: timedelta, info: Any) -> timedelta:
        if v < MIN_RETENTION:
            raise ValueError(
                f"{info.field_name} {format_duration(v)} is shorter than the minimum of "
                f"{format_duration(MIN_RETENTION)}: a reader holding an older snapshot, or a downstream stream "
                "that is behind by less than that, would find its files gone")
        if v.total_seconds() % 3600:
            raise ValueError(f"{info.field_name} must be whole hours, got {format_duration(v)}")
        return v


class StorageSpec(_Strict):
    """Non-secret storage settings; credentials only ever come from the environment."""

    endpoint: Text | None = None
    """An S3-compatible endpoint URL (MinIO, SeaweedFS); default `AWS_ENDPOINT_URL` or AWS."""
    region: Text | None = None
    """The bucket's region; default `AWS_REGION`."""
    allow_http: bool | None = None
    """Allow a plain-http endpoint (set automatically for an `http://` endpoint)."""


class ServerSpec(_Strict):
    """`run`'s HTTP server: the status page, `/healthz`, `/readyz`, `/metrics`."""

    http_port: Annotated[int, Field(ge=0, le=65535)] = 9108
    """Its port; 0 turns the server off."""
    http_host: Text = "0.0.0.0"
    """The interface it listens on: all of them, for probes in a pod; `127.0.0.1` keeps it local."""
    health_stale_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 5.0
    """`/healthz` answers 503 once nothing moved for this many `poll_interval`s."""


class Settings(BaseSettings):
    """The whole file. Env (GOLDSTREAM_<SECTION>__<FIELD>) beats the file."""

    model_config = SettingsConfigDict(
        env_prefix="GOLDSTREAM_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logs are JSON lines on stdout (readable lines on a terminal) from this level up."""
    tables: dict[Identifier, Text] = Field(default_factory=dict)
    """Static Delta tables a SQL query may join, by the name the SQL uses: name -> URI (a local path, relative to the configuration file, or `s3://...`)."""
    source: SourceSpec = SourceSpec()
    """`[source]`: the Silver table and how it is tailed."""
    sink: SinkSpec = SinkSpec()
    """`[sink]`: where the Gold tables go."""
    storage: StorageSpec = StorageSpec()
    """`[storage]`: non-secret object-store settings."""
    server: ServerSpec = ServerSpec()
    """`[server]`: `run`'s status page, probes and metrics."""
    maintenance: MaintenanceSpec = MaintenanceSpec()
    """`[maintenance]`: compaction, checkpoints, log cleanup and vacuum of the tables goldstream writes."""
    queries: list[QuerySpec] = Field(min_length=1)
    """`[[queries]]`: at least one; each writes its own Gold table."""

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        """Query names are distinct (also ignoring case: they name directories), and every
        table the configuration names is apart from every other, compared by identity."""
        if clash := first_collision(q.name for q in self.queries):
            raise ValueError(f"queries: the name {collision_message(*clash)}; query names must be unique")
        check_apart(self.owned_tables())
        for q in self.queries:
            for name in (q.sql_query.tables if q.sql_query is not None else ()):
                if name not in self.tables:
                    known = ", ".join(self.tables) or "none"
                    raise ValueError(f"query {q.name!r} joins table {name!r}, which [tables] does not name "
                                     f"(it names: {known}); add {name} = \"<Delta table URI>\" under [tables]")
        return self

    def owned_tables(self) -> list[tuple[str, str]]:
        """(role, uri) of every table the configuration names: Silver, each Gold and late table."""
        tables = [("the Silver table", self.source.path)]
        for q in self.queries:
            tables.append((f"the Gold table of query {q.name!r}", self.gold_path(q)))
            if q.late_sink:
                tables.append((f"the late sink of query {q.name!r}", q.late_sink))
        return tables

    def max_event_time_skew(self, query: QuerySpec) -> timedelta | None:
        """The query's own skew bound, else the [source] default (None: off, Spark's behaviour)."""
        if query.max_event_time_skew is not None:
            return query.max_event_time_skew
        return self.source.max_event_time_skew

    def gold_path(self, query: QuerySpec) -> str:
        return query.gold_path or f"{self.sink.gold_root.rstrip('/')}/{query.name}"

    def only(self, query: str) -> Settings:
        """These settings with the one query named `query` (`--query`); ConfigError
        naming the configured queries if there is none of that name."""
        chosen = [q for q in self.queries if q.name == query]
        if not chosen:
            known = ", ".join(repr(q.name) for q in self.queries)
            raise ConfigError(f"unknown query {query!r}: the configuration defines {known}; "
                              "pass one of these names to --query")
        return self.model_copy(update={"queries": chosen})


# A field whose name says it may hold a credential, or any field of [storage] (where a
# credential would be put by mistake), never has its value echoed; nor has an unknown
# field, whose value is not needed to fix its name.
_SECRET_NAME = re.compile(r"secret|token|passw|pwd|credential|auth|session|private|signature|cookie|key(?!s$)")
_SECRET_SECTIONS = ("storage",)


def _may_be_secret(e: Any) -> bool:
    loc = [str(p).lower() for p in e["loc"]]
    return (e["type"] == "extra_forbidden" or bool(loc) and loc[0] in _SECRET_SECTIONS
            or any(_SECRET_NAME.search(p) for p in loc))


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"invalid configuration in {path}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (value: {value!r})"
        if _may_be_secret(e):
            shown = " (value not shown: it may be a secret)"
            if isinstance(value, str) and value.strip():
                msg = msg.replace(value, "***")
        env_name = "GOLDSTREAM_" + "__".join(str(p).upper() for p in e["loc"])
        if e["loc"] and all(isinstance(p, str) for p in e["loc"]) and env_name in os.environ:
            shown += f" (set by environment variable {env_name})"  # the file may look right
        if e["type"] == "extra_forbidden":
            msg = "unknown field; check the spelling against config.example.toml"
        lines.append(f"  - {loc}: {msg}{shown}" if loc else f"  - {msg}")
    lines.append("Fix the file or the GOLDSTREAM_* environment variable named by the field.")
    return "\n".join(lines)


def load_settings(path: str | Path) -> Settings:
    """Load and validate `path` plus GOLDSTREAM_* env; raise ConfigError naming each bad field."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise ConfigError(f"configuration file {p} {what}; copy config.example.toml and edit it")

    class FromFile(Settings):
        """Settings read from this one file (env first, then the file): the path is bound
        here rather than in a module global, so loads never see each other's file."""

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=p)

    try:
        import tomllib

        with p.open("rb") as fh:
            tomllib.load(fh)
        return _tables_relative_to(FromFile(), p)
    except ValidationError as err:
        raise ConfigError(_describe(err, p)) from None
    except ValueError as err:  # tomllib.TOMLDecodeError and env JSON errors
        raise ConfigError(f"cannot parse configuration {p}: {err}. Fix the TOML (or the GOLDSTREAM_* "
                          "environment variable) at the place shown") from None
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {p}: {err.strerror or err}") from None


def _tables_relative_to(settings: Settings, config: Path) -> Settings:
    """[tables] local paths are relative to the configuration file, not to the working directory."""
    resolved = {name: uri if "://" in uri or Path(uri).is_absolute() else str((config.parent / uri).resolve())
                for name, uri in settings.tables.items()}
    if resolved == settings.tables:
        return settings
    return settings.model_copy(update={"tables": resolved})


def with_overrides(settings: Settings, silver: str | None = None, gold_root: str | None = None) -> Settings:
    """Apply the CLI's --silver / --gold-root, which beat both the file and the environment,
    and validate the result again (e.g. a Gold root inside the Silver table)."""
    data = settings.model_dump(mode="python")
    if silver is not None:
        data["source"]["path"] = silver
    if gold_root is not None:
        data["sink"]["gold_root"] = gold_root
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, Path("--silver/--gold-root"))) from None
