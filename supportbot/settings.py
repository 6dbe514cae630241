"""All configuration, from environment variables (prefix ``SUPPORTBOT_``, plus ``DATABASE_URL``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Offline by default: nothing may be fetched from the hub, and no library may phone home.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}.items():
    os.environ.setdefault(_name, _value)


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "supportbot"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPPORTBOT_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data and cache folder.")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "SUPPORTBOT_DATABASE_URL"),
        description="PostgreSQL (>= 15, with pgvector). Unset: the embedded server in HOME/pgdata.",
    )
    db_pool_max: int = Field(default=8, ge=1)
    log_level: str = Field(default="WARNING", description="Python logging level.")

    # Embeddings
    embedding_backend: str = Field(default="local", pattern="^(local|openai)$")
    embedding_model: str = Field(
        default="", description="sentence-transformers name or path; empty = packaged all-MiniLM-L6-v2."
    )
    embedding_url: str = Field(default="", description="OpenAI-compatible base URL (backend=openai).")
    embedding_api_key: str = ""
    embedding_batch_size: int = Field(default=64, ge=1)

    # Ingestion
    max_file_mb: float = Field(default=50.0, gt=0)
    chunk_tokens: int = Field(default=224, ge=32, le=512)
    chunk_overlap_tokens: int = Field(default=32, ge=0)

    # Search
    search_candidates: int = Field(default=40, ge=1, description="Rows each ranker feeds into RRF.")
    hnsw_ef_search: int = Field(default=100, ge=1)
    # Reciprocal-rank fusion weights; full text (BM25) leads on manuals (tuned on the S10 dev set).
    search_vector_weight: float = Field(default=1.0, ge=0)
    search_text_weight: float = Field(default=1.5, ge=0)

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"


@lru_cache
def get_settings() -> Settings:
    return Settings()
