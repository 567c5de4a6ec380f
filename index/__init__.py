"""FAISS store of item embeddings with metadata: build, search, save and load one folder."""
from __future__ import annotations

from .store import EmbeddingIndex, IndexStoreError, ModelMismatchError, SearchResult

__all__ = ["EmbeddingIndex", "IndexStoreError", "ModelMismatchError", "SearchResult"]
