"""Packaging and deployment artefacts: Dockerfile, .dockerignore, deploy/kubernetes/.

No Docker engine or cluster is needed: the Dockerfile is linted with hadolint, the
manifests are validated offline against bundled Kubernetes schemas, and the builder
stage's install commands are replayed in a fresh venv (marked slow).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testsupport.process import goldstream

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK = REPO / "requirements.lock"
MEMORY_RESULTS = REPO / "benchmarks" / "results" / "memory.json"
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
EXAMPLE_SECRET = K8S / "secret.example.yaml"
MANIFESTS = ["configmap.yaml", "deployment.yaml", "service.yaml", "cronjob-replay.yaml"]
ALL_YAML = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
HTTP_PORT = 9108
AWS_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SERVICE_ACCOUNT = "goldstream"

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _missing_tool(what: str) -> None:
    """Fail in CI (where the dev extras must be installed), skip locally."""
    msg = f"{what} is not available (install the 'dev' extras)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


# --------------------------------------------------------------------------- Dockerfile parsing


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; handles comments and backslash continuations."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    if buf.strip():
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(text):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _stage_name(stage: list[tuple[str, str]]) -> str | None:
    m = re.search(r"\s+AS\s+(\S+)\s*$", stage[0][1], re.IGNORECASE)
    return m.group(1) if m else None


def _strip_flags(args: str) -> tuple[list[str], list[str]]:
    """Split COPY/HEALTHCHECK-style args into (--flags, rest)."""
    tokens = shlex.split(args)
    flags = [t for t in tokens if t.startswith("--")]
    rest = [t for t in tokens if not t.startswith("--")]
    return flags, rest


@pytest.fixture(scope="module")
def dockerfile() -> str:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    st = _stages(dockerfile)
    assert len(st) >= 2, "Dockerfile must be multi-stage (builder + runtime)"
    return st


# --------------------------------------------------------------------------- (a) hadolint


def _hadolint() -> str | None:
    exe = Path(sys.executable).parent / "hadolint"
    if exe.is_file() and os.access(exe, os.X_OK):
        return str(exe)
    return shutil.which("hadolint")


def test_hadolint_passes() -> None:
    exe = _hadolint()
    if exe is None:
        _missing_tool("hadolint")
    proc = subprocess.run(
        [exe, "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, f"hadolint:\n{proc.stdout}\n{proc.stderr}"


# --------------------------------------------------------------------------- (b) k8s schemas


def _load_yaml_docs(path: Path) -> list[dict]:
    yaml = pytest.importorskip("yaml")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_docs() -> dict[str, list[dict]]:
    return {p.name: _load_yaml_docs(p) for p in sorted(K8S.glob("*.yaml"))}


def test_kustomization_lists_manifests_but_not_example_secret() -> None:
    (kust,) = _load_yaml_docs(K8S / "kustomization.yaml")
    assert kust["kind"] == "Kustomization"
    resources = kust.get("resources", [])
    assert EXAMPLE_SECRET.name not in resources
    # every manifest is deployed (except the example secret), including the required ones
    assert sorted(resources) == sorted(set(ALL_YAML) - {EXAMPLE_SECRET.name})
    assert set(MANIFESTS) <= set(resources)
    for r in resources:
        assert (K8S / r).is_file(), r


@pytest.mark.parametrize("name", ALL_YAML)
def test_manifest_validates_offline(name: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        _missing_tool("kubernetes-validate")
    version = kubernetes_validate.latest_version()
    docs = _load_yaml_docs(K8S / name)
    assert docs, f"{name} is empty"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{name}: {doc.get('kind')} invalid for k8s {version} at {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:  # a typo'd kind/apiVersion
            pytest.fail(f"{name}: {e.message}")


# --------------------------------------------------------------------------- (c) structure


def _one(docs: dict[str, list[dict]], file: str, kind: str) -> dict:
    found = [d for d in docs[file] if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in {file}"
    return found[0]


def _check_pod_spec(pod: dict, *, where: str, config_map: str) -> dict:
    """Security context, volumes and credentials common to the Deployment and the CronJob."""
    psc = pod.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, where
    assert psc.get("runAsUser") == 10001, where
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})
    assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
    assert sc.get("runAsUser", psc.get("runAsUser")) == 10001, where
    assert sc.get("readOnlyRootFilesystem") is True, where
    assert sc.get("allowPrivilegeEscalation") is False, where
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
    assert sc.get("privileged", False) is False, where

    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    assert "/tmp" in mounts, f"{where}: /tmp must be writable (read-only root fs)"
    assert "emptyDir" in vols[mounts["/tmp"]["name"]], f"{where}: /tmp must be an emptyDir"
    assert "/etc/goldstream" in mounts, where
    assert vols[mounts["/etc/goldstream"]["name"]]["configMap"]["name"] == config_map, where

    # Keys are optional: with an IAM role bound to the ServiceAccount there is no Secret,
    # and a mandatory reference would keep the pod from starting.
    assert pod.get("serviceAccountName") == SERVICE_ACCOUNT, f"{where}: serviceAccountName for IAM roles"
    env = {e["name"]: e for e in c.get("env", [])}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert key in env, f"{where}: {key} missing"
        assert "value" not in env[key], f"{where}: {key} must not be a literal"
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "goldstream-aws", "key": key, "optional": True}, where
    assert env.get("AWS_REGION", {}).get("value"), f"{where}: AWS_REGION as plain env"
    # The mounted file is the whole configuration: no GOLDSTREAM_* override redirects a path.
    assert not [n for n in env if n.startswith("GOLDSTREAM_")], where
    return c


def _deployment_container() -> dict:
    (c,) = _one(_all_docs(), "deployment.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def _cronjob_container() -> dict:
    cj = _one(_all_docs(), "cronjob-replay.yaml", "CronJob")
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return c


def test_deployment_structure() -> None:
    docs = _all_docs()
    dep = _one(docs, "deployment.yaml", "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate", "a query has exactly one writer"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    c = _check_pod_spec(pod, where="deployment", config_map="goldstream-config")
    assert c["args"][:3] == ["run", "--config", "/etc/goldstream/config.toml"]

    ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
    assert ports.get("metrics") == HTTP_PORT

    def probe_port(probe: dict) -> int:
        port = probe["httpGet"]["port"]
        return ports[port] if isinstance(port, str) else port

    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probe_port(c["livenessProbe"]) == HTTP_PORT
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe_port(c["readinessProbe"]) == HTTP_PORT
    assert str(c["resources"]["limits"]["cpu"]) == "2"

    assert spec["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    # The Service must select the Deployment's pods.
    svc = _one(docs, "service.yaml", "Service")
    labels = spec["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    (sp,) = svc["spec"]["ports"]
    assert sp["port"] == HTTP_PORT and sp["targetPort"] in ("metrics", HTTP_PORT)


def test_one_prometheus_scrape_target() -> None:
    """Annotating both the pod and the Service makes Prometheus scrape one process twice
    (pod and endpoints discovery), doubling every counter summed over targets."""
    scraped = [
        (file, path) for file, docs in _all_docs().items() for doc in docs
        for path, value in _walk(doc) if path.endswith(".annotations.prometheus.io/scrape") and value == "true"
    ]
    assert scraped == [("deployment.yaml", ".spec.template.metadata.annotations.prometheus.io/scrape")]


def test_service_account_for_iam_roles() -> None:
    sa = _one(_all_docs(), "serviceaccount.yaml", "ServiceAccount")
    assert sa["metadata"]["name"] == SERVICE_ACCOUNT
    assert sa.get("automountServiceAccountToken") is False, "goldstream never calls the Kubernetes API"


def test_cronjob_replay_structure() -> None:
    cj = _one(_all_docs(), "cronjob-replay.yaml", "CronJob")
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = _check_pod_spec(pod, where="cronjob", config_map="goldstream-replay-config")
    assert c["args"][:3] == ["replay", "--config", "/etc/goldstream/config.toml"]


def test_cronjob_maintain_structure() -> None:
    """The tables of the replay CronJob have no daemon to maintain them: a maintenance
    CronJob runs `maintain` on the same configuration, never two at once."""
    cj = _one(_all_docs(), "cronjob-maintain.yaml", "CronJob")
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = _check_pod_spec(pod, where="maintenance cronjob", config_map="goldstream-replay-config")
    assert c["args"] == ["maintain", "--config", "/etc/goldstream/config.toml"]


def _configmap_toml(file: str) -> str:
    (cm,) = _load_yaml_docs(K8S / file)
    assert cm["kind"] == "ConfigMap"
    return cm["data"]["config.toml"]


def test_configmap_holds_the_seed_queries() -> None:
    import tomllib

    text = _configmap_toml("configmap.yaml")
    cfg = tomllib.loads(text)
    example = tomllib.loads((REPO / "config.example.toml").read_text())
    assert cfg["source"]["path"] == "s3://my-bucket/silver"
    assert cfg["sink"]["gold_root"] == "s3://my-bucket/gold"
    assert cfg["server"]["http_port"] == HTTP_PORT
    assert cfg["queries"] == example["queries"]
    assert "aws_secret_access_key" not in text.lower() and "aws_access_key_id" not in text.lower()


def _configmap_settings(file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The settings a pod mounting the ConfigMap in `file` runs with (no GOLDSTREAM_* env)."""
    from goldstream.config import load_settings

    for name in [n for n in os.environ if n.upper().startswith("GOLDSTREAM_")]:
        monkeypatch.delenv(name)
    path = tmp_path / file.replace(".yaml", ".toml")
    path.write_text(_configmap_toml(file))
    return load_settings(path)


