"""The semantic stage: item text and user histories to an LLM (or straight to the encoder, offline), text
embeddings, faiss neighbour pools of users and items, and the frozen tables training reads. Cached on disk."""
