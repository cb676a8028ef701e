# The part of every exported Spark job that does not depend on the configuration: the
# command line, the Spark session, reading Silver and writing Gold. goldstream never
# imports this file: `goldstream export spark` copies its text into the job and appends
# the configuration's literals (CONFIG_FILE, NOTES), the query functions and the tables
# they are listed in (QUERIES, APP_IDS, GOLDSTREAM_TABLES, GOLDSTREAM_APP_IDS, SILVER_COLUMNS,
# SOURCE_OPTIONS, DEFAULT_TRIGGER), so a job needs pyspark (plus
# deltalake and pyarrow for --io deltalake) and nothing from goldstream.

import argparse
import json
import os
import posixpath
import re
import sys
import urllib.parse
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession  # DataFrame, F: used by the query functions
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import SupportsTriggerAvailableNow
from pyspark.sql.types import StructType

DELTA_PACKAGE = "io.delta:delta-spark_2.13:<version>"  # the Delta Lake release built for the cluster's Spark
SILVER_SOURCE = "goldstream_silver"  # the name --io deltalake registers its Silver reader under


class JobError(Exception):
    """A mistake in how the job was started (the job prints the message and exits 2,
    without a traceback), or a Silver history it must not read (it stops the query that
    reads it, with the message)."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, epilog=about(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--silver", required=True, help="Silver Delta table URI")
    parser.add_argument("--gold-root", required=True, help="Gold tables go to <gold-root>/<query>")
    parser.add_argument("--gold-path", action="append", default=[], metavar="QUERY=URI",
                        help="write query QUERY's Gold table to URI instead (repeatable)")
    parser.add_argument("--checkpoint-root", required=True, help="each query checkpoints in <checkpoint-root>/<query>")
    parser.add_argument("--trigger", default=DEFAULT_TRIGGER,
                        help=f"processing-time=<n>s|ms|m, or available-now (default {DEFAULT_TRIGGER})")
    parser.add_argument("--io", choices=("delta", "deltalake"), default="delta",
                        help="delta: Spark's Delta connector (default); deltalake: the deltalake Python package")
    parser.add_argument("--master", help="Spark master URL (python job.py: default local[*])")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    args = parser.parse_args(argv)
    args.trigger_kwargs = trigger_kwargs(args.trigger)
    for setting in args.conf:
        if "=" not in setting:
            parser.error(f"--conf {setting!r}: expected KEY=VALUE")
    args.gold_paths = {}
    for setting in args.gold_path:
        query, _, uri = setting.partition("=")
        if query not in QUERIES or not uri.strip():
            parser.error(f"--gold-path {setting!r}: expected QUERY=URI, QUERY one of {', '.join(QUERIES)}")
        args.gold_paths[query] = uri
    return args


def about():
    """What the job was made from, and its notes: printed by --help and at start."""
    lines = [f"Queries: {', '.join(QUERIES)}. Exported from the configuration {CONFIG_FILE!r}."]
    if NOTES:
        lines += ["", "Notes for this configuration:", *(f"- {note}" for note in NOTES)]
    return "\n".join(lines)


def trigger_kwargs(trigger):
    """DataStreamWriter.trigger(...) arguments for --trigger."""
    if trigger == "available-now":
        return {"availableNow": True}
    kind, _, every = trigger.partition("=")
    units = {"ms": "milliseconds", "s": "seconds", "m": "minutes"}
    number = every.rstrip("msh")
    unit = units.get(every[len(number):])
    if kind != "processing-time" or not number.isdigit() or unit is None:
        raise JobError(f"--trigger {trigger!r}: use processing-time=<n>ms|s|m (e.g. processing-time=5s) "
                       "or available-now")
    return {"processingTime": f"{number} {unit}"}


def spark_session(args):
    """The session spark-submit made, or (python job.py) a new one on --master or local[*].
    Sessions always run in UTC: window bounds are UTC instants."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers run this interpreter
    builder = SparkSession.builder.appName("goldstream-export")
    if args.master:
        builder = builder.master(args.master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        builder = builder.master("local[*]")
    for setting in args.conf:
        key, _, value = setting.partition("=")
        builder = builder.config(key, value)
    spark = builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


# ---- reading Silver ----

def read_silver(spark, args):
    """Silver as a stream, through Spark's Delta connector or the deltalake reader below."""
    if args.io == "deltalake":
        spark.dataSource.register(SilverSource)
        return (spark.readStream.format(SILVER_SOURCE).options(**SOURCE_OPTIONS)
                .option("columns", json.dumps(SILVER_COLUMNS)).load(args.silver))
    try:
        return spark.readStream.format("delta").options(**SOURCE_OPTIONS).load(args.silver)
    except Exception as err:  # Spark's class-not-found error reaches Python as a Py4JJavaError
        if "[DATA_SOURCE_NOT_FOUND]" not in str(err):
            raise
        raise JobError(
            "Spark's Delta connector is not on this cluster's classpath (data source 'delta' not found). Add "
            f"it with spark-submit --packages {DELTA_PACKAGE}, the Delta Lake release built for Spark "
            f"{spark.version} (https://docs.delta.io/releases), or install the cluster's Delta library; or run "
            "this job with --io deltalake, which reads and writes Delta with the deltalake Python package"
        ) from None


class SilverSource(DataSource):
    """Silver read with the deltalake package, one Silver commit per micro-batch.

    Offsets are positions: 2v is "before version v", 2v + 1 "version v read". A commit
    with rows is one micro-batch, and the next micro-batch is empty, so Spark closes the
    windows the commit's watermark passed before the next commit's rows are checked for
    lateness: the watermark then moves once per Silver commit, whatever the trigger or
    the backlog, and Gold is the same however the job is scheduled. Commits without rows
    (empty, or dataChange = false such as OPTIMIZE) are passed over inside a micro-batch."""

    @classmethod
    def name(cls):
        return SILVER_SOURCE

    def schema(self):
        from deltalake import DeltaTable

        fields = json.loads(DeltaTable(self.options["path"]).schema().to_json())["fields"]
        wanted = json.loads(self.options["columns"])
        found = {f["name"]: f for f in fields}
        missing = [c for c in wanted if c not in found]
        if missing:
            raise JobError(f"Silver table {self.options['path']} has no column {', '.join(missing)}")
        return StructType.fromJson({"type": "struct", "fields": [found[c] for c in wanted]})

    def streamReader(self, schema):
        return SilverReader(dict(self.options), schema)


class SilverFile(InputPartition):
    """One data file of a Silver commit, with its partition values (not in the file)."""

    def __init__(self, path, partition_values):
        super().__init__(path)
        self.path = path
        self.partition_values = partition_values


class SilverReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options, schema):
        self.uri = options["path"]
        self.schema = schema
        self.skip_change_commits = options.get("skipChangeCommits", "false").lower() == "true"
        self.options = options
        self.target = None  # the last version available-now reads
        self.commits = {}  # version -> its data files (None: no such version yet), as read

    def initialOffset(self):
        return {"position": 2 * self.starting_version()}

    def starting_version(self):
        if "startingTimestamp" in self.options:
            return self.first_version_at(datetime.fromisoformat(self.options["startingTimestamp"]))
        start = self.options.get("startingVersion", "0")
        return self.latest_version() + 1 if start == "latest" else int(start)

    def prepareForTriggerAvailableNow(self):
        self.target = self.latest_version()

    def latestOffset(self, start, limit):
        """One step past `start`: a commit's rows, or the empty micro-batch after them.
        Under available-now, never past the version that was latest at start."""
        position = start["position"]
        if position % 2:
            return {"position": position + 1}
        version = position // 2
        while self.readable(version) and self.files(version) == []:
            version += 1  # no rows: nothing to step over
        if self.readable(version):
            return {"position": 2 * version + 1}
        return {"position": 2 * version}

    def readable(self, version):
        return (self.target is None or version <= self.target) and self.files(version) is not None

    def partitions(self, start, end):
        """The data files of the versions whose rows lie between the two positions."""
        first, last = (start["position"] + 1) // 2, (end["position"] - 1) // 2
        return [part for version in range(first, last + 1) for part in self.files(version) or []]

    def commit(self, end):
        for version in [v for v in self.commits if 2 * v < end["position"]]:
            del self.commits[version]

    def read(self, partition):
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [f.name for f in self.schema.fields if f.name not in partition.partition_values]
        fs, path = data_file(self.uri, partition.path)
        table = pq.read_table(path, columns=columns, filesystem=fs)
        for name, value in partition.partition_values.items():
            if name in self.schema.fieldNames():
                table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
        target = pa.schema([pa.field(f.name, arrow_type(f.dataType.simpleString(), f.name)) for f in self.schema.fields])
        yield from table.select(target.names).cast(target).to_batches()

    # the Delta log, read with the table's own storage

    def files(self, version):
        """The data files version `version` added, [] for a commit without new rows (or
        a change commit with skipChangeCommits), None when the version does not exist."""
        if version not in self.commits:
            self.commits[version] = self.read_commit(version)
        return self.commits[version]

    def read_commit(self, version):
        from deltalake.fs import DeltaStorageHandler

        handler = DeltaStorageHandler(self.uri)
        log = f"_delta_log/{version:020d}.json"
        try:
            with handler.open_input_stream(log) as stream:
                actions = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
        except FileNotFoundError:
            if version <= self.latest_version():
                raise JobError(f"Silver version {version} of {self.uri} is gone from its log (log retention): "
                               "start from a later version (startingVersion) with a new checkpoint") from None
            return None
        added = [a["add"] for a in actions if "add" in a and a["add"].get("dataChange", True)]
        changed = [a for a in actions if "remove" in a and a["remove"].get("dataChange", True)]
        changed += [a for a in added if a.get("deletionVector")]
        if changed:
            if self.skip_change_commits:
                return []
            raise JobError(f"Silver version {version} of {self.uri} removes or rewrites data (not an append); "
                           "set [source] skip_change_commits = true to skip such commits, as Spark's "
                           "skipChangeCommits does")
        return [SilverFile(a["path"], a.get("partitionValues") or {}) for a in added]

    def latest_version(self):
        from deltalake import DeltaTable

        return DeltaTable(self.uri).version()

    def first_version_at(self, when):
        """The first version committed at or after `when` (startingTimestamp)."""
        from deltalake import DeltaTable

        history = DeltaTable(self.uri).history()
        after = [h["version"] for h in history if h["timestamp"] >= when.timestamp() * 1000]
        if not after:
            raise JobError(f"Silver table {self.uri} has no commit at or after {when.isoformat()}")
        return min(after)


