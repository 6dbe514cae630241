"""Shared core of supportbot: settings and the database (used by bot, ingestion, finetune)."""

__version__ = "0.1.0"
