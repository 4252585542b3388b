"""docker-compose.yml, its override files and the Dockerfile, checked without a Docker engine.

Checked: the compose files parse as YAML and validate against the Compose Specification JSON
schema (the copy vendored in the check-jsonschema package); the required properties of the stack
(Redis persistence/no eviction/password/unpublished, API health check, a CPU worker with the
embedded model in every plain `up`, the GPU stack as an override file that changes that worker
instead of adding one, HF cache volume, grace period above the task limit, the S3 job store: its
server, bucket, credentials and volume, and the store settings API and workers get; the file
store override); what lets the images build without a registry (image and base variables, a
local torch wheel directory, no BuildKit frontend to fetch, no `python` needed besides `python3`,
no nested variables, which docker-compose 1.29 leaves unexpanded); every command it and the
Dockerfile run is a subcommand of the `embedserve` console script; every EMBED_* name is one
Settings reads.
Not checked here: that images build, that containers start, that the GPU is visible inside them.
scripts/compose_check builds and starts the stack for real (a Docker engine and minutes; not CI).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from embedserve.cli.main import build_parser
from embedserve.settings import Settings
from tests.unit.helpers import RecordingEnv

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GPU = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
FILE_STORE = yaml.safe_load((ROOT / "docker" / "file-store.yml").read_text())
S3_STANDIN = yaml.safe_load((ROOT / "scripts" / "compose" / "s3-standin.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
WORKERS = ("worker", "reranker")
# Services that run another project's image, not an `embedserve` subcommand.
THIRD_PARTY = ("redis", "s3")
# What `docker compose` needs in its environment to start the stack (`${VAR:?message}`).
REQUIRED_VARS = {"REDIS_PASSWORD": "redis-secret", "S3_SECRET_KEY": "s3-secret"}


def settings_names() -> set[str]:
    """Every EMBED_* variable Settings.from_env reads (observed, not parsed from source)."""
    env = RecordingEnv()
    Settings.from_env(env)
    return {name for name in env.asked if name.startswith("EMBED_")}


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps them here
    return set(action.choices)


def merged(base: dict, *overrides: dict) -> dict:
    """Compose's merge of override files, for what these files use: mappings merge key by key
    (environment, build args, deploy), a service's volumes by their path in the container,
    everything else is replaced."""
    def merge(a, b, key=None):
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(a[k], v, k) if k in a else v
            return out
        if key == "volumes" and isinstance(a, list) and isinstance(b, list):
            by_target = {v.split(":")[1]: v for v in a} | {v.split(":")[1]: v for v in b}
            return list(by_target.values())
        return b

    result = base
    for override in overrides:
        result = merge(result, override)
    return result


@pytest.mark.parametrize("name, document", [("docker-compose.yml", COMPOSE), ("docker-compose.gpu.yml", GPU),
                                            ("docker/file-store.yml", FILE_STORE),
                                            ("scripts/compose/s3-standin.yml", S3_STANDIN)])
def test_compose_file_validates_against_the_compose_specification(name, document):
    schema_text = (resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json").read_text()
    schema = json.loads(schema_text)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, name + ":\n" + "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("document", [COMPOSE, GPU, FILE_STORE])
def test_override_files_change_services_and_add_none(document):
    """An override file that named a service the base lacks would start something new."""
    assert set(document["services"]) <= set(SERVICES)


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


def test_plain_up_starts_a_cpu_worker_with_the_embedded_model():
    worker = SERVICES["worker"]
    assert "profiles" not in worker  # part of every `docker compose up`
    assert "deploy" not in worker  # no device reservation: runs on any host
    env = env_of("worker")
    assert env["EMBED_DEVICE"] == "cpu" and env["EMBED_MODEL"] == ""  # "" = all-MiniLM-L6-v2 in the image
    args = worker["build"]["args"]
    assert worker["build"]["target"] == "worker"
    assert "whl/cpu" in interpolate(args["TORCH_INDEX"], {})
    assert any(v.startswith("hf-cache:") and v.endswith("/huggingface") for v in worker["volumes"])
    # No container_name or fixed host port: `--scale worker=N` needs both absent.
    assert "container_name" not in worker and "ports" not in worker
    # The only services without a profile: the stack a plain `up` starts.
    assert {n for n, s in SERVICES.items() if "profiles" not in s} == {"redis", "s3", "api", "worker"}


def test_gpu_override_turns_the_worker_into_a_qwen3_gpu_worker():
    worker = merged(COMPOSE, GPU)["services"]["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    env = {k: interpolate(str(v), REQUIRED_VARS) for k, v in worker["environment"].items()}
    assert env["EMBED_MODEL"] == "Qwen/Qwen3-Embedding-0.6B" and env["EMBED_DEVICE"] == "auto"
    assert env["EMBED_REDIS_URL"].startswith("redis://")  # the base's environment is kept
    args = {k: interpolate(v, {}) for k, v in worker["build"]["args"].items()}
    assert "whl/cu" in args["TORCH_INDEX"]
    # Its own image name (a CPU build never overwrites it) and never the CPU wheel directory.
    assert worker["image"] != SERVICES["worker"]["image"]
    assert args["TORCH_WHEELS"] != interpolate(SERVICES["worker"]["build"]["args"]["TORCH_WHEELS"], {})
    reranker = merged(COMPOSE, GPU)["services"]["reranker"]
    assert reranker["profiles"] == ["rerank"] and reranker["deploy"] == worker["deploy"]


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
    assert 'embedserve = "embedserve.cli.main:main"' in pyproject


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M)
    assert {"build-api", "build-worker", "api", "worker"} <= set(stages)
    for target in ("api", "worker"):
        body = DOCKERFILE.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "COPY --from=build-" in body and "USER embed" in body
    api_stage = DOCKERFILE.split(" AS build-api\n", 1)[1].split("\nFROM ", 1)[0]
    assert "torch" not in api_stage  # the API image stays small
    # The legacy builder runs every stage above its target: the API's come before torch's.
    assert stages.index("api") < stages.index("build-worker")


def test_images_build_without_a_registry_when_asked():
    # No `# syntax=` line: BuildKit would fetch that frontend image before reading anything.
    assert not re.search(r"^#\s*syntax=", DOCKERFILE, re.M | re.I)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M)
    # A debootstrapped Debian has python3 (and its venv module) but no `python`.
    assert not re.search(r"\bpython -m\b", DOCKERFILE) and "python3 -m venv" in DOCKERFILE
    for health in (SERVICES["api"]["healthcheck"]["test"], re.findall(r"HEALTHCHECK.*\n.*", DOCKERFILE)[0]):
        assert "python3" in str(health)
    # torch from a wheel directory in the build context when it holds one.
    worker_stage = DOCKERFILE.split(" AS build-worker\n", 1)[1].split("\nFROM ", 1)[0]
    assert re.search(r"^ARG TORCH_WHEELS=docker/wheels$", worker_stage, re.M)
    assert "COPY ${TORCH_WHEELS}/ /wheels/" in worker_stage and "--no-index --find-links /wheels" in worker_stage
    assert (ROOT / "docker" / "wheels" / "README.md").is_file() and (ROOT / "docker" / "wheels" / "cuda").is_dir()
    # The base image and the third-party images are variables; their defaults are the registry's.
    for service in ("api", "worker"):
        assert SERVICES[service]["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}"
    assert SERVICES["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    assert SERVICES["s3"]["image"].startswith("${S3_IMAGE:-")


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    else:
        yield str(node)


@pytest.mark.parametrize("document", [COMPOSE, GPU, FILE_STORE, S3_STANDIN])
def test_no_nested_variables(document):
    """docker-compose 1.29 (Debian 12's) leaves the inner ${...} of ${A:-${B}} unexpanded."""
    nested = [text for text in _strings(document) if re.search(r"\$\{[^}]*\$\{", text)]
    assert not nested, nested


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
    # One bucket name drives both sides.
    moved = env_of(service, S3_BUCKET="vectors")
    assert moved["EMBED_JOB_STORE"] == "s3://vectors" and env_of("s3", S3_BUCKET="vectors")["S3_BUCKET"] == "vectors"
    assert SERVICES[service]["depends_on"]["s3"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", STORE_USERS)
def test_file_store_override_gives_api_and_workers_one_volume(service):
    stack = merged(COMPOSE, FILE_STORE)["services"][service]
    url = stack["environment"]["EMBED_JOB_STORE"]
    path = url.removeprefix("file://")
    assert url.startswith("file:///") and f"jobs:{path}" in stack["volumes"]
    assert "jobs" in FILE_STORE["volumes"]
    # The images own that directory as the runtime user: a fresh named volume there is writable.
    assert path.startswith("/var/lib/embedserve") and "chown -R embed:embed /var/lib/embedserve" in DOCKERFILE
    assert any(v.startswith("hf-cache:") for v in stack["volumes"]) or service == "api"  # the base's mounts stay


def test_s3_standin_override_touches_only_the_s3_service():
    assert set(S3_STANDIN["services"]) == {"s3"}
    assert set(S3_STANDIN["services"]["s3"]) <= {"command", "healthcheck"}


def test_the_default_store_url_is_one_the_service_accepts():
    from embedserve.jobs.store import open_store

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