def data_file(table_uri, path):
    """The filesystem and path of a data file named in the log (URI-encoded, relative to
    the table or absolute)."""
    import pyarrow.fs as pafs
    from deltalake.fs import DeltaStorageHandler

    path = urllib.parse.unquote(path)
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.PyFileSystem(DeltaStorageHandler(table_uri)), path


ARROW_TYPES = {"bigint": "int64", "int": "int32", "smallint": "int16", "tinyint": "int8", "float": "float32",
               "double": "float64", "string": "string", "boolean": "bool_", "date": "date32", "binary": "binary"}


def arrow_type(spark_type, column):
    """The Arrow type Spark expects for a Silver column of this Spark type."""
    import pyarrow as pa

    if spark_type == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if spark_type == "timestamp_ntz":
        return pa.timestamp("us")
    if spark_type.startswith("decimal("):
        precision, scale = spark_type[len("decimal("):-1].split(",")
        return pa.decimal128(int(precision), int(scale))
    if spark_type not in ARROW_TYPES:
        raise JobError(f"Silver column {column} is a {spark_type}, which --io deltalake does not read; "
                       "use --io delta")
    return getattr(pa, ARROW_TYPES[spark_type])()


# ---- writing Gold ----

def gold_uri(args, query):
    """Where the job writes a query's Gold: --gold-path, else <gold-root>/<query>. Never a
    location from the configuration: goldstream's own tables are live."""
    return args.gold_paths.get(query) or f"{args.gold_root.rstrip('/')}/{query}"


