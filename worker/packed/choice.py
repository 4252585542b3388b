"""Which forward a model runs: packed (padding-free) or padded, from EMBED_PACKED and EMBED_ATTENTION.

- BERT-family encoders (worker/packed/encoder.py): `auto` packs on the CPU only. There the linear
  layers' cost follows the tokens computed, so padding is pure waste; on a GPU the padded
  forward was measured at 0.97-0.99x a plain forward (docs/benchmarks.md).
- Qwen3-family decoders (worker/packed/decoder.py): `auto` packs on the CPU (measured:
  docs/benchmarks.md); on CUDA only once a GPU measurement says so (AUTO_PACKS_DECODERS_ON_CUDA,
  off for now, see there). EMBED_ATTENTION picks the decoder's attention kernel.
- `on` packs whatever can be packed, on any device; `off` never packs (the padded fallback).

The batch-invariant forward (EMBED_DETERMINISTIC, worker/invariant/) packs whatever can be packed
whatever EMBED_PACKED says, with `sdpa_groups` attention over exact-length groups: a row's vector
is then the same from a packed or a "padded" worker, and no row is ever padded.
"""

from __future__ import annotations

import logging

import torch

from embedserve.settings import ConfigError
from worker.packed.decoder import AUTO_PACKS_DECODERS_ON_CUDA, PackedDecoder, decoder_unsupported_reason, resolve_kernel
from worker.packed.encoder import PackedEncoder, unsupported_reason

log = logging.getLogger(__name__)


def choose_packed_forward(model, device: torch.device, dtype: torch.dtype, setting: str,
                          attention: str = "auto", invariant: bool = False) -> PackedEncoder | PackedDecoder | None:
    """The padding-free forward for `model` when EMBED_PACKED=`setting` allows it, else None (padded).

    `invariant` (the batch-invariant forward) packs whatever can be packed, with exact-length groups.
    """
    if invariant:
        if decoder_unsupported_reason(model) is None:
            log.info("batch-invariant packed decoder forward (sdpa_groups, exact-length groups)")
            return PackedDecoder(model, "sdpa_groups", exact_groups=True)
        if unsupported_reason(model) is None:
            log.info("batch-invariant packed encoder forward (exact-length groups)")
            return PackedEncoder(model, exact_groups=True)
        return None
    if setting == "off":
        return None
    decoder = decoder_unsupported_reason(model) is None
    if setting == "auto" and device.type != "cpu" and not (decoder and AUTO_PACKS_DECODERS_ON_CUDA):
        return None
    if decoder:
        try:
            kernel = resolve_kernel(attention, device, dtype)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        log.info("packed decoder forward, attention kernel %s", kernel)
        return PackedDecoder(model, kernel)
    reason = unsupported_reason(model)
    if reason:
        if setting == "on":
            log.warning("EMBED_PACKED=on but this model runs padded: %s", reason)
        return None
    return PackedEncoder(model)
