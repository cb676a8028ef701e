"""Configuration: one TOML file, validated by pydantic, every field overridable by env.

Queries are data: window kind/size/slide, watermark delay, keys and the aggregate list
are declared in the file (the seed queries live in `config.example.toml`), so a new
query needs no code. `QuerySpec.fingerprint()` is what Gold remembers of a query, so a
changed definition is refused instead of silently mixed into old output.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from goldstream.errors import ConfigError

_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")


def parse_duration(value: Any) -> timedelta:
    """Parse "5s", "1m30s", "500ms", "2h" (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '5s', '1m' or '500ms', got {value!r}")
    text = value.strip().replace(" ", "")
    pos, total_us = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit us, ms, s, m, h or d (e.g. '5s', '1m30s')"
        )
    return timedelta(microseconds=round(total_us))


def format_duration(td: timedelta) -> str:
    us = int(td / timedelta(microseconds=1))
    for unit in ("d", "h", "m", "s", "ms"):
        if us and us % _UNITS_US[unit] == 0:
            return f"{us // _UNITS_US[unit]}{unit}"
    return f"{us}us"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]


def to_us(td: timedelta) -> int:
    return int(td / timedelta(microseconds=1))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Strict):
    """Event-time window: tumbling (slide = size) or sliding (size a multiple of slide)."""

    kind: Literal["tumbling", "sliding"]
    size: Duration
    slide: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> WindowSpec:
        if self.size <= timedelta(0):
            raise ValueError(f"window size must be positive, got {format_duration(self.size)}")
        if self.kind == "tumbling":
            if self.slide is not None and self.slide != self.size:
                raise ValueError("a tumbling window has no slide (or slide equal to size); use kind = 'sliding'")
        else:
            if self.slide is None or self.slide <= timedelta(0):
                raise ValueError("a sliding window needs a positive slide")
            if to_us(self.size) % to_us(self.slide) != 0:
                raise ValueError(
                    f"window size {format_duration(self.size)} must be a multiple of slide {format_duration(self.slide)}"
                )
        if to_us(self.size) % 1000 != 0 or to_us(self.slide_value) % 1000 != 0:
            raise ValueError("window size and slide must be whole milliseconds")
        return self

    @property
    def slide_value(self) -> timedelta:
        return self.size if self.slide is None else self.slide


AggFn = Literal["count", "count_if", "avg", "sum", "min", "max", "stddev", "ratio"]


class AggregateSpec(_Strict):
    """One output column. `fn` picks the aggregate; the other fields are its arguments."""

    name: str
    fn: AggFn
    column: str | None = None
    equals: bool | float | str | None = None
    above: float | None = None
    below: float | None = None
    numerator: list[str] | None = None
    denominator: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AggregateSpec:
        needs_column = self.fn not in ("count", "ratio")
        if needs_column and not self.column:
            raise ValueError(f"aggregate {self.name!r}: fn = {self.fn!r} needs a 'column'")
        if not needs_column and self.column:
            raise ValueError(f"aggregate {self.name!r}: fn = {self.fn!r} takes no 'column'")
        if self.fn == "count_if":
            has_range = self.above is not None or self.below is not None
            if (self.equals is None) == (not has_range):
                raise ValueError(
                    f"aggregate {self.name!r}: count_if needs either 'equals' or 'above'/'below' (not both)"
                )
        elif self.equals is not None or self.above is not None or self.below is not None:
            raise ValueError(f"aggregate {self.name!r}: 'equals'/'above'/'below' only apply to fn = 'count_if'")
        if self.fn == "ratio":
            if not self.numerator or not self.denominator:
                raise ValueError(f"aggregate {self.name!r}: ratio needs 'numerator' (a list) and 'denominator'")
        elif self.numerator is not None or self.denominator is not None:
            raise ValueError(f"aggregate {self.name!r}: 'numerator'/'denominator' only apply to fn = 'ratio'")
        return self


class QuerySpec(_Strict):
    """One streaming query: Silver → windowed aggregate → its own Gold table."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
    event_time: str = "event_timestamp"
    keys: list[str] = Field(default_factory=list)
    window: WindowSpec
    watermark_delay: Duration
    aggregates: list[AggregateSpec] = Field(min_length=1)
    app_id: str | None = None
    gold_path: str | None = None
    late_sink: str | None = None
    idle_timeout: Duration | None = None

    @field_validator("watermark_delay")
    @classmethod
    def _non_negative(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError(f"watermark_delay must not be negative, got {v}")
        if to_us(v) % 1000 != 0:
            raise ValueError("watermark_delay must be whole milliseconds")
        return v

    @model_validator(mode="after")
    def _check_names(self) -> QuerySpec:
        names = ["window_start", "window_end", *self.keys]
        for agg in self.aggregates:
            if agg.name in names:
                raise ValueError(f"query {self.name!r}: output column {agg.name!r} is declared twice")
            names.append(agg.name)
        declared: set[str] = set()
        for agg in self.aggregates:
            if agg.fn == "ratio":
                for ref in [*(agg.numerator or []), agg.denominator]:
                    if ref not in declared:
                        raise ValueError(
                            f"query {self.name!r}: ratio {agg.name!r} refers to {ref!r}, "
                            "which is not an aggregate declared before it"
                        )
            declared.add(agg.name)
        return self

    @property
    def resolved_app_id(self) -> str:
        return self.app_id or f"goldstream-{self.name}"

    def input_columns(self) -> list[str]:
        """Silver columns this query reads (and nothing else is read from storage)."""
        cols = [self.event_time, *self.keys]
        cols += [a.column for a in self.aggregates if a.column]
        return list(dict.fromkeys(cols))

    def definition(self) -> dict[str, Any]:
        """What defines the query's output; a change to any of it changes the Gold rows."""
        return {
            "event_time": self.event_time,
            "keys": list(self.keys),
            "window": {
                "kind": self.window.kind,
                "size_us": to_us(self.window.size),
                "slide_us": to_us(self.window.slide_value),
            },
            "watermark_delay_us": to_us(self.watermark_delay),
            "aggregates": [a.model_dump(exclude_none=True) for a in self.aggregates],
        }

    def fingerprint(self) -> int:
        """A 62-bit hash of `definition()`, small enough for a Delta `txn` version."""
        canon = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big") >> 2