def check_gold_targets(args):
    """JobError unless every query's Gold location is its own: not (or inside, or around) one
    of goldstream's live tables, Silver, or another query's table, and not a table that
    goldstream's queries commit to (found by their Delta txn, whatever its spelling)."""
    targets = [(f"the Gold table of query {q!r} ({gold_uri(args, q)})", gold_uri(args, q)) for q in QUERIES]
    others = [(f"goldstream's live {role} ({uri}, from {CONFIG_FILE!r})", uri) for role, uri in GOLDSTREAM_TABLES]
    others.append((f"Silver (--silver {args.silver})", args.silver))
    for i, (role, uri) in enumerate(targets):
        for other_role, other_uri in targets[:i] + others:
            clash = location_clash(uri, other_uri)
            if clash:
                raise JobError(f"{role} {clash} {other_role}: this job would write into it (goldstream's "
                               "tables: every window a second time, and goldstream stops). Give each query a "
                               "location of its own with --gold-root or --gold-path QUERY=URI")
    refuse_goldstream_commits(args)


def refuse_goldstream_commits(args):
    """A target that is a Delta table holding goldstream's commits (its txn application id),
    reached through any spelling (a symlink, a copy): refused. Needs the deltalake package."""
    try:
        from deltalake import DeltaTable
    except ImportError:
        return
    for query in QUERIES:
        uri = gold_uri(args, query)
        try:
            table = DeltaTable(uri)
        except Exception:  # no table there (yet), or not readable as one: nothing of goldstream's
            continue
        owners = [app for app in GOLDSTREAM_APP_IDS if table.transaction_version(app) is not None]
        if owners:
            raise JobError(f"the Gold table of query {query!r} ({uri}) holds commits of goldstream's "
                           f"{', '.join(owners)}: it is goldstream's table, which this job must not write. "
                           "Give the query a location of its own with --gold-root or --gold-path QUERY=URI")


