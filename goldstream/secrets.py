"""Secret values never leave the process: every line goldstream writes passes `redact()`.

Credentials reach goldstream only through the environment (the AWS_* variables that
delta-rs, Polars and s3fs read), yet client libraries can still echo them: botocore's
DEBUG lines print request headers with the session token and the access key id, an
error can quote a signed URL. Masking at the one logging handler (and in the CLI's
error output) covers every logger and level, including those of libraries we do not
control, instead of trusting each call site.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

MASK = "***"
# Environment variables whose value is a credential, by name.
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY", re.I)
_MIN_LENGTH = 4  # shorter values ("1", "abc") would mask ordinary text


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """Every credential value in `env` (default: this process's environment), in the forms a
    client or a JSON log line prints it (raw, URL-encoded, JSON-escaped), longest first so no partial mask is left."""
    env = os.environ if env is None else env
    values: set[str] = set()
    for name, value in env.items():
        if _SECRET_NAME.search(name) and value and len(value.strip()) >= _MIN_LENGTH:
            values.update({value, quote(value, safe=""), quote(value, safe="/"), json.dumps(value)[1:-1]})
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every credential value of the environment masked."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text


TOKEN_ENV = "GOLDSTREAM_HTTP_TOKEN"


def bearer_token() -> str | None:
    """The token that closes `/api/*`: from the environment only, like every secret (a
    config file is read by more people than the pod's secrets), and never logged. Set but
    blank (an empty Kubernetes secret, a stray space) is a ConfigError: taking it as "no
    token" would leave `/api/*` open while the operator believes it closed."""
    from goldstream.errors import ConfigError

    value = os.environ.get(TOKEN_ENV)
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(f"{TOKEN_ENV} is set but blank (empty or only whitespace), which would leave the "
                          "status page's /api/* open: set it to the bearer token, or unset it to serve "
                          "/api/* without one")
    return value.strip()
