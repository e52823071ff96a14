"""The model family registry: every family it lists is complete, and a kind it does not list is refused in one line."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import typing

import pytest

from tabduel.cli import build_parser
from tabduel.infra.config import ConfigError, ModelSettings
from tabduel.infra.tracking import FLAVOURS
from tabduel.models import registry
from tabduel.models.registry import STEPS, family
from tabduel.settings import MODEL_KINDS, SEARCH_FAMILIES, Config

FAMILIES = [pytest.param(f, id=f.kind) for f in registry.FAMILIES]
HEAVY = ("numpy", "pandas", "torch", "mlflow", "prefect", "xgboost", "sklearn", "matplotlib", "pyarrow", "optuna")


@pytest.mark.parametrize("fam", FAMILIES)
def test_a_registered_family_is_complete(fam):
    module = importlib.import_module(fam.module)
    missing = [name for name in ("fit", "save", "load", "predict") if not callable(getattr(module, name, None))]
    assert not missing, f"{fam.module} lacks {missing}"
    for name in fam.code_modules:
        assert importlib.util.find_spec(name) is not None, f"{fam.kind}: its cache key names {name}, which is no module"
    for package in fam.packages:
        importlib.metadata.version(package)  # raises PackageNotFoundError for a name that is no distribution
    assert fam.flavour in FLAVOURS, f"{fam.kind}: flavour {fam.flavour!r} is not one of {list(FLAVOURS)}"
    assert fam.steps in ("", *STEPS) and fam.summary and fam.hint


@pytest.mark.parametrize("fam", FAMILIES)
def test_a_registered_family_has_its_settings_section(fam):
    hints = typing.get_type_hints(Config)
    assert fam.kind in hints, f"Config has no [{fam.kind}] section"
    section = fam.config
    assert issubclass(section, ModelSettings) and ModelSettings.sections[fam.kind] is section
    assert dataclasses.is_dataclass(section) and section.__dataclass_params__.frozen
    assert isinstance(Config().model(fam.kind), section)
    has_device = "device" in {f.name for f in dataclasses.fields(section)}
    assert has_device == bool(fam.device), f"{fam.kind}: device {fam.device!r} but device setting: {has_device}"
    if fam.device:
        from tabduel.models.training import RESOLVE_DEVICE

        assert fam.device in RESOLVE_DEVICE


def test_the_registry_the_settings_and_the_cli_name_the_same_families():
    assert registry.kinds() == MODEL_KINDS
    train = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "train" in a.choices)
    kinds = next(a for a in train.choices["train"]._actions if getattr(a, "choices", None))
    assert tuple(kinds.choices) == registry.kinds()


def test_an_unknown_kind_is_refused_in_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        family("catboost")
    message = str(caught.value)
    assert "\n" not in message
    assert message == f"model family 'catboost' is not one of: {', '.join(registry.kinds())}"
    assert "mlp" in message and "xgboost" in message


def test_reading_the_registry_imports_no_family_and_no_heavy_library():
    probe = ("import json, sys\nfrom tabduel.models import registry\n"
             "facts = [(f.kind, f.config.__name__, f.summary) for f in registry.FAMILIES]\n"
             "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
    # A built-in family's module is imported only when used; a module that declares its own family is imported to
    # read its declaration, so it must import its heavy libraries inside its functions (checked above).
    assert [f.module for f in registry.BUILT_IN if f.module in loaded] == []


@pytest.mark.parametrize("fam", [pytest.param(f, id=f.kind) for f in registry.declared_families()])
def test_a_family_declared_in_its_module_is_whole_there(fam):
    module = importlib.import_module(fam.module)
    assert module.FAMILY is fam and fam.kind == fam.module.rsplit(".", 1)[1]
    assert fam.config.__module__ == fam.module, f"{fam.kind}: its settings section is not declared in {fam.module}"
    assert fam.kind in MODEL_KINDS and fam.kind in typing.get_type_hints(Config)
    parser = build_parser()
    train = next(a for a in parser._actions if getattr(a, "choices", None) and "train" in a.choices)
    kinds = next(a for a in train.choices["train"]._actions if getattr(a, "choices", None))
    flags = {s for a in kinds.choices[fam.kind]._actions for s in a.option_strings}
    assert {f"--{fam.kind}-{f.name}".replace("_", "-") for f in dataclasses.fields(fam.config)} <= flags


def test_the_registry_lists_the_built_in_families_then_those_their_modules_declare():
    assert registry.FAMILIES == registry.BUILT_IN + registry.declared_families()
    assert not {f.module for f in registry.BUILT_IN} & {f.module for f in registry.declared_families()}


def test_every_search_family_tunes_a_registered_family_that_names_it():
    from tabduel.search import families
    from tabduel.search.space import BASES
    from tabduel.settings import SEARCH_FAMILIES as CHOICES

    assert families.names() == CHOICES  # --families offers exactly the registered search families
    for search in families.SEARCH_FAMILIES:
        if search.members:  # a union family tunes its members' registered families
            assert all(family(families.search_family(m).model).search == m for m in search.members)
        else:
            assert family(search.model).search == search.name
        assert search.bases and set(search.bases) <= set(BASES)
    unions = {f.name for f in families.SEARCH_FAMILIES if f.members}
    assert unions == {"mlp_portfolio"}
    assert {f.search for f in registry.FAMILIES} - {""} == set(families.names()) - unions
    with pytest.raises(ConfigError, match=r"^search family 'svm' is not one of: mlp, xgboost, realmlp, tabm, "
                                          r"peer_realmlp, peer_tabm, peer_lgbm, peer_catboost, mlp_portfolio$"):
        families.search_family("svm")


@pytest.mark.parametrize("name", SEARCH_FAMILIES)
def test_a_search_family_rebuilds_the_spec_it_suggested(name):
    import optuna

    from tabduel.infra.config import SearchConfig
    from tabduel.search.families import search_family

    s = SearchConfig(study="t", trials=1)
    fam = search_family(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    trial = study.ask()
    spec = fam.suggest(trial, s, 1, ("ple",) if name == "mlp" else ())
    assert fam.rebuild(trial.params, s, 1) == spec
    assert fam.base(spec) in fam.bases
    assert [len(g) for g in fam.groups([(trial, spec), (trial, spec)])] == ([2] if fam.group else [1, 1])
