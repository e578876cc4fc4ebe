"""Interaction data: source files and their catalog, 5-core conversion into the processed layout, leave-one-out
samples and the :class:`~sracl_lightning.datasets.batch.SeqBatch` every model takes. Plain PyTorch and polars."""
