"""docker-compose.yml and Dockerfile, checked without a Docker engine (none runs here).

Checked: the compose file parses as YAML and validates against the Compose Specification JSON
schema (the copy vendored in the check-jsonschema package); the required properties of the stack
(Redis persistence/no eviction/password/unpublished, API health check, GPU reservation, HF cache
volume, CPU variant, grace period above the task limit); every command it and the Dockerfile run
is a subcommand of the `embedserve` console script; every EMBED_* name is one Settings reads.
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
        if name == "redis":
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