def location_clash(uri, other):
    """"is", "lies inside" or "holds" when two locations are one table or nested, else None."""
    for a in location(uri):
        for b in location(other):
            if a == b:
                return "is"
            if a[0] == b[0] and a[1][:len(b[1])] == b[1]:
                return "lies inside"
            if a[0] == b[0] and b[1][:len(a[1])] == a[1]:
                return "holds"
    return None


def location(uri):
    """Every (store, path parts) a URI may resolve to: s3a:// is s3://, `.`, `..`, doubled
    slashes, file:// and symlinks resolved (a local path with and without following links)."""
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", uri, re.DOTALL)
    if m and m.group(1).lower() != "file":
        scheme = {"s3a": "s3", "s3n": "s3"}.get(m.group(1).lower(), m.group(1).lower())
        bucket, _, key = m.group(2).partition("/")
        return [(f"{scheme}://{bucket}", parts(posixpath.normpath("/" + key)))]
    path = m.group(2) if m else uri
    return [("", parts(os.path.realpath(path))), ("", parts(os.path.realpath(os.path.abspath(path))))]


def parts(path):
    return tuple(p for p in path.split("/") if p and p != ".")


def start_query(gold, query, args):
    writer = (gold.writeStream.outputMode("append").queryName(query).trigger(**args.trigger_kwargs)
              .option("checkpointLocation", f"{args.checkpoint_root.rstrip('/')}/{query}"))
    if args.io == "delta":
        return writer.format("delta").start(gold_uri(args, query))
    return writer.foreachBatch(GoldWriter(gold_uri(args, query), APP_IDS[query])).start()


class GoldWriter:
    """Appends each micro-batch to a Gold table with the deltalake package, exactly once:
    the commit carries a Delta txn (application id, batch id), and a batch whose id the
    table already recorded (a batch Spark replays after a crash) is not written again."""

    def __init__(self, uri, app_id):
        self.uri = uri
        self.app_id = app_id

    def __call__(self, batch, batch_id):
        from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        rows = batch.toArrow()  # always run the batch: it also moves the aggregation's state
        if rows.num_rows == 0:
            return
        txn = CommitProperties(app_transactions=[Transaction(self.app_id, batch_id)])
        try:
            table = DeltaTable(self.uri)
        except TableNotFoundError:
            write_deltalake(self.uri, rows, mode="append", commit_properties=txn)
            return
        done = table.transaction_version(self.app_id)
        if done is None or done < batch_id:
            write_deltalake(table, rows, mode="append", commit_properties=txn)


# ---- the job ----

def start(spark, args):
    """Start every query: each reads Silver itself and has its own checkpoint."""
    return [start_query(build(read_silver(spark, args)), query, args) for query, build in QUERIES.items()]


def run(spark, args):
    """Start every query; return once all have stopped (available-now: when caught up),
    stopping the others as soon as one fails."""
    started = start(spark, args)
    try:
        while any(query.isActive for query in started):
            spark.streams.awaitAnyTermination()
            spark.streams.resetTerminated()
    finally:
        for query in started:
            query.stop()


def main(argv=None, spark=None):
    """The job's entry point: `spark` is an existing session (spark-submit makes its own)."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        print(about(), file=sys.stderr)
        check_gold_targets(args)
        run(spark or spark_session(args), args)
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

