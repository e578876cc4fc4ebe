"""The Lightning edge: the DataModule, the command line (LightningCLI), callbacks, ``train`` and ``evaluate``, and
loading a finished run back (``trained.py``)."""
