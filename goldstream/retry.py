"""Storage failures: transient or permanent, what they mean, and how long to wait.

Three clients talk to S3 for goldstream and each reports the same answer differently:
s3fs (the Silver log) raises Python errors translated from botocore (`PermissionError`,
`FileNotFoundError`, `OSError`) with the botocore `ClientError` as `__cause__`, or
botocore's own connection/timeout errors; delta-rs (Silver metadata, Gold commits) and
Polars (Parquet reads) raise `OSError`/`ConnectionRefusedError`/`TimeoutError` whose text
quotes object_store's error chain, the HTTP status and S3's XML error body. So
`classify()` looks at the whole exception chain: types first, then botocore's error code
and HTTP status, then the S3 error code or status quoted in the text.

- **permanent**: S3 answered and no retry changes the answer — the credentials were
  rejected (InvalidAccessKeyId, SignatureDoesNotMatch, expired token), access was denied
  (403), the bucket does not exist. The operator must act, so goldstream stops at once.
- **transient**: no answer (connection refused or reset, timeouts, DNS) or S3 said "try
  again" (5xx, InternalError, SlowDown, RequestTimeout). goldstream waits with
  exponential backoff and jitter (`Backoff`) and rebuilds its state from Gold (see
  `runner.supervisor`), so a retry never commits a partial batch.
- anything else (a missing key, a corrupt file, a Delta conflict) is not a storage
  failure here: the caller that knows what it was reading reports it.

Messages never carry a secret: they are built from error codes, S3's messages and
request URLs, and `redact()` masks the secret values of the environment besides.
"""

from __future__ import annotations

import errno
import random
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from goldstream.errors import GoldstreamError, StorageAccessError, StorageFullError, TransientStorageError
from goldstream.secrets import redact

Kind = Literal["transient", "permanent"]

