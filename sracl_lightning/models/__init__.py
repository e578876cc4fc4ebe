"""Sequence encoders (the backbones), full-ranking scoring and the DDP-safe ranking metrics. Plain PyTorch."""