def _tables_written(settings) -> set[str]:  # type: ignore[no-untyped-def]
    """Every Delta table goldstream writes with `settings`: each query's Gold table
    (gold_root/<name> or its gold_path) and its late sink, if any."""
    tables = {settings.gold_path(q) for q in settings.queries} | {q.late_sink for q in settings.queries if q.late_sink}
    return {t.rstrip("/") for t in tables}


def test_replay_cronjob_writes_none_of_the_daemons_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Gold table has one writer: the nightly replay writing one of the Deployment's tables
    (through gold_root, a query's gold_path or its late_sink) would fence the daemon or mix
    its rows in. Its own ConfigMap must redirect every table, same queries otherwise."""
    import tomllib

    daemon = _tables_written(_configmap_settings("configmap.yaml", tmp_path, monkeypatch))
    replay = _tables_written(_configmap_settings("configmap-replay.yaml", tmp_path, monkeypatch))
    assert daemon and len(replay) == len(daemon)
    for r in replay:
        for d in daemon:
            assert not (r == d or r.startswith(d + "/") or d.startswith(r + "/")), f"replay writes {r}, daemon {d}"
    daemon_cfg = tomllib.loads(_configmap_toml("configmap.yaml"))
    replay_cfg = tomllib.loads(_configmap_toml("configmap-replay.yaml"))
    assert replay_cfg["source"] == daemon_cfg["source"], "the replay reconciles the daemon's Silver"
    assert [q["name"] for q in replay_cfg["queries"]] == [q["name"] for q in daemon_cfg["queries"]]


def _mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    assert m, f"unsupported memory quantity {quantity}"
    return float(m.group(1)) * (units[m.group(2)] if m.group(2) else 1 / 2**20)


def _measured() -> dict:
    """The memory benchmark's figures (benchmarks/memory.py) that the pod resources cite."""
    return json.loads(MEMORY_RESULTS.read_text())


@pytest.mark.parametrize(("file", "container"), [("deployment.yaml", _deployment_container),
                                                  ("cronjob-replay.yaml", _cronjob_container)])
def test_memory_covers_the_measured_peaks(file: str, container) -> None:
    """An OOM kill repeats on the same batch forever (a commit is never split): the request
    holds the largest measured peak RSS (one max_rows_per_batch commit; 50 queries) and the
    limit leaves headroom above it. The manifest cites the figures it was sized from."""
    measured = _measured()
    peaks = [measured[k]["peak_rss_mib"] for k in ("one_big_commit", "many_queries")]
    text = (K8S / file).read_text()
    for peak in peaks:
        assert f"{round(peak)} MiB" in text, f"{file} must cite the measured {round(peak)} MiB"
    mem = container()["resources"]
    assert _mib(mem["requests"]["memory"]) >= max(peaks)
    assert _mib(mem["limits"]["memory"]) >= 1.5 * max(peaks)
    # the figures are for the shipped default batch size
    example = (REPO / "config.example.toml").read_text()
    rows = int(re.search(r"(?m)^max_rows_per_batch = (\d+)", example).group(1))
    assert measured["one_big_commit"]["silver_rows"] >= rows


def test_liveness_outlasts_the_measured_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz goes stale health_stale_factor x poll_interval after the last sign of
    progress; within a batch, reading and aggregating one chunk of rows is a single call
    that does not refresh it, so liveness must wait well past the longest measured run, or a
    slow batch is killed and retried the same way forever."""
    from goldstream.durations import to_us

    settings = _configmap_settings("configmap.yaml", tmp_path, monkeypatch)
    stale_s = settings.server.health_stale_factor * to_us(settings.source.poll_interval) / 1e6
    probe = _deployment_container()["livenessProbe"]
    tolerated_s = stale_s + probe["periodSeconds"] * probe["failureThreshold"]
    longest_s = max(_measured()[k]["wall_s"] for k in ("one_big_commit", "many_queries"))
    assert tolerated_s >= 3 * longest_s, (tolerated_s, longest_s)
    assert f"{longest_s:.1f} s" in (K8S / "deployment.yaml").read_text(), "cite the measured duration"


_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")


def _looks_like_secret_key(text: str) -> bool:
    return any(
        re.search("[a-z]", m) and re.search("[A-Z]", m) and re.search("[0-9]", m)
        for m in _AWS_SECRET.findall(text)
    )


def _walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, node


def test_no_aws_secret_literal_outside_the_example_secret() -> None:
    for p in sorted(DEPLOY.rglob("*")):
        if not p.is_file() or p == EXAMPLE_SECRET:
            continue
        text = p.read_text()
        assert not _AWS_KEY_ID.search(text), f"AWS access key id literal in {p}"
        assert not _looks_like_secret_key(text), f"AWS secret-key-like literal in {p}"
        if p.suffix not in (".yaml", ".yml"):
            continue
        for doc in _load_yaml_docs(p):
            assert doc.get("kind") != "Secret", f"{p}: real Secrets are created out of band"
            for path, value in _walk(doc):
                # env: [{name: AWS_SECRET_ACCESS_KEY, value: ...}] must be a secretKeyRef
                if path.endswith(".name") and value in AWS_SECRET_KEYS:
                    parent = _resolve(doc, path.rsplit(".", 1)[0])
                    assert "value" not in parent, f"{p}: literal {value} at {path}"
    # The example secret is clearly an example: placeholders only.
    (secret,) = _load_yaml_docs(EXAMPLE_SECRET)
    assert secret["kind"] == "Secret" and "example" in EXAMPLE_SECRET.read_text().lower()
    for k, v in secret.get("stringData", {}).items():
        assert "REPLACE_ME" in v, f"{k} in the example secret must be a placeholder"
    assert "data" not in secret


def _resolve(doc, path: str):
    node = doc
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        node = node[part[0]] if part[0] else node[int(part[1])]
    return node


BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")  # an exact release


def test_dockerfile_structure(stages: list[list[tuple[str, str]]]) -> None:
    builder, final = stages[0], stages[-1]
    assert _stage_name(builder) == "builder"
    base = builder[0][1].split()[0]
    assert BASE_IMAGE.match(base), f"base image {base} must be an exact version, not a moving tag"
    assert final[0][1].split()[0] == base, "builder and runtime must share one interpreter"

    last = lambda kind: [a for k, a in final if k == kind][-1]  # noqa: E731
    assert json.loads(last("ENTRYPOINT")) == ["goldstream"], "exec-form ENTRYPOINT"
    assert json.loads(last("CMD")) == ["run", "--config", "/etc/goldstream/config.toml"]

    user = last("USER").split(":")[0]
    assert user not in ("root", "0"), "final stage must run as non-root"
    assert user in ("10001", "goldstream")
    assert last("WORKDIR") == "/home/goldstream"
    assert re.search(rf"\b{HTTP_PORT}\b", last("EXPOSE"))

    env = " ".join(a for k, a in final if k == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env and "PYTHONUNBUFFERED=1" in env

    # Only the venv comes from the builder; no compilers in the runtime image.
    from_builder = [a for k, a in final if k == "COPY" and "--from=" in a]
    assert from_builder and all(_strip_flags(a)[1] == ["/opt/venv", "/opt/venv"] for a in from_builder)
    runs = " ".join(a for k, a in final if k == "RUN").lower()
    for banned in ("gcc", "g++", "build-essential", "clang", "make ", "python3-dev", "pip install"):
        assert banned not in runs, f"final stage must not install {banned.strip()}"
    # No configuration in the image: one with relative paths made `run` wait for them forever.
    assert not [a for k, a in final if k in ("COPY", "ADD") and "--from=" not in a]


def _healthcheck_cmd(final: list[tuple[str, str]]) -> list[str]:
    (hc,) = [a for k, a in final if k == "HEALTHCHECK"]
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc)
    assert m, "HEALTHCHECK must use exec-form CMD"
    return json.loads(m.group(1))


def test_healthcheck_reads_the_port_from_the_configuration(stages: list[list[tuple[str, str]]]) -> None:
    """The probe asks `goldstream healthcheck` with the configuration `run` uses, so a port
    set in the file or by GOLDSTREAM_SERVER__HTTP_PORT is the port probed."""
    final = stages[-1]
    cmd = _healthcheck_cmd(final)
    run_cmd = json.loads([a for k, a in final if k == "CMD"][-1])
    assert cmd == ["goldstream", "healthcheck", *run_cmd[1:3]]
    assert not re.search(r"\b\d{4,5}\b", " ".join(cmd)), "no hard-coded port"


class _Health(ThreadingHTTPServer):
    """A stand-in `run` health server answering /healthz with a fixed status."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(status if self.path == "/healthz" else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


def _healthcheck(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return goldstream("healthcheck", "--config", str(config), env=env, timeout=120, check=False)


def _config_with_port(tmp_path: Path, port: int) -> Path:
    text = (REPO / "config.example.toml").read_text()
    path = tmp_path / "config.toml"
    path.write_text(re.sub(r"(?m)^http_port = \d+", f"http_port = {port}", text))
    return path


def test_healthcheck_follows_the_configured_port(tmp_path: Path) -> None:
    healthy, stale = _Health(200), _Health(503)
    try:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        assert _healthcheck(_config_with_port(tmp_path, healthy.port)).returncode == 0
        assert _healthcheck(_config_with_port(tmp_path, stale.port)).returncode == 1
        down = _healthcheck(_config_with_port(tmp_path, closed))
        assert down.returncode == 1 and f"127.0.0.1:{closed}/healthz" in down.stderr
        # the environment override `run` honours moves the probe too
        moved = _healthcheck(_config_with_port(tmp_path, closed), GOLDSTREAM_SERVER__HTTP_PORT=str(healthy.port))
        assert moved.returncode == 0, moved.stderr
    finally:
        healthy.shutdown()
        stale.shutdown()


def test_container_without_configuration_refuses_to_start(tmp_path: Path) -> None:
    """The image's CMD with nothing mounted exits 2 naming the file and how to mount it."""
    missing = tmp_path / "etc" / "goldstream" / "config.toml"
    proc = goldstream("run", "--config", str(missing), timeout=120, check=False)
    assert proc.returncode == 2
    assert f"configuration file {missing} does not exist" in proc.stderr
    assert f"mount it at {missing}" in proc.stderr and "ConfigMap" in proc.stderr


# --------------------------------------------------------------------------- (d) pinned dependencies


def _lock_pins() -> dict[str, tuple[str, list[str]]]:
    """{normalised name: (version, hashes)} from requirements.lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)\s*(.*)$", line)
        assert m, f"requirements.lock: not an exact pin: {line}"
        pins[_norm(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3)))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerfile_installs_only_the_lock(stages: list[list[tuple[str, str]]]) -> None:
    runs = [a for k, a in stages[0] if k == "RUN"]
    installs = [c.strip() for a in runs for c in a.split("&&") if " install " in f" {c} "]
    lock_installs = [c for c in installs if "-r requirements.lock" in c]
    assert len(lock_installs) == 1 and "--require-hashes" in lock_installs[0]
    # the project itself: no dependency resolution beyond the lock
    others = [c for c in installs if c not in lock_installs]
    assert others and all("--no-deps" in c for c in others), others
    copied = [src for k, a in stages[0] if k == "COPY" for src in _strip_flags(a)[1][:-1]]
    assert LOCK.name in copied


def test_lock_is_consistent_with_pyproject() -> None:
    """Every runtime dependency is pinned (with hashes) to a version pyproject allows, and
    the libraries that decide the Gold rows cannot move past a tested minor release."""
    import tomllib

    from packaging.requirements import Requirement

    pins = _lock_pins()
    assert all(hashes for _, hashes in pins.values()), "every pin needs its hashes (--require-hashes)"
    deps = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in deps:
        assert _norm(req.name) in pins, f"{req.name} is not in requirements.lock"
        version = pins[_norm(req.name)][0]
        assert req.specifier.contains(version), f"lock pins {req.name}=={version}, pyproject wants {req.specifier}"
        if _norm(req.name) in ("polars", "deltalake"):
            assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req.name} needs an upper bound"
    assert "goldstream" not in pins, "the project is installed from its own wheel, not the lock"


def test_dockerignore_keeps_build_inputs(stages: list[list[tuple[str, str]]]) -> None:
    patterns = [
        ln.strip().rstrip("/") for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for must in (".git", "benchmarks/results"):
        assert must in patterns
    assert any(p.startswith(".venv") or p == "venv" for p in patterns)
    sources = [
        src.rstrip("/").removeprefix("./")
        for stage in stages for k, a in stage
        if k == "COPY" and "--from=" not in a
        for src in _strip_flags(a)[1][:-1]
    ]
    assert sources
    for src in sources:
        for pat in patterns:
            assert not (fnmatch.fnmatch(src, pat) or src.startswith(pat + "/")), (
                f".dockerignore pattern {pat!r} excludes {src!r}, which the Dockerfile COPYs"
            )


# --------------------------------------------------------------------------- (e) install replay


@pytest.mark.slow
def test_dockerfile_install_commands_succeed_in_fresh_venv(
    stages: list[list[tuple[str, str]]], tmp_path: Path
) -> None:
    """Replay the builder stage (WORKDIR, COPY, RUN) verbatim but for path prefixes."""
    builder = stages[0]
    root = tmp_path / "root"
    mapping: dict[str, Path] = {"/opt/venv": root / "opt/venv", "/wheels": root / "wheels"}
    workdir: Path | None = None

    def remap(s: str) -> str:
        for src, dst in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
            s = re.sub(rf"(?<![\w/.]){re.escape(src)}(?=/|\s|$)", str(dst), s)
        return s

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    # `python` resolves to this interpreter (3.11, like the image) until /opt/venv exists.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    ran_install = False
    for kind, args in builder[1:]:
        if kind == "WORKDIR":
            mapping[args] = root / args.lstrip("/")
            workdir = mapping[args]
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "ENV":
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                env[k] = remap(v).replace("$PATH", env["PATH"])
        elif kind == "COPY":
            assert workdir is not None
            flags, parts = _strip_flags(args)
            assert not any(f.startswith("--from") for f in flags)
            *srcs, dest = parts
            target = Path(remap(dest)) if dest.startswith("/") else workdir / dest
            for src in srcs:
                s = REPO / src
                assert s.exists(), f"docker build would fail: COPY source {src} is missing"
                if s.is_dir():
                    shutil.copytree(s, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    d = target / s.name if (dest.endswith("/") or len(srcs) > 1) else target
                    d.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(s, d)
        elif kind == "RUN":
            assert not args.startswith("["), "keep builder RUN lines in shell form"
            cmd = remap(args)
            proc = subprocess.run(cmd, shell=True, cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"RUN {args}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            ran_install |= "install" in args and "/wheels" in args

    assert ran_install, "builder must `pip install` the wheel(s) from /wheels"
    venv = mapping["/opt/venv"]
    assert (venv / "pyvenv.cfg").is_file(), "builder must create the venv at /opt/venv"
    proc = subprocess.run([str(venv / "bin/goldstream"), "--help"], capture_output=True,
                          text=True, timeout=120, env={**env, "NO_COLOR": "1"})
    assert proc.returncode == 0, f"goldstream --help failed:\n{proc.stdout}\n{proc.stderr}"
    # The image's CMD / Deployment use `run`, the CronJob uses `replay`.
    for sub in ("run", "replay"):
        assert re.search(rf"^\W*{sub}\b", proc.stdout, re.MULTILINE), f"`{sub}` missing from --help"
