"""docker-compose.yml and Dockerfile, checked without a Docker engine (none runs here).

Checked: the compose file parses as YAML and validates against the Compose Specification JSON
schema (the copy vendored in the check-jsonschema package); the required properties of the stack
(Redis persistence/no eviction/password/unpublished, API health check, GPU reservation, HF cache
volume, CPU variant, grace period above the task limit, the S3 job store: its server, bucket,
credentials and volume, and the store settings API and workers get); every command it and the
Dockerfile run is a subcommand of the `embedserve` console script; every EMBED_* name is one
Settings reads.
Not checked: that images build, that containers start, that the GPU is visible inside them.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from embedserve.cli import build_parser
from embedserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
WORKERS = ("worker", "worker-cpu")
# Services that run another project's image, not an `embedserve` subcommand.
THIRD_PARTY = ("redis", "s3")
# What `docker compose` needs in its environment to start the stack (`${VAR:?message}`).
REQUIRED_VARS = {"REDIS_PASSWORD": "redis-secret", "S3_SECRET_KEY": "s3-secret"}


class _RecordingEnv(dict):
    """An environment mapping that remembers every name asked for."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)


def settings_names() -> set[str]:
    """Every EMBED_* variable Settings.from_env reads (observed, not parsed from source)."""
    env = _RecordingEnv()
    Settings.from_env(env)
    return {name for name in env.asked if name.startswith("EMBED_")}


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps them here
    return set(action.choices)


