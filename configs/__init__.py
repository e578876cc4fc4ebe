"""The shipped configs: this folder is the package ``sracl_lightning.configs`` of an install (see setup.cfg's
``package_dir`` and :mod:`sracl_lightning.resources`). It holds YAML files only; nothing here is imported."""
