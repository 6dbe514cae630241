"""Ingestion: parse manuals and FAQs, chunk, embed, store in Postgres/pgvector, and search them."""