StartingVersion = Literal["earliest", "latest"] | int | datetime


def _parse_starting_version(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        if s in ("earliest", "latest"):
            return s
        if s.isdigit():
            return int(s)
        try:
            ts = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"starting_version {v!r}: use 'earliest', 'latest', a version number or an RFC 3339 timestamp"
            ) from None
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=timezone.utc)
    return v


class SourceSpec(_Strict):
    path: str = "./data/silver"
    starting_version: Annotated[StartingVersion, BeforeValidator(_parse_starting_version)] = "earliest"
    poll_interval: Duration = timedelta(seconds=5)
    max_commits_per_batch: Annotated[int, Field(ge=1)] = 100
    max_files_per_batch: Annotated[int, Field(ge=1)] = 1000
    max_rows_per_batch: Annotated[int, Field(ge=1)] = 5_000_000
    skip_change_commits: bool = False

    @field_validator("starting_version")
    @classmethod
    def _non_negative_version(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 0:
            raise ValueError("starting_version must not be negative")
        return v


class SinkSpec(_Strict):
    gold_root: str = "./data/gold"


class StorageSpec(_Strict):
    """Non-secret storage settings; credentials only ever come from the environment."""

    endpoint: str | None = None
    region: str | None = None
    allow_http: bool | None = None


class ServerSpec(_Strict):
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9108
    health_stale_factor: Annotated[float, Field(gt=1)] = 5.0


class Settings(BaseSettings):
    """The whole file. Env (GOLDSTREAM_<SECTION>__<FIELD>) beats the file."""

    model_config = SettingsConfigDict(
        env_prefix="GOLDSTREAM_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source: SourceSpec = SourceSpec()
    sink: SinkSpec = SinkSpec()
    storage: StorageSpec = StorageSpec()
    server: ServerSpec = ServerSpec()
    queries: list[QuerySpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        seen: dict[str, str] = {}
        for q in self.queries:
            if q.name in seen:
                raise ValueError(f"queries: the name {q.name!r} is used twice; query names must be unique")
            seen[q.name] = q.name
        paths: dict[str, str] = {}
        for q in self.queries:
            p = self.gold_path(q).rstrip("/")
            if p in paths:
                raise ValueError(f"queries {paths[p]!r} and {q.name!r} write the same Gold table {p}; give each its own")
            paths[p] = q.name
        return self

    def gold_path(self, query: QuerySpec) -> str:
        return query.gold_path or f"{self.sink.gold_root.rstrip('/')}/{query.name}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _TOML_PATH is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_TOML_PATH))
        return tuple(sources)


_TOML_PATH: Path | None = None


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"invalid configuration in {path}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (value: {value!r})"
        if e["type"] == "extra_forbidden":
            msg = "unknown field; check the spelling against config.example.toml"
        lines.append(f"  - {loc}: {msg}{shown}")
    lines.append("Fix the file or the GOLDSTREAM_* environment variable named by the field.")
    return "\n".join(lines)


def load_settings(path: str | Path) -> Settings:
    """Load and validate `path` plus GOLDSTREAM_* env; raise ConfigError naming each bad field."""
    global _TOML_PATH
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file {p} does not exist; copy config.example.toml and edit it")
    _TOML_PATH = p
    try:
        import tomllib

        with p.open("rb") as fh:
            tomllib.load(fh)
        return Settings()
    except ValidationError as err:
        raise ConfigError(_describe(err, p)) from None
    except ValueError as err:  # tomllib.TOMLDecodeError and env JSON errors
        raise ConfigError(f"cannot parse configuration {p}: {err}") from None
    finally:
        _TOML_PATH = None


def with_overrides(settings: Settings, silver: str | None = None, gold_root: str | None = None) -> Settings:
    """Apply the CLI's --silver / --gold-root, which beat both the file and the environment."""
    source = settings.source.model_copy(update={"path": silver}) if silver else settings.source
    sink = settings.sink.model_copy(update={"gold_root": gold_root}) if gold_root else settings.sink
    return settings.model_copy(update={"source": source, "sink": sink})