# S3 error codes (botocore's `Error.Code`, or `<Code>` in the XML body delta-rs and Polars quote)
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "AuthorizationHeaderMalformed", "InvalidClientTokenId", "UnrecognizedClientException",
    "MissingAuthenticationToken", "CredentialsNotSupported",
})
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidPayer", "Forbidden", "403"})
_BUCKET_CODES = frozenset({"NoSuchBucket", "InvalidBucketName", "PermanentRedirect"})
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeoutException",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "OperationAborted", "Busy",
    "500", "502", "503", "504",
})
_CODE_IN_TEXT = re.compile(r"<Code>([A-Za-z0-9.]+)</Code>")
_MESSAGE_IN_TEXT = re.compile(r"<Message>([^<]*)</Message>")
_URL_IN_TEXT = re.compile(r"\b(GET|PUT|HEAD|POST|DELETE) (https?://[^\s'\"?]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Said by the text of delta-rs / Polars / aiohttp errors (lower-cased; "retry_timeout",
# which every object_store retry message quotes, is removed first).
_PERMANENT_TEXT = ("lacked the necessary privileges", "403 forbidden", "access denied", "certificate verify failed",
                   "invalid certificate", "no credentials", "unable to locate credentials")
_TRANSIENT_TEXT = (
    "connection refused", "connection reset", "connection aborted", "connection closed", "broken pipe",
    "timed out", "timeout", "error sending request", "could not connect", "cannot connect",
    "server disconnected", "incomplete read", "incompleteread", "temporarily unavailable", "dns error", "failed to lookup address",
    "name or service not known", "500 internal server error", "502 bad gateway", "503 service unavailable",
    "504 gateway timeout", "service unavailable", "slow down", "please reduce your request rate",
    "error decoding response body", "unexpected eof", "end of file before message length reached",
)


def _chain(err: BaseException) -> list[BaseException]:
    """`err` and its causes/contexts, outermost first (each once)."""
    out: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _botocore_answer(err: BaseException) -> tuple[str | None, int | None]:
    """(S3 error code, HTTP status) of a botocore ClientError, else (None, None)."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None, None
    code = (response.get("Error") or {}).get("Code")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return (str(code) if code is not None else None), (int(status) if status else None)


def _kind_of_code(code: str | None, status: int | None) -> Kind | None:
    if code in _CREDENTIAL_CODES or code in _DENIED_CODES or code in _BUCKET_CODES or status == 403:
        return "permanent"
    if code in _TRANSIENT_CODES or (status is not None and status >= 500) or status == 429:
        return "transient"
    return None


def error_code(err: BaseException) -> str | None:
    """The S3 error code behind `err` (botocore's, or quoted in the text), if any."""
    for e in _chain(err):
        code, status = _botocore_answer(e)
        if code:
            return code
        m = _CODE_IN_TEXT.search(str(e))
        if m:
            return m.group(1)
        if status == 403:
            return "403"
    return None


def classify(err: BaseException) -> Kind | None:
    """'permanent', 'transient', or None when `err` is not a storage failure."""
    if isinstance(err, TransientStorageError):
        return "transient"
    if isinstance(err, StorageAccessError):
        return "permanent"
    if isinstance(err, StorageFullError):
        return "permanent"
    if isinstance(err, GoldstreamError):
        return None  # already explained by the code that raised it
    if _is_schema_error(err):
        return None  # a type or schema problem (its text may quote a column named "timeout_ms")
    if is_full(err):
        return "permanent"
    chain = _chain(err)
    verdict: Kind | None = None
    for e in chain:  # S3's own answer decides first: it names what happened
        code, status = _botocore_answer(e)
        text = str(e)
        m = _CODE_IN_TEXT.search(text)
        kind = _kind_of_code(code or (m.group(1) if m else None), status)
        if kind == "permanent":
            return kind
        verdict = verdict or kind
    if verdict:
        return verdict
    if any(isinstance(e, PermissionError) for e in chain):
        return "permanent"
    for e in chain:
        if _is_botocore(e, ("NoCredentialsError", "PartialCredentialsError", "SSLError")):
            return "permanent"
    if any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
        return "transient"
    for e in chain:
        if _is_botocore(e, ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                            "ConnectionClosedError", "HTTPClientError", "ConnectionError",
                            "ResponseStreamingError", "IncompleteReadError")):
            return "transient"
        if type(e).__module__.startswith("aiohttp") and "Client" in type(e).__name__:
            return "transient"
    if any(isinstance(e, FileNotFoundError) for e in chain):
        return None  # a missing key: the caller knows whether that is normal (NoSuchBucket is caught above)
    text = " ".join(str(e) for e in chain).lower().replace("retry_timeout", "")
    if any(t in text for t in _PERMANENT_TEXT):
        return "permanent"
    if any(t in text for t in _TRANSIENT_TEXT):
        return "transient"
    return None


def _is_schema_error(err: BaseException) -> bool:
    """Polars' schema and type errors: the data does not fit the plan, whatever the storage."""
    import polars.exceptions as pe

    kinds = (pe.SchemaError, pe.SchemaFieldNotFoundError, pe.ColumnNotFoundError, pe.InvalidOperationError)
    return any(isinstance(e, kinds) for e in _chain(err))


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file too large", "os error 28", "os error 122")


def is_full(err: BaseException) -> bool:
    """Whether a write failed for lack of space: an OSError with ENOSPC/EDQUOT/EFBIG, or a
    Rust client (delta-rs, Polars) quoting it in its message."""
    chain = _chain(err)
    if any(isinstance(e, OSError) and e.errno in _FULL_ERRNOS for e in chain):
        return True
    text = " ".join(str(e) for e in chain).lower()
    return any(t in text for t in _FULL_TEXT)


def _is_botocore(err: BaseException, names: tuple[str, ...]) -> bool:
    return type(err).__module__.startswith("botocore") and any(
        c.__name__ in names for c in type(err).__mro__)


def _first_and_last_line(text: str) -> str:
    """object_store errors are a chain of lines, the root cause last: keep both ends."""
    lines = [ln.strip().lstrip("↳").strip() for ln in _ANSI.sub("", text).splitlines()]
    lines = [ln for ln in lines if ln and ln != "Caused by:"]
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def cause(err: BaseException, limit: int = 400) -> str:
    """A one-line account of a storage failure: S3's error code and message and the
    request, or the ends of the client's error chain — never a whole multi-line dump."""
    chain = _chain(err)
    code = error_code(err)
    message: str | None = None
    request: str | None = None
    for e in chain:
        text = _ANSI.sub("", str(e))
        if message is None:
            if _botocore_answer(e)[0]:
                message = str((getattr(e, "response", {}).get("Error") or {}).get("Message") or "").strip() or None
            elif m := _MESSAGE_IN_TEXT.search(text):
                message = m.group(1).strip() or None
        if request is None and (r := _URL_IN_TEXT.search(text)):
            request = f"{r.group(1)} {r.group(2)}"
    if code:
        out = code + (f": {message}" if message else "") + (f" ({request})" if request else "")
    else:  # no answer from S3: the client's own words, the root cause (its last line) first
        text = _first_and_last_line(str(chain[0]))
        out = f"{type(chain[0]).__name__}: {text.rsplit(' ... ', 1)[-1] if request else text}"
        root = chain[-1]
        if root is not chain[0]:
            out += f" (caused by {type(root).__name__}: {_first_and_last_line(str(root))})"
        if request:
            out += f" ({request})"
    out = " ".join(out.split())
    return redact(out if len(out) <= limit else out[: limit - 3] + "...")


def _advice(code: str | None) -> str:
    if code in _CREDENTIAL_CODES:
        return ("S3 rejected the credentials. Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                "AWS_SESSION_TOKEN for temporary credentials) in goldstream's environment, and that "
                "AWS_ENDPOINT_URL / [storage] endpoint points at the store that issued them.")
    if code in _BUCKET_CODES:
        return ("The bucket does not exist at this endpoint. Create it, or fix the URI's bucket name and "
                "AWS_ENDPOINT_URL / [storage] endpoint / AWS_REGION.")
    if code is None:  # a local path (PermissionError), or a store that gave no code
        return ("Access was denied: check that goldstream may read Silver and write Gold and the late "
                "sinks there (file permissions, or the S3 policy of these credentials).")
    return ("Access was denied. Grant these credentials s3:ListBucket on the bucket and s3:GetObject "
            "(Silver), s3:GetObject and s3:PutObject (Gold, late sinks) on the prefixes, or use "
            "credentials that have them.")