def test_compose_file_validates_against_the_compose_specification():
    schema_text = (resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json").read_text()
    schema = json.loads(schema_text)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_check_can_fail():
    """The validation above is not vacuous: a misspelled key is rejected."""
    schema = json.loads((resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json").read_text())
    broken = {"services": {"api": {"image": "x", "stop_grace_periodd": "1m"}}}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_redis_is_durable_unevicting_private_and_password_protected():
    redis = SERVICES["redis"]
    command = redis["command"]
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--requirepass"):
        assert flag in command
    assert "ports" not in redis
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert "redis-data" in COMPOSE["volumes"]


def test_api_serves_on_8000_with_a_health_check():
    api = SERVICES["api"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    assert "/health" in " ".join(api["healthcheck"]["test"])
    assert api["build"]["target"] == "api"


def test_gpu_worker_reserves_an_nvidia_device_and_caches_models_on_a_volume():
    worker = SERVICES["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "Qwen/Qwen3-Embedding-0.6B" in worker["environment"]["EMBED_MODEL"]
    assert any(v.startswith("hf-cache:") and v.endswith("/huggingface") for v in worker["volumes"])
    # No container_name or fixed host port: `--scale worker=N` needs both absent.
    assert "container_name" not in worker and "ports" not in worker


def test_cpu_variant_has_no_device_reservation_and_builds_cpu_torch():
    cpu = SERVICES["worker-cpu"]
    assert "deploy" not in cpu
    assert cpu["environment"]["EMBED_DEVICE"] == "cpu"
    assert "whl/cpu" in cpu["build"]["args"]["TORCH_INDEX"]
    assert SERVICES["worker"]["profiles"] != cpu["profiles"]


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


@pytest.mark.parametrize("service", WORKERS)
def test_stop_grace_period_is_above_the_task_time_limit(service):
    worker = SERVICES[service]
    limit = int(worker["environment"]["EMBED_TASK_TIME_LIMIT"])
    assert _seconds(worker["stop_grace_period"]) > limit
    assert int(worker["environment"]["EMBED_VISIBILITY_TIMEOUT"]) > limit


def test_every_command_is_an_embedserve_subcommand():
    known = subcommands()
    for name, service in SERVICES.items():
        if name in THIRD_PARTY:
            continue
        assert service["command"][0] in known, name
    assert re.search(r'^ENTRYPOINT \["embedserve"\]', DOCKERFILE, re.M)
    for cmd in re.findall(r'^CMD \["([a-z-]+)"\]', DOCKERFILE, re.M):
        assert cmd in known
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'embedserve = "embedserve.cli:main"' in pyproject


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M)
    assert {"build-api", "build-worker", "api", "worker"} <= set(stages)
    for target in ("api", "worker"):
        body = DOCKERFILE.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "COPY --from=build-" in body and "USER embed" in body
    api_stage = DOCKERFILE.split(" AS build-api\n", 1)[1].split("\nFROM ", 1)[0]
    assert "torch" not in api_stage  # the API image stays small


def _env_names() -> set[str]:
    names = set(re.findall(r"\b(EMBED_[A-Z_]+)\b", DOCKERFILE))
    for service in SERVICES.values():
        env = service.get("environment", {})
        names |= {n for n in env if n.startswith("EMBED_")}
    return names


def test_every_embed_variable_is_a_setting():
    unknown = _env_names() - settings_names()
    assert not unknown, f"not read by Settings: {sorted(unknown)}"
    assert {"EMBED_REDIS_URL", "EMBED_MODEL", "EMBED_TASK_TIME_LIMIT"} <= _env_names()


# -- the job store: an S3-compatible server by default ---------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """What Compose makes of `value` in `env`: ${VAR}, ${VAR:-default} (nested), ${VAR:?error}; $$ is $."""
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return interpolate(arg, env)
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return ""

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def env_of(service: str, **env: str) -> dict[str, str]:
    """A service's environment as the container sees it, with REQUIRED_VARS and `env` set."""
    given = {**REQUIRED_VARS, **env}
    return {name: interpolate(str(value), given) for name, value in SERVICES[service].get("environment", {}).items()}


STORE_USERS = ("api", *WORKERS)


def test_s3_server_runs_by_default_with_its_image_a_variable_and_no_published_port():
    s3 = SERVICES["s3"]
    assert "profiles" not in s3  # part of every `docker compose up`
    image = re.fullmatch(r"\$\{S3_IMAGE:-([^}]+)\}", s3["image"])
    assert image, s3["image"]
    # A maintained image: SeaweedFS (MinIO stopped publishing community images in late 2025), pinned.
    assert image.group(1).startswith("chrislusf/seaweedfs:") and not image.group(1).endswith(":latest")
    assert "minio" not in s3["image"].lower()
    assert "ports" not in s3 and s3["restart"] == "unless-stopped"


def test_s3_server_creates_the_bucket_at_start_with_credentials_from_compose_variables():
    s3 = SERVICES["s3"]
    assert s3["command"][0] == "mini"  # SeaweedFS in one process; it creates S3_BUCKET when it starts
    raw = s3["environment"]
    assert raw["S3_BUCKET"].startswith("${S3_BUCKET:-")
    assert raw["AWS_ACCESS_KEY_ID"].startswith("${S3_ACCESS_KEY")
    assert raw["AWS_SECRET_ACCESS_KEY"].startswith("${S3_SECRET_KEY:?")  # no default secret
    env = env_of("s3")
    assert env["S3_BUCKET"] == "embedserve" and env["AWS_SECRET_ACCESS_KEY"] == "s3-secret"
    with pytest.raises(KeyError, match="S3_SECRET_KEY"):
        env_of("s3", S3_SECRET_KEY="")  # `docker compose` refuses to start without it
    # Data on a named volume; healthy only once the bucket exists, so API and workers find it.
    assert any(v.startswith("s3-data:") for v in s3["volumes"]) and "s3-data" in COMPOSE["volumes"]
    health = " ".join(s3["healthcheck"]["test"])
    assert "8333/healthz" in health and "/buckets/$$S3_BUCKET" in health


@pytest.mark.parametrize("service", STORE_USERS)
def test_api_and_workers_keep_job_data_in_the_s3_bucket(service):
    env = env_of(service)
    s3 = env_of("s3")
    assert env["EMBED_JOB_STORE"] == f"s3://{s3['S3_BUCKET']}"
    assert env["AWS_ENDPOINT_URL"] == "http://s3:8333"
    assert env["AWS_ACCESS_KEY_ID"] == s3["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SECRET_ACCESS_KEY"] == s3["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_DEFAULT_REGION"]
    # One bucket name drives both sides; another store is one variable away.
    moved = env_of(service, S3_BUCKET="vectors")
    assert moved["EMBED_JOB_STORE"] == "s3://vectors" and env_of("s3", S3_BUCKET="vectors")["S3_BUCKET"] == "vectors"
    assert env_of(service, EMBED_JOB_STORE="file:///srv/jobs")["EMBED_JOB_STORE"] == "file:///srv/jobs"
    assert SERVICES[service]["depends_on"]["s3"]["condition"] == "service_healthy"


def test_the_default_store_url_is_one_the_service_accepts():
    from embedserve.store import open_store

    store = open_store(env_of("api")["EMBED_JOB_STORE"])  # builds the client lazily: no S3 contacted
    assert store.url == "s3://embedserve"
    # At the bucket's root, job data is under jobs/ (the prefix the README's lifecycle rule expires).
    assert not getattr(store, "prefix", "")


def test_interpolation_helper_follows_compose_rules():
    assert interpolate("${A:-x}", {}) == "x" and interpolate("${A:-x}", {"A": "y"}) == "y"
    nested = "${A:-s3://${B:-b}}"
    assert interpolate(nested, {}) == "s3://b" and interpolate(nested, {"B": "c"}) == "s3://c"
    assert interpolate("a$$B", {}) == "a$B"
    with pytest.raises(KeyError):
        interpolate("${A:?set A}", {})
