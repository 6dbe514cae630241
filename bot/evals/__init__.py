"""Evaluations of retrieval, answers and tone on the user's own data."""
