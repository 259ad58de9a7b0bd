"""On-disk adapted models and fine-tuning checkpoints, under ``<cache dir>/adapted/<key>/``.

Per key (a :meth:`ResultCache.key` of kind ``"adapted"``):

* ``backbone.safetensors``: the adapted network's full state dict, with the base architecture's
  keys, so it also loads with ``create_backbone(<base>, weights=<file>)`` or ``--weights``;
* ``head.safetensors``: ``weight`` (K, m) and ``bias`` (K,) of the linear head, raw feature space;
* ``card.json``: provenance (base, method, recipe, seed, task, epochs, seconds, weight distance)
  and the sha256 of both files. Written last, so a card means a complete model;
* ``checkpoint.safetensors`` while training: trainable parameters, head, optimiser state, epoch,
  seconds and RNG state after the last finished epoch, with its key and payload digest in the
  metadata. Deleted once the model is saved.

Every write is atomic (:func:`rtcore._io.atomic_write`). A model is used only if its card names
the key and both files match their sha256; a checkpoint only if its key and payload digest match.
Anything else is refused: logged, listed in :attr:`ResultCache.rejected`, deleted, recomputed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write, file_sha256, remove_stale_temporaries, tensors_digest
from ..cache import Rejected, ResultCache

log = logging.getLogger(__name__)

BACKBONE_FILE, HEAD_FILE, CARD_FILE, CHECKPOINT_FILE = "backbone.safetensors", "head.safetensors", "card.json", \
    "checkpoint.safetensors"


@dataclass(frozen=True)
class StoredModel:
    """A verified adapted model read back from disk."""

    state: dict[str, torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor
    card: dict[str, Any]
    folder: Path


def _save_checkable(tensors: dict[str, torch.Tensor], path: str, key: str) -> None:
    """``save_file`` with the key in the metadata, so that the file also passes
    :func:`rtcore.models.check_safetensors_file`: that check refuses a file whose first byte is 0x80
    (the pickle protocol marker), which a header length of 128 mod 256 also produces, so the
    metadata is padded until the first byte differs."""
    from safetensors.torch import save_file

    for pad in range(4):
        save_file(tensors, path, metadata={"key": key, **({"pad": "_" * pad} if pad else {})})
        with open(path, "rb") as fh:
            if fh.read(1) != b"\x80":
                return


class AdaptedStore:
    """Adapted models and checkpoints of one :class:`ResultCache` (disabled cache: nothing is read or written)."""

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        self.enabled = cache.enabled
        #: False for a disabled or read-only cache: models are read, and what is trained stays in memory
        self.writable = cache.enabled and not getattr(cache, "read_only", False)
        self.root = cache.root / "adapted"
        if self.writable:
            remove_stale_temporaries(self.root)

    def _write(self, what: str, write: Any) -> bool:
        """Run ``write()``; a folder that cannot be written costs only the reuse (logged), never the result."""
        if not self.writable:
            return False
        try:
            write()
        except OSError as e:
            log.warning("could not store the %s under %s (%s); it is kept in memory only", what, self.root, e)
            self.writable = False
            return False
        return True

    def folder(self, key: str) -> Path:
        return self.root / key

    def _reject(self, path: Path, reason: str, files: tuple[str, ...]) -> None:
        log.warning("adapted model %s failed verification (%s); it is deleted and recomputed", path, reason)
        self.cache.rejected.append(Rejected(str(path), reason))
        for name in files:
            self._write("removal of a bad file", lambda name=name: (path.parent / name).unlink(missing_ok=True))

    # ------------------------------------------------------------ finished models

    def save_model(self, key: str, state: dict[str, torch.Tensor], weight: torch.Tensor, bias: torch.Tensor,
                   card: dict[str, Any]) -> Path | None:
        """Write the two safetensors files, then the card with their sha256; returns the folder."""
        d = self.folder(key)
        net = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        head = {"weight": weight.detach().float().cpu().contiguous(), "bias": bias.detach().float().cpu().contiguous()}

        def write() -> None:
            atomic_write(d / BACKBONE_FILE, lambda tmp: _save_checkable(net, tmp, key))
            atomic_write(d / HEAD_FILE, lambda tmp: _save_checkable(head, tmp, key))
            full = {**card, "key": key, "sha256": {BACKBONE_FILE: file_sha256(d / BACKBONE_FILE),
                                                   HEAD_FILE: file_sha256(d / HEAD_FILE)}}
            atomic_write(d / CARD_FILE, (json.dumps(full, indent=2, sort_keys=True, default=str) + "\n").encode())

        return d if self._write("adapted model", write) else None

    def load_model(self, key: str) -> StoredModel | None:
        """The verified model of ``key``, or None (absent, or refused and deleted)."""
        if not self.enabled:
            return None
        d = self.folder(key)
        card_path = d / CARD_FILE
        if not card_path.is_file():
            return None
        files = (CARD_FILE, BACKBONE_FILE, HEAD_FILE)
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            self._reject(card_path, f"unreadable card: {e}", files)
            return None
        if not isinstance(card, dict) or card.get("key") != key or not isinstance(card.get("sha256"), dict):
            self._reject(card_path, "the card does not name this key or has no sha256 entries", files)
            return None
        for name in (BACKBONE_FILE, HEAD_FILE):
            p = d / name
            if not p.is_file():
                self._reject(p, "file missing", files)
                return None
            if file_sha256(p) != card["sha256"].get(name):
                self._reject(p, "sha256 does not match the card (the file changed after it was written)", files)
                return None
        try:
            from safetensors.torch import load_file

            state = load_file(str(d / BACKBONE_FILE))
            head = load_file(str(d / HEAD_FILE))
            weight, bias = head["weight"], head["bias"]
        except Exception as e:  # noqa: BLE001 - an unreadable file is recomputed, never trusted
            self._reject(d / BACKBONE_FILE, f"unreadable: {type(e).__name__}: {e}", files)
            return None
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or not all(
                bool(torch.isfinite(t).all()) for t in (weight, bias, *state.values()) if t.is_floating_point()):
            self._reject(d / HEAD_FILE, "head shapes disagree or values are not finite", files)
            return None
        return StoredModel(state, weight, bias, card, d)

    def reject_model(self, key: str, reason: str) -> None:
        """Refuse a model that verified but cannot be used (e.g. it does not fit the base): delete it."""
        self._reject(self.folder(key) / CARD_FILE, reason, (CARD_FILE, BACKBONE_FILE, HEAD_FILE))

    # ------------------------------------------------------------ checkpoints

    def save_checkpoint(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Atomically replace the checkpoint of ``key`` (key and payload digest in the metadata)."""
        from safetensors.torch import save_file

        payload = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"key": key, "sha256": tensors_digest(payload)}
        self._write("checkpoint", lambda: atomic_write(self.folder(key) / CHECKPOINT_FILE,
                                                       lambda tmp: save_file(payload, tmp, metadata=meta)))

    def load_checkpoint(self, key: str) -> dict[str, torch.Tensor] | None:
        """The verified checkpoint of ``key``, or None (absent, or refused and deleted)."""
        if not self.enabled:
            return None
        p = self.folder(key) / CHECKPOINT_FILE
        if not p.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
        except Exception as e:  # noqa: BLE001
            self._reject(p, f"unreadable checkpoint: {type(e).__name__}: {e}", (CHECKPOINT_FILE,))
            return None
        if meta.get("key") != key or meta.get("sha256") != tensors_digest(tensors):
            self._reject(p, "checkpoint key or payload digest does not match", (CHECKPOINT_FILE,))
            return None
        return tensors

    def drop_checkpoint(self, key: str) -> None:
        self._write("checkpoint removal", lambda: (self.folder(key) / CHECKPOINT_FILE).unlink(missing_ok=True))
