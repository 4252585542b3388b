"""The one settings object, read from EMBED_* environment variables when asked, checked at start."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from embedserve import defaults

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service. Each field is documented in the README's settings table."""

    # Redis: Celery broker plus the registry, reply and job store.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # API keys accepted as `Authorization: Bearer KEY` (or a bare KEY).
    api_keys: tuple[str, ...] = ()
    # API listen address and port.
    host: str = "0.0.0.0"
    port: int = 8000
    # API server processes and threads per process (each waiting request holds a thread).
    api_workers: int = 2
    api_threads: int = 32
    # Model a worker serves: a Hugging Face id or a local directory; "" = the embedded default.
    model: str = ""
    # Name clients put in `model`; "" = derived from `model`.
    model_name: str = ""
    # Other names accepted for the same model.
    model_aliases: tuple[str, ...] = ()
    # auto | cpu | cuda (or cuda:N).
    device: str = "auto"
    # auto | float32 | bfloat16 | float16; auto = fp32 on CPU, bf16 (fp16 if unsupported) on CUDA.
    dtype: str = "auto"
    # Padded tokens in one forward pass; 0 = by device (see `batch_tokens`).
    max_batch_tokens: int = 0
    # /v1/embeddings body limit, bytes.
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    # Seconds a sync request waits before 504.
    sync_timeout: float = defaults.SYNC_TIMEOUT_S
    # Task threads per worker process.
    worker_concurrency: int = defaults.WORKER_CONCURRENCY
    # Seconds before Redis redelivers an unacknowledged task; must exceed task_time_limit.
    visibility_timeout: int = defaults.VISIBILITY_TIMEOUT_S
    # Hard limit on one task's run time, seconds.
    task_time_limit: int = defaults.TASK_TIME_LIMIT_S
    # Python logging level name.
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read EMBED_* variables (os.environ by default) and validate them."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            redis_url=reader.str("EMBED_REDIS_URL", cls.redis_url),
            api_keys=reader.list("EMBED_API_KEYS"),
            host=reader.str("EMBED_HOST", cls.host),
            port=reader.int("EMBED_PORT", cls.port, 1, 65535),
            api_workers=reader.int("EMBED_API_WORKERS", cls.api_workers, 1, 256),
            api_threads=reader.int("EMBED_API_THREADS", cls.api_threads, 1, 4096),
            model=reader.str("EMBED_MODEL", cls.model),
            model_name=reader.str("EMBED_MODEL_NAME", cls.model_name),
            model_aliases=reader.list("EMBED_MODEL_ALIASES"),
            device=reader.str("EMBED_DEVICE", cls.device).lower(),
            dtype=reader.str("EMBED_DTYPE", cls.dtype).lower(),
            max_batch_tokens=reader.int("EMBED_MAX_BATCH_TOKENS", cls.max_batch_tokens, 0, 10**8),
            max_body_bytes=reader.int("EMBED_MAX_BODY_BYTES", cls.max_body_bytes, 1024, 2**40),
            sync_timeout=reader.float("EMBED_SYNC_TIMEOUT", cls.sync_timeout, 0.001, 86400),
            worker_concurrency=reader.int("EMBED_WORKER_CONCURRENCY", cls.worker_concurrency, 1, 1024),
            visibility_timeout=reader.int("EMBED_VISIBILITY_TIMEOUT", cls.visibility_timeout, 1, 10**7),
            task_time_limit=reader.int("EMBED_TASK_TIME_LIMIT", cls.task_time_limit, 1, 10**7),
            log_level=reader.str("EMBED_LOG_LEVEL", cls.log_level).upper(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError for values that parse but cannot work together."""
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"EMBED_REDIS_URL must be a redis://, rediss:// or unix:// URL, got {parts.scheme!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"EMBED_DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"EMBED_DTYPE must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"EMBED_LOG_LEVEL must be a logging level name, got {self.log_level!r}")
        for name in (self.served_model_name, *self.model_aliases):
            if not _NAME_RE.match(name):
                raise ConfigError(f"model name {name!r} (EMBED_MODEL_NAME/EMBED_MODEL_ALIASES) has characters outside [A-Za-z0-9._:/-]")
        if self.visibility_timeout <= self.task_time_limit:
            raise ConfigError(
                f"EMBED_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must be above EMBED_TASK_TIME_LIMIT "
                f"({self.task_time_limit}s), or Redis would hand a running task to a second worker"
            )
        for key in self.api_keys:
            if len(key) < 8 or any(c.isspace() for c in key):
                raise ConfigError("each EMBED_API_KEYS entry must be at least 8 characters with no spaces")

    def batch_tokens(self, device_type: str) -> int:
        """The forward pass's padded-token budget: the setting, or the default for `device_type`."""
        if self.max_batch_tokens:
            return self.max_batch_tokens
        return defaults.MAX_BATCH_TOKENS_CPU if device_type == "cpu" else defaults.MAX_BATCH_TOKENS

    @property
    def served_model_name(self) -> str:
        """The name clients use for this worker's model."""
        if self.model_name:
            return self.model_name
        if not self.model:
            return DEFAULT_MODEL_NAME
        return self.model.rstrip("/").rsplit("/", 1)[-1]

    @property
    def served_aliases(self) -> tuple[str, ...]:
        """Aliases: the configured ones, plus the full Hugging Face id when it differs from the name."""
        hf_id = DEFAULT_MODEL_HF_ID if not self.model else self.model
        extra = (hf_id,) if _looks_like_hub_id(hf_id) and hf_id != self.served_model_name else ()
        return tuple(dict.fromkeys((*self.model_aliases, *extra)))

    def __repr__(self) -> str:
        fields = dataclasses.asdict(self)
        fields["api_keys"] = f"<{len(self.api_keys)} redacted>"
        fields["redis_url"] = redact_url(self.redis_url)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _looks_like_hub_id(value: str) -> bool:
    return value.count("/") == 1 and not value.startswith((".", "/")) and not os.path.exists(value)


class _Reader:
    """Typed getters over an environment mapping; every failure names the variable."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def str(self, name: str, default: str) -> str:
        return self.env.get(name, "").strip() or default

    def list(self, name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in self.env.get(name, "").split(",") if item.strip())

    def int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def float(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value
