"""A self-contained install: the configs and prompt templates ship with the package, the console scripts work from
any directory, and the constructor defaults are those of ``configs/default.yaml``."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sracl_lightning import resources
from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.semantic.prompts import shipped_template
from sracl_lightning.training.datamodule import SeqRecDataModule
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
SCRIPTS = ("sracl-train", "sracl-evaluate", "sracl-semantic", "sracl-tables", "sracl-recommend")
#: What a build reads: the package, the configs and the metadata files setup.cfg names.
BUILD_INPUTS = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "sracl_lightning", "configs")


def shipped_yaml(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.yaml"))}


def qualified(obj: object) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def signature_defaults(cls: type) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def assert_same_defaults(where: str, cls: type, values: dict) -> None:
    """Every value ``values`` sets equals ``cls``'s signature default; a ``class_path`` entry, recursively."""
    defaults = signature_defaults(cls)
    for name, value in values.items():
        key = f"{where}.{name}"
        assert name in defaults, f"{key} is set in default.yaml but {qualified(cls)} has no default for it"
        default = defaults[name]
        if isinstance(value, dict) and "class_path" in value:
            module, _, name = value["class_path"].rpartition(".")
            assert getattr(importlib.import_module(module), name) is default, \
                f"{key}: default.yaml says {value['class_path']}, {qualified(cls)}'s default is {qualified(default)}"
            assert_same_defaults(f"{key}.init_args", default, value.get("init_args") or {})
        else:
            default = list(default) if isinstance(default, tuple) else default
            assert value == default, f"{key}: default.yaml says {value!r}, {qualified(cls)}'s default is {default!r}"


# ----------------------------------------------------------------------------------------------- in the checkout
@pytest.mark.unit
def test_constructor_defaults_are_those_of_default_yaml():
    config = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    assert config["model"]["class_path"] == "sracl_lightning.SRACLModule"
    assert_same_defaults("model.init_args", SRACLModule, config["model"]["init_args"])
    assert_same_defaults("data", SeqRecDataModule, config["data"])
    # The values the issue was about, spelled out: the backbone alone on the embedded synthetic dataset.
    model, data = signature_defaults(SRACLModule), signature_defaults(SeqRecDataModule)
    assert model["user_contrast"] is model["item_contrast"] is model["base_objective"] is None
    assert data["dataset"] == "data/raw/synthetic/reviews_Synthetic_5.json.gz" and data["source_format"] is None


@pytest.mark.unit
def test_importlib_resources_finds_the_repository_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is looked up relative to the working directory
    try:
        root = importlib.resources.files(resources.CONFIG_PACKAGE)
    except ModuleNotFoundError:
        pytest.fail("sracl_lightning.configs is not importable: the install predates setup.cfg's package_dir "
                    "mapping; reinstall with `pip install --no-deps -e .`")
    assert (root / "default.yaml").is_file() and (root / "prompts" / "amazon.yaml").is_file()
    # One copy: the editable install maps the repository's configs/ itself, so no file can drift.
    assert Path(str(root)).resolve() == CONFIGS.resolve() == resources.config_dir().resolve()
    assert resources.default_config().samefile(CONFIGS / "default.yaml")
    assert resources.prompt_template("yelp.yaml").samefile(CONFIGS / "prompts" / "yelp.yaml")
    assert shipped_yaml(Path(str(root))) == shipped_yaml(CONFIGS)


@pytest.mark.unit
def test_config_names_resolve_to_shipped_files_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    beauty = CONFIGS / "sracl" / "beauty.yaml"
    for value in ("sracl/beauty.yaml", "configs/sracl/beauty.yaml"):
        assert Path(resources.packaged_config(value)).samefile(beauty)
    (tmp_path / "configs" / "sracl").mkdir(parents=True)
    (tmp_path / "configs" / "sracl" / "beauty.yaml").write_text("{}\n")
    assert resources.packaged_config("configs/sracl/beauty.yaml") == "configs/sracl/beauty.yaml", "a file wins"
    assert resources.packaged_config("nope.yaml") == "nope.yaml", "left for the parser to report"
    argv = resources.with_packaged_configs(["--config", "sracl/beauty.yaml", "--config=debug.yaml", "--seed", "1"])
    assert argv == ["--config", str(resources.config_dir() / "sracl/beauty.yaml"),
                    f"--config={resources.config_dir() / 'debug.yaml'}", "--seed", "1"]
    for value in ("amazon.yaml", "prompts/amazon.yaml", "configs/prompts/amazon.yaml"):
        assert shipped_template(value).samefile(CONFIGS / "prompts" / "amazon.yaml")
    with pytest.raises(FileNotFoundError, match="no shipped config"):
        resources.config_file("nope.yaml")


# ----------------------------------------------------------------------------------------------- a real install
@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --no-deps --target T .`` of a copy of the build inputs (offline; the checkout is not written)."""
    base = tmp_path_factory.mktemp("install")
    source, target = base / "src", base / "T"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif path.is_file():
            shutil.copy2(path, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True, text=True,
                   timeout=120)
    return target


def installed_env(target: Path) -> dict[str, str]:
    """The environment of an installed command: the install first on the path, never the checkout."""
    return {**os.environ, "PYTHONPATH": str(target), "SRACL_DEBUG": ""}


@pytest.mark.integration
def test_a_non_editable_install_ships_every_config_and_every_script(installed, tmp_path):
    assert shipped_yaml(installed / "sracl_lightning" / "configs") == shipped_yaml(CONFIGS)
    assert sorted(p.name for p in (installed / "bin").iterdir()) == sorted(SCRIPTS)
    distribution = importlib.metadata.Distribution.at(next(installed.glob("sracl_lightning-*.dist-info")))
    scripts = {ep.name: ep for ep in distribution.entry_points if ep.group == "console_scripts"}
    assert sorted(scripts) == sorted(SCRIPTS) and all(callable(ep.load()) for ep in scripts.values())
    # From an empty directory, the installed package finds its own copy (not the checkout's).
    probe = ("import sracl_lightning.resources as r; print(r.__file__); print(r.config_dir()); "
             "print(r.default_config()); print(r.prompt_template('yelp.yaml'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=installed_env(installed), check=True,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert all(Path(line).resolve().is_relative_to(installed.resolve()) for line in out), out
    help_text = subprocess.run([sys.executable, str(installed / "bin" / "sracl-tables"), "--help"], cwd=tmp_path,
                               env=installed_env(installed), check=True, capture_output=True, text=True, timeout=60)
    assert help_text.stdout.startswith("usage: sracl-tables")


@pytest.mark.integration
@pytest.mark.slow  # ~15 s (two train.py subprocesses); the installed resources probe above stays in the default
def test_installed_sracl_train_prints_the_checkout_configuration(installed, tmp_path):
    """``sracl-train --print_config`` from an empty directory equals ``python train.py --print_config`` in the
    checkout: default.yaml is found, and nothing in it depends on where it is read from."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    commands = {
        "checkout": ([sys.executable, str(REPO_ROOT / "train.py"), "--print_config"], REPO_ROOT, env),
        "installed": ([sys.executable, str(installed / "bin" / "sracl-train"), "--print_config"], empty,
                      installed_env(installed)),
    }
    processes = {name: subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for name, (command, cwd, env) in commands.items()}
    outputs = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"{name}: {stderr[-2000:]}"
        outputs[name] = stdout
    assert "user_contrast: null" in outputs["checkout"] and "callbacks:" in outputs["checkout"]
    assert outputs["installed"] == outputs["checkout"]
