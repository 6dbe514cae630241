"""All configuration, from environment variables (prefix ``SUPPORTBOT_``, plus ``DATABASE_URL``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    # OpenMP threads that spin while waiting make 2-thread generation ~5x slower when anything else
    # runs on the machine (measured: ~2 vs ~9 tokens/s); passive waiting costs little when idle.
    "OMP_WAIT_POLICY": "PASSIVE",
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
    db_wait_s: float = Field(
        default=3.0, gt=0, description="How long a request waits for a database connection (a restart takes "
        "about 1 s) before the customer gets a 503 with Retry-After."
    )
    embedded_pg_check_s: float = Field(
        default=1.0, ge=0, description="Seconds between checks that the embedded PostgreSQL runs (it is started "
        "again when it died); 0 = not supervised."
    )
    embedded_pg_shared_buffers: str = Field(
        default="auto", pattern=r"^(auto|[0-9]+ ?(kB|MB|GB|TB))$",
        description="The embedded PostgreSQL's buffer cache (e.g. 2GB), applied when it starts; auto = a quarter "
        "of the memory (the cgroup limit in a container), 128MB to 8GB. At 1M chunks PostgreSQL's default of "
        "128MB made filtered search p50 48-58 ms, 4GB 26-29 ms.")
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
    bm25: Literal["impact", "exact", "engine"] = Field(
        default="impact", description="Full-text side of search: impact (the best postings of each word, then exact "
        "scores; cost bounded by the question, not the table), exact (every matching chunk scored: for evaluation) "
        "or engine (an external Manticore/Sphinx server at bm25_engine_url; impact when it cannot be reached)."
    )
    bm25_engine_url: str = Field(
        default="sphinxql://127.0.0.1:9306/supportbot_chunks",
        description="engine: the full-text engine's SphinxQL address and index (deploy/fulltext-engine.conf).")
    bm25_engine_timeout_s: float = Field(default=2.0, gt=0, description="engine: connect timeout, seconds.")
    bm25_postings_per_word: int = Field(default=5000, ge=1,
                                        description="impact: postings read per question word in the first pass.")
    bm25_max_postings_per_word: int = Field(
        default=80000, ge=1, description="impact: when a chunk left unscored could still outrank the k-th result, "
        "read on, four times deeper, up to this many postings per word (= bm25_postings_per_word: one depth, "
        "then at most one pass scoring more candidates).")
    search_parallel: bool = Field(
        default=True, description="Run the vector side on a second pooled connection while the full-text side "
        "runs (when one is free within 50 ms; otherwise one after the other).")
    hnsw_ef_search: int = Field(
        default=400, ge=1, le=1000, description="HNSW candidate list per search (recall@10 0.95 on the benchmark's "
        "100k chunks with migration 0009's graph; 1000 is pgvector's most).")
    ivfflat_probes: int = Field(
        default=20, ge=1, le=32768, description="IVFFlat lists searched per query, when the store's vector index is "
        "IVFFlat (supportbot vector-index build --kind ivfflat): about 20k chunks read per query at the default "
        "chunks/1000 lists. At 1M chunks, recall@10 0.99 on the benchmark's mixed rows (0.97 at 10), 1.00 on its "
        "near-copies.")
    # Reciprocal-rank fusion weights; full text (BM25) leads on manuals (tuned on the S10 dev set).
    search_vector_weight: float = Field(default=1.0, ge=0)
    search_text_weight: float = Field(default=1.5, ge=0)

    # Answering
    answer_passages: int = Field(default=3, ge=1, le=10, description="Passages in the prompt.")
    min_relevance: float = Field(
        default=0.27, ge=0, le=1, description="Below this (similarity × vocabulary coverage) the bot hands off."
    )
    min_span_match: float = Field(
        default=0.2, ge=0, le=1,
        description="Below this (IDF-weighted share of the question's terms the chosen span holds) the bot hands off.",
    )
    synonym_similarity: float = Field(
        default=0.55, ge=0, le=1,
        description="A question word the knowledge base never uses still counts as covered when the embedder puts it "
        "this close to a word of the retrieved passages (\"orange\" for \"amber\"); 0 turns that off.",
    )
    answer_mode: str = Field(
        default="compose", pattern="^(compose|generate)$",
        description="compose: quote the span that answers (right for the packaged 135M model); generate: the model "
        "writes, each sentence checked against the passages (for a capable model; measure with `supportbot compare`).",
    )
    condense: str = Field(default="heuristic", pattern="^(heuristic|llm|off)$")
    history_turns: int = Field(default=6, ge=0, description="Messages of the conversation the chain sees.")

    # HTTP API
    agent_token: str = Field(default="", description="Bearer token for /api/documents; empty = those endpoints off.")
    ops_token: str = Field(default="", description="Bearer token for /api/train; empty = training over HTTP off.")
    metrics_token: str = Field(default="", description="Bearer token for /metrics; empty = /metrics open to anyone "
                               "who reaches the port (keep it off the public proxy).")
    host: str = "127.0.0.1"
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, description="On SIGTERM, answers in flight get this long to finish; then open "
        "connections (chat websockets, stalled clients) are closed and the server exits."
    )
    port: int = Field(default=8000, ge=1, le=65535)
    # Before any answer has finished, at most this many are admitted (a model writing answers behind a
    # lock took ~13 s each on 2 cores). Once throughput is measured, the bound follows it (bot/admission.py).
    max_queued_answers: int = Field(
        default=8, ge=1,
        description="Answers in progress or waiting, per process (API and chat together), before throughput is "
        "measured, and the least admitted after; more questions are refused at once (HTTP 503).",
    )
    max_answer_wait_s: float = Field(
        default=10.0, ge=0,
        description="Admit as many answers as the measured throughput (last 30 s) finishes in this time; "
        "0 = a fixed bound of SUPPORTBOT_MAX_QUEUED_ANSWERS.",
    )
    retry_after_s: int = Field(
        default=15, ge=1,
        description="Retry-After of those 503s before throughput is measured; after, the time the answers in "
        "flight need at the measured rate.",
    )
    # Per client address and process, a sliding minute; 0 = no limit. A person asks a few questions a minute.
    rate_limit_questions: int = Field(default=60, ge=0, description="Questions per client per minute (API, /v1).")
    rate_limit_feedback: int = Field(default=60, ge=0, description="Ratings per client per minute.")
    rate_limit_handoffs: int = Field(default=10, ge=0, description="Handoff requests per client per minute.")
    max_request_kb: int = Field(
        default=256, ge=16, description="Largest request body (KiB) outside uploads; more is refused (413) unread."
    )
    max_upload_mb: float = Field(
        default=200.0, gt=0, description="Largest upload request (MB, all files together); each file also has "
        "SUPPORTBOT_MAX_FILE_MB. Uploads without the agent token are refused before their body is read."
    )

    # Generation
    llm_backend: str = Field(default="local", pattern="^(local|openai)$")
    base_model: str = Field(
        default="", description="Hugging Face causal LM (local folder or cached hub id); empty = packaged SmolLM2."
    )
    llm_dtype: str = Field(
        default="auto", pattern="^(auto|float32|bfloat16|float16)$", description="Local model dtype; auto = measured."
    )
    llm_url: str = Field(default="", description="OpenAI-compatible URL, e.g. http://host:8000/v1 (backend openai).")
    llm_api_key: str = ""
    llm_model: str = Field(default="", description="Model name on the server; empty = the first one it lists.")
    llm_adapter_root: str = Field(
        default="",
        description="HOME/adapters as the inference server sees it (vLLM loads adapters from its own disk); "
        "empty = the same path as here (a shared volume).",
    )
    max_new_tokens: int = Field(default=160, ge=1)
    # On CPU a small model costs about as much per step for 8 sequences as for 1 (per-op overhead, not
    # arithmetic), so decoding concurrent answers together multiplies throughput; see bot/batching.py.
    batching: str = Field(
        default="continuous", pattern="^(continuous|off)$",
        description="Local model: continuous = concurrent generations decode together, a new one joins between "
        "steps; off = one generation at a time (a lock).",
    )
    max_batch_size: int = Field(
        default=16, ge=1, description="Local model: most sequences decoding together; more requests wait to join."
    )

    # Chat UI and agents
    agents: str = Field(
        default="",
        description='Agents who may sign in to the chat: "name:HASH,name2:HASH" '
        "(make a HASH with `supportbot agents hash-password NAME`; passwords are never stored in clear).",
    )
    chat_secret: str = Field(
        default="",
        description="Signs chat sign-ins (Chainlit JWTs); empty = generated once in HOME/chat/auth-secret. "
        "Set the same value on every replica.",
    )
    public_search: bool = Field(
        default=False, description="Open POST /api/search (raw passages) to anyone; default: agents' token only."
    )
    store_personal_data: bool = Field(
        default=False,
        description="Store what customers type as sent. Default (false): card numbers, IBANs, e-mail addresses, "
        "phone numbers and similar are stored as placeholders (<CARD>, <EMAIL>, …) in conversations, feedback and "
        "handoff transcripts, so the human agent asks the customer for them again.",
    )
    cors_origins: str = Field(
        default="",
        description="Origins (comma-separated, e.g. https://support.example.com) whose pages may call the API and "
        "the chat from the browser; empty = same origin only. Never '*': the chat carries agents' sign-in cookies.",
    )
    chat_collection: str = Field(
        default="", description="Collection the chat answers from and agents upload into; empty = all / 'default'."
    )

    # Fine-tuning data
    finetune_system_prompt: str = Field(
        default="You are a friendly, concise customer-support agent. Help the customer in a warm, clear tone.",
        description="System message of every training example (the support persona).",
    )
    finetune_max_tokens: int = Field(
        default=1024, ge=32, description="Training examples longer than this (chat-template tokens) are dropped."
    )
    finetune_val_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of conversations held out.")
    finetune_seed: int = Field(default=13, description="Seed of the train/validation split.")
    finetune_keep_handles: str = Field(
        default="",
        description="Comma-separated @handles that redaction keeps besides the brands named in the tickets "
        "(organisation accounts, not people).",
    )

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    def cors_origin_list(self) -> list[str]:
        """SUPPORTBOT_CORS_ORIGINS as a list; '*' is refused (it would expose signed-in agents' chats)."""
        origins = [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]
        if "*" in origins:
            raise ValueError("SUPPORTBOT_CORS_ORIGINS: list the origins (https://support.example.com), not '*'")
        return origins


@lru_cache
def get_settings() -> Settings:
    return Settings()
