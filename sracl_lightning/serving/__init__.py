"""Trained models in use: top-k recommendations from a checkpoint (API and command line)."""