def storage_failure(err: BaseException, where: str) -> GoldstreamError | None:
    """The GoldstreamError a storage failure becomes (StorageFullError for a write that
    found no space, StorageAccessError for another permanent one, TransientStorageError
    otherwise), or None if `err` is not one. `where` names the
    URI or tables involved."""
    if isinstance(err, (StorageAccessError, StorageFullError, TransientStorageError)):
        return err
    if is_full(err):
        return StorageFullError(
            f"no space left on the storage of {where}: {cause(err).rstrip('.')}. Free space or grow the "
            "volume (or point gold_root / late_sink at one with room), then run again: nothing partial was "
            "committed, and every query resumes from its Gold offsets.")
    kind = classify(err)
    if kind is None:
        return None
    if kind == "permanent":
        return StorageAccessError(
            f"storage refused access to {where}: {cause(err).rstrip('.')}. {_advice(error_code(err))} "
            "Nothing partial was committed.")
    return TransientStorageError(f"storage unavailable for {where}: {cause(err)}")


@dataclass
class Backoff:
    """Exponential backoff with jitter between attempts of one failing operation.

    The n-th delay is drawn from [d/2, d] with d = min(max_s, initial_s * factor**n): the
    jitter keeps several instances (or queries) from hammering a recovering store in step,
    the lower half keeps a minimum pause. `give_up_after_s` bounds how long one run of
    consecutive failures is retried (None: forever, the daemon's choice)."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    give_up_after_s: float | None = None
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    first_failure: float | None = None

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        now = time.monotonic()
        if self.first_failure is None:
            self.first_failure = now
        if self.give_up_after_s is not None and now - self.first_failure >= self.give_up_after_s:
            return None
        d = min(self.max_s, self.initial_s * self.factor ** self.attempt)
        self.attempt += 1
        delay = d / 2 + self.rng.uniform(0, d / 2)
        if self.give_up_after_s is not None:  # the last wait ends at the deadline, not beyond
            delay = min(delay, max(0.0, self.first_failure + self.give_up_after_s - now))
        return delay

    @property
    def failing_for_s(self) -> float:
        return 0.0 if self.first_failure is None else time.monotonic() - self.first_failure

    def reset(self) -> None:
        self.attempt = 0
        self.first_failure = None


@dataclass(frozen=True)
class RetryPolicy:
    """How a Pipeline treats transient storage failures. The daemon retries forever;
    replay and status give up after `give_up_after_s` of consecutive failures (exit 4)."""

    give_up_after_s: float | None = 120.0
    initial_s: float = 0.5
    max_s: float = 10.0

    def backoff(self) -> Backoff:
        return Backoff(initial_s=self.initial_s, max_s=self.max_s, give_up_after_s=self.give_up_after_s)


FOREVER = RetryPolicy(give_up_after_s=None)
