"""The one settings object, read from EMBED_* environment variables when asked, checked at start."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from enum import Enum
from urllib.parse import unquote, urlsplit

from embedserve import defaults
from embedserve.events import signing, url_safety

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
# EMBED_ATTENTION's values (worker/packed/decoder.py implements them).
ATTENTION_KERNELS = ("auto", "sdpa_groups", "flex", "flash_varlen")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
SENTINEL_DEFAULT_PORT = 26379
# EMBED_CACHE_SCOPE's values: cache entries per API key, or shared by all keys.
CACHE_SCOPES = ("key", "global")
_SENTINEL_FORM = "sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


class WorkerRole(str, Enum):
    """Which of the configured models a worker process loads."""

    EMBED = "embed"
    RERANK = "rerank"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service. Each field is documented in docs/settings.md (tests/unit/test_docs.py checks)."""

    # Redis: Celery broker plus the registry, reply and job store.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The sentinels' own password (their `requirepass`), when EMBED_REDIS_URL is a sentinel:// URL;
    # the URL's password is the master's (and its replicas'). "" = the sentinels ask for none.
    redis_sentinel_password: str = ""
    # Replicas that must hold a job's submission (and each chunk's count) before the API answers 202
    # (and a worker moves on): a WAIT after each such write. Unset: 1 for a sentinel:// URL, else 0 (off).
    redis_wait_replicas: int = 0
    # Milliseconds that WAIT blocks at most; a write no replica acknowledged by then is logged and goes on.
    redis_wait_timeout_ms: int = 1000
    # API keys accepted as `Authorization: Bearer KEY` (or a bare KEY).
    api_keys: tuple[str, ...] = ()
    # Bearer token GET /metrics asks for ("" = /metrics is open; keep it off the clients' network then).
    metrics_token: str = ""
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
    # Reranker a rerank worker serves (Qwen3-Reranker or a cross-encoder): hub id or directory; "" = none.
    rerank_model: str = ""
    # Name clients put in /v1/rerank's `model`; "" = derived from `rerank_model`.
    rerank_model_name: str = ""
    # Other names accepted for the reranker.
    rerank_model_aliases: tuple[str, ...] = ()
    # What a worker process serves: "embed" (EMBED_MODEL) or "rerank" (EMBED_RERANK_MODEL); one model each.
    worker_role: str = WorkerRole.EMBED.value
    # auto | cpu | cuda (or cuda:N).
    device: str = "auto"
    # auto | float32 | bfloat16 | float16; auto = fp32 on CPU, bf16 (fp16 if unsupported) on CUDA.
    dtype: str = "auto"
    # auto | on | off: the padding-free forward (worker/packed/choice.py); auto = BERT family on CPU, Qwen3 family everywhere.
    packed: str = "auto"
    # auto | sdpa_groups | flex | flash_varlen: the packed decoder's attention kernel (worker/packed/decoder.py).
    attention: str = "auto"
    # auto | on | off: the batch-invariant forward (worker/invariant/); auto = on on the CPU, off on CUDA.
    deterministic: str = "auto"
    # Tokens in one forward pass (rows x longest row when padded); 0 = by device (see `batch_tokens`; GPU: free memory).
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
    # Log one JSON object per line (EMBED_LOG_JSON=1) instead of plain text.
    log_json: bool = False
    # Sync requests get 503 + Retry-After at once when the model's interactive queue holds more
    # messages than this (0 = no limit).
    max_queue: int = defaults.MAX_QUEUE
    # Per-minute limits for the static EMBED_API_KEYS (0 = unlimited); managed keys carry their own.
    static_key_rpm: int = 0
    static_key_tpm: int = 0
    # Bulk jobs: most inputs per job, body limit of a job submission, bytes.
    max_job_inputs: int = defaults.MAX_JOB_INPUTS
    max_job_body_bytes: int = defaults.MAX_JOB_BODY_BYTES
    # Largest uploaded file (POST /v1/files), bytes.
    max_file_bytes: int = defaults.MAX_FILE_BYTES
    # Seconds a job's data lives after submission; seconds an uploaded file lives.
    job_ttl: int = defaults.JOB_TTL_S
    file_ttl: int = defaults.FILE_TTL_S
    # Runs of one job chunk before its items are marked failed.
    max_attempts: int = defaults.MAX_ATTEMPTS
    # Job chunks one worker process takes at once (each on its own consumer thread and connection).
    bulk_slots: int = defaults.BULK_SLOTS
    # Padded tokens in a bulk-only forward pass; 0 = auto (EMBED_MAX_BATCH_TOKENS on CUDA, small on CPU).
    bulk_batch_tokens: int = 0
    # Least share of the forward thread's recent time owed to waiting job rows under sync load.
    bulk_min_share: float = defaults.BULK_MIN_SHARE
    # Where job inputs, results and uploads live: file:///path or s3://bucket/prefix ("" = file://.run/jobs).
    job_store: str = ""
    # Seconds a job's record outlives its data, so GET /v1/jobs/{id} answers "expired" (EMBED_JOB_RECORD_GRACE).
    job_record_grace: int = defaults.JOB_RECORD_GRACE_S
    # Inputs of one key's queued and running jobs and batches; 0 = unlimited (static keys' cap).
    max_queued_inputs_per_key: int = defaults.MAX_QUEUED_INPUTS_PER_KEY
    # Seconds without a heartbeat after which a worker is dead: its work goes to another worker.
    worker_dead_after: float = defaults.WORKER_DEAD_AFTER_S
    # Served names the API accepts before any worker announced them (embedding models, rerankers).
    declared_models: tuple[str, ...] = ()
    declared_rerank_models: tuple[str, ...] = ()
    # Seconds a model stays in the catalogue with no live worker before it is forgotten.
    catalogue_ttl: int = defaults.CATALOGUE_TTL_S
    # Seconds a sync request waits for a worker of a model that has none live, then 503.
    cold_start_timeout: float = defaults.COLD_START_TIMEOUT_S
    # Seconds a stopping worker finishes what it holds before handing the rest back.
    drain_timeout: float = defaults.DRAIN_TIMEOUT_S
    # Whether /v1/embeddings, jobs and batch lines take token ids as input (false: 400 token_ids_not_accepted).
    accept_token_ids: bool = True
    # Where the static keys' job and batch events go ("" = nowhere), and the `whsec_` secret that signs them.
    webhook_url: str = ""
    webhook_secret: str = ""
    # Hours an event is retried before it is given up.
    webhook_retry_hours: float = 72.0
    # Seconds before the first retry; each later one waits twice as long (up to an hour).
    webhook_retry_delay: float = 5.0
    # Seconds to connect to an endpoint, and to wait for its answer, each.
    webhook_timeout: float = 5.0
    # Whether webhooks may go to loopback, private and link-local addresses (tests, single-host setups).
    webhook_allow_private: bool = False
    # Most windows one input is split into with long_input mean / windows (more: 400 too_many_windows).
    max_windows: int = defaults.MAX_WINDOWS
    # The embedding cache's own Redis (redis://, rediss:// or unix://; an LRU/LFU maxmemory-policy, never the
    # broker's): vectors already computed are returned without a forward pass. "" = no cache.
    cache_url: str = ""
    # Who shares cache entries: "key" (each API key its own; no key learns by timing what another embedded)
    # or "global" (every key: more hits, and that timing side channel).
    cache_scope: str = "key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read EMBED_* variables (os.environ by default) and validate them."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        redis_url = reader.str("EMBED_REDIS_URL", cls.redis_url)
        settings = cls(
            redis_url=redis_url,
            redis_sentinel_password=reader.str("EMBED_REDIS_SENTINEL_PASSWORD", cls.redis_sentinel_password),
            redis_wait_replicas=reader.int("EMBED_REDIS_WAIT_REPLICAS", 1 if redis_url.startswith("sentinel://") else 0,
                                           0, 16),
            redis_wait_timeout_ms=reader.int("EMBED_REDIS_WAIT_TIMEOUT_MS", cls.redis_wait_timeout_ms, 10, 3000),
            api_keys=reader.list("EMBED_API_KEYS"),
            metrics_token=reader.str("EMBED_METRICS_TOKEN", cls.metrics_token),
            host=reader.str("EMBED_HOST", cls.host),
            port=reader.int("EMBED_PORT", cls.port, 1, 65535),
            api_workers=reader.int("EMBED_API_WORKERS", cls.api_workers, 1, 256),
            api_threads=reader.int("EMBED_API_THREADS", cls.api_threads, 1, 4096),
            model=reader.str("EMBED_MODEL", cls.model),
            model_name=reader.str("EMBED_MODEL_NAME", cls.model_name),
            model_aliases=reader.list("EMBED_MODEL_ALIASES"),
            rerank_model=reader.str("EMBED_RERANK_MODEL", cls.rerank_model),
            rerank_model_name=reader.str("EMBED_RERANK_MODEL_NAME", cls.rerank_model_name),
            rerank_model_aliases=reader.list("EMBED_RERANK_MODEL_ALIASES"),
            worker_role=reader.str("EMBED_WORKER_ROLE", cls.worker_role).lower(),
            device=reader.str("EMBED_DEVICE", cls.device).lower(),
            dtype=reader.str("EMBED_DTYPE", cls.dtype).lower(),
            packed=reader.str("EMBED_PACKED", cls.packed).lower(),
            attention=reader.str("EMBED_ATTENTION", cls.attention).lower(),
            deterministic=reader.str("EMBED_DETERMINISTIC", cls.deterministic).lower(),
            max_batch_tokens=reader.int("EMBED_MAX_BATCH_TOKENS", cls.max_batch_tokens, 0, 10**8),
            max_body_bytes=reader.int("EMBED_MAX_BODY_BYTES", cls.max_body_bytes, 1024, 2**40),
            sync_timeout=reader.float("EMBED_SYNC_TIMEOUT", cls.sync_timeout, 0.001, 86400),
            worker_concurrency=reader.int("EMBED_WORKER_CONCURRENCY", cls.worker_concurrency, 1, 1024),
            visibility_timeout=reader.int("EMBED_VISIBILITY_TIMEOUT", cls.visibility_timeout, 1, 10**7),
            task_time_limit=reader.int("EMBED_TASK_TIME_LIMIT", cls.task_time_limit, 1, 10**7),
            log_level=reader.str("EMBED_LOG_LEVEL", cls.log_level).upper(),
            log_json=reader.int("EMBED_LOG_JSON", 0, 0, 1) == 1,
            max_queue=reader.int("EMBED_MAX_QUEUE", cls.max_queue, 0, 10**9),
            static_key_rpm=reader.int("EMBED_STATIC_KEY_RPM", cls.static_key_rpm, 0, 10**9),
            static_key_tpm=reader.int("EMBED_STATIC_KEY_TPM", cls.static_key_tpm, 0, 10**12),
            max_job_inputs=reader.int("EMBED_MAX_JOB_INPUTS", cls.max_job_inputs, 1, 10**8),
            max_job_body_bytes=reader.int("EMBED_MAX_JOB_BODY_BYTES", cls.max_job_body_bytes, 1024, 2**40),
            max_file_bytes=reader.int("EMBED_MAX_FILE_BYTES", cls.max_file_bytes, 1024, 2**40),
            job_ttl=reader.int("EMBED_JOB_TTL", cls.job_ttl, 60, 10**8),
            file_ttl=reader.int("EMBED_FILE_TTL", cls.file_ttl, 60, 10**9),
            max_attempts=reader.int("EMBED_MAX_ATTEMPTS", cls.max_attempts, 1, 100),
            bulk_slots=reader.int("EMBED_BULK_SLOTS", cls.bulk_slots, 1, 1024),
            bulk_batch_tokens=reader.int("EMBED_BULK_BATCH_TOKENS", cls.bulk_batch_tokens, 0, 10**8),
            bulk_min_share=reader.float("EMBED_BULK_MIN_SHARE", cls.bulk_min_share, 0.0, 0.9),
            job_store=reader.str("EMBED_JOB_STORE", cls.job_store),
            job_record_grace=reader.int("EMBED_JOB_RECORD_GRACE", cls.job_record_grace, 0, 10**8),
            max_queued_inputs_per_key=reader.int("EMBED_MAX_QUEUED_INPUTS_PER_KEY", cls.max_queued_inputs_per_key,
                                                 0, 10**12),
            worker_dead_after=reader.float("EMBED_WORKER_DEAD_AFTER", cls.worker_dead_after, 1, 3600),
            declared_models=reader.list("EMBED_MODELS"),
            declared_rerank_models=reader.list("EMBED_RERANK_MODELS"),
            catalogue_ttl=reader.int("EMBED_CATALOGUE_TTL", cls.catalogue_ttl, 60, 10**9),
            cold_start_timeout=reader.float("EMBED_COLD_START_TIMEOUT", cls.cold_start_timeout, 0, 86400),
            drain_timeout=reader.float("EMBED_DRAIN_TIMEOUT", cls.drain_timeout, 0, 86400),
            accept_token_ids=reader.bool("EMBED_ACCEPT_TOKEN_IDS", cls.accept_token_ids),
            webhook_url=reader.str("EMBED_WEBHOOK_URL", cls.webhook_url),
            webhook_secret=reader.str("EMBED_WEBHOOK_SECRET", cls.webhook_secret),
            webhook_retry_hours=reader.float("EMBED_WEBHOOK_RETRY_HOURS", cls.webhook_retry_hours, 0.0001, 720),
            webhook_retry_delay=reader.float("EMBED_WEBHOOK_RETRY_DELAY", cls.webhook_retry_delay, 0.01, 3600),
            webhook_timeout=reader.float("EMBED_WEBHOOK_TIMEOUT", cls.webhook_timeout, 0.1, 60),
            webhook_allow_private=reader.bool("EMBED_WEBHOOK_ALLOW_PRIVATE", cls.webhook_allow_private),
            max_windows=reader.int("EMBED_MAX_WINDOWS", cls.max_windows, 1, 100_000),
            cache_url=reader.str("EMBED_CACHE_URL", cls.cache_url),
            cache_scope=reader.str("EMBED_CACHE_SCOPE", cls.cache_scope).lower(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError for values that parse but cannot work together."""
        parts = urlsplit(self.redis_url)
        if parts.scheme == "sentinel":
            parse_sentinel_url(self.redis_url)
        elif parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("EMBED_REDIS_URL must be a redis://, rediss://, unix:// or sentinel:// URL, "
                              f"got {parts.scheme!r}")
        self._validate_cache()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"EMBED_DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"EMBED_DTYPE must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.packed not in ("auto", "on", "off"):
            raise ConfigError(f"EMBED_PACKED must be auto, on or off, got {self.packed!r}")
        if self.deterministic not in ("auto", "on", "off"):
            raise ConfigError(f"EMBED_DETERMINISTIC must be auto, on or off, got {self.deterministic!r}")
        if self.attention not in ATTENTION_KERNELS:
            raise ConfigError(f"EMBED_ATTENTION must be one of {', '.join(ATTENTION_KERNELS)}, got {self.attention!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"EMBED_LOG_LEVEL must be a logging level name, got {self.log_level!r}")
        for name in (self.served_model_name, *self.model_aliases):
            if not _NAME_RE.match(name):
                raise ConfigError(f"model name {name!r} (EMBED_MODEL_NAME/EMBED_MODEL_ALIASES) has characters outside [A-Za-z0-9._:/-]")
        if self.worker_role not in {role.value for role in WorkerRole}:
            raise ConfigError(f"EMBED_WORKER_ROLE must be embed or rerank, got {self.worker_role!r}")
        if self.worker_role == WorkerRole.RERANK and not self.rerank_model:
            raise ConfigError("EMBED_WORKER_ROLE=rerank (or `embedserve worker --rerank`) needs EMBED_RERANK_MODEL")
        if self.rerank_model:
            for name in (self.served_rerank_name, *self.rerank_model_aliases):
                if not _NAME_RE.match(name):
                    raise ConfigError(f"model name {name!r} (EMBED_RERANK_MODEL_NAME/EMBED_RERANK_MODEL_ALIASES) "
                                      "has characters outside [A-Za-z0-9._:/-]")
            if self.served_rerank_name == self.served_model_name:
                # Both would heartbeat under one registry name and the API could not tell them apart.
                raise ConfigError(f"EMBED_RERANK_MODEL_NAME ({self.served_rerank_name!r}) must differ from the "
                                  "embedding model's name (EMBED_MODEL_NAME)")
        if self.visibility_timeout <= self.task_time_limit:
            raise ConfigError(
                f"EMBED_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must be above EMBED_TASK_TIME_LIMIT "
                f"({self.task_time_limit}s), or Redis would hand a running task to a second worker"
            )
        for key in self.api_keys:
            if len(key) < 8 or any(c.isspace() for c in key):
                raise ConfigError("each EMBED_API_KEYS entry must be at least 8 characters with no spaces")
        if self.webhook_url or self.webhook_secret:
            # The address is checked where it is used (api/app.py at start, and before every attempt):
            # resolving a name here would make reading settings depend on DNS.
            try:
                url_safety.parse(self.webhook_url)
                signing.secret_bytes(self.webhook_secret)
            except (url_safety.UnsafeURL, signing.BadSecret) as exc:
                raise ConfigError(f"EMBED_WEBHOOK_URL and EMBED_WEBHOOK_SECRET go together: {exc}") from None

    def _validate_cache(self) -> None:
        if self.cache_scope not in CACHE_SCOPES:
            raise ConfigError(f"EMBED_CACHE_SCOPE must be key or global, got {self.cache_scope!r}")
        if not self.cache_url:
            return
        if urlsplit(self.cache_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("EMBED_CACHE_URL must be a redis://, rediss:// or unix:// URL, "
                              f"got {redact_url(self.cache_url)!r}")
        if self.cache_url.rstrip("/") == self.redis_url.rstrip("/"):
            # The broker must keep noeviction; a cache needs eviction: one Redis cannot be both.
            raise ConfigError("EMBED_CACHE_URL must name a Redis of its own, not EMBED_REDIS_URL's: the cache "
                              "needs an LRU/LFU eviction policy, the broker's Redis must keep noeviction")

    def batch_tokens(self, device_type: str, packed: bool = False, gpu_budget: int | None = None) -> int:
        """The forward pass's token budget: the setting, or the default for `device_type` and packing.

        On a GPU the default is `gpu_budget`, sized from its free memory (worker/token_budget.py),
        when the worker could measure it; a set EMBED_MAX_BATCH_TOKENS always wins.
        """
        if self.max_batch_tokens:
            return self.max_batch_tokens
        if device_type != "cpu":
            return gpu_budget or defaults.MAX_BATCH_TOKENS
        return defaults.MAX_BATCH_TOKENS_CPU_PACKED if packed else defaults.MAX_BATCH_TOKENS_CPU

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
        return _aliases(self.model_aliases, hf_id, self.served_model_name)

    @property
    def served_rerank_name(self) -> str:
        """The name clients use for the reranker ("" when none is configured)."""
        return self.rerank_model_name or self.rerank_model.rstrip("/").rsplit("/", 1)[-1]

    @property
    def served_rerank_aliases(self) -> tuple[str, ...]:
        """The reranker's aliases, plus its full Hugging Face id when it differs from the name."""
        return _aliases(self.rerank_model_aliases, self.rerank_model, self.served_rerank_name)

    def __repr__(self) -> str:
        fields = dataclasses.asdict(self)
        fields["api_keys"] = f"<{len(self.api_keys)} redacted>"
        fields["metrics_token"] = "<redacted>" if self.metrics_token else ""
        fields["redis_url"] = redact_url(self.redis_url)
        fields["redis_sentinel_password"] = "<redacted>" if self.redis_sentinel_password else ""
        fields["webhook_secret"] = "<redacted>" if self.webhook_secret else ""
        fields["cache_url"] = redact_url(self.cache_url)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """What a sentinel:// EMBED_REDIS_URL names: the sentinels, the master's name, and how to log in to the master."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse `sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]`, or raise ConfigError.

    The sentinels are asked for the current master of `master_name`; the user and password are the
    master's (and its replicas'): a password of the sentinels themselves is EMBED_REDIS_SENTINEL_PASSWORD.
    """
    def bad(why: str) -> ConfigError:
        return ConfigError(f"EMBED_REDIS_URL: {why}; the sentinel form is {_SENTINEL_FORM}")

    scheme, _, rest = url.partition("://")
    if scheme != "sentinel":
        raise bad(f"scheme {scheme!r} is not sentinel")
    if "?" in rest or "#" in rest:
        raise bad("query strings and fragments are not supported")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")  # as redis-py reads a redis:// URL's
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels = []
    for entry in hosts.split(","):
        entry = entry.strip()
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?", entry)
        if not match:
            raise bad(f"{entry!r} is not a host or host:port" if entry else "a sentinel address is empty")
        port = int(match.group(2)) if match.group(2) else SENTINEL_DEFAULT_PORT
        if not 1 <= port <= 65535:
            raise bad(f"port {port} of {entry!r} is out of range")
        sentinels.append((match.group(1).strip("[]"), port))
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", parts[0]):
        raise bad("the path must name the master (letters, digits, '.', '_', '-')")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise bad(f"after the master's name only a database number may follow, got {'/'.join(parts[1:])!r}")
    return SentinelURL(sentinels=tuple(sentinels), master=parts[0], db=int(parts[1]) if len(parts) == 2 else 0,
                       username=username, password=password)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _aliases(configured: tuple[str, ...], hf_id: str, name: str) -> tuple[str, ...]:
    extra = (hf_id,) if _looks_like_hub_id(hf_id) and hf_id != name else ()
    return tuple(dict.fromkeys((*configured, *extra)))


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

    def bool(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

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
