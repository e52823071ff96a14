"""Settings: strict building, one test per validator, TOML and flags."""

from __future__ import annotations

import pytest

from tabduel.cli import build_parser, flag, resolve_config
from tabduel.infra.config import flatten
from tabduel.infra.errors import ConfigError
from tabduel.settings import MODEL_KINDS, Config


def test_defaults_are_the_original_nn5():
    cfg = Config()
    assert cfg.mlp.hidden == (20, 10, 5) and cfg.mlp.activation == "sigmoid" and cfg.mlp.optimizer == "sgd"
    assert (cfg.mlp.lr, cfg.mlp.batch_size, cfg.mlp.epochs, cfg.mlp.seed) == (0.05, 200, 100, 4751)
    assert (cfg.features.train_frac, cfg.features.valid_frac) == (0.6, 0.2)


def test_round_trip_through_plain_dict():
    cfg = Config.from_dict({"mlp": {"hidden": [8, 4], "lr": 1}})
    assert cfg.mlp.hidden == (8, 4) and cfg.mlp.lr == 1.0
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_is_named_with_its_section_and_what_it_allows():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"mlp": {"learning_rate": 0.1}})
    assert str(err.value).startswith("unknown setting 'mlp.learning_rate' in [mlp]; allowed in [mlp]: hidden, ")
    assert "known in this section" not in str(err.value)


def test_unknown_section_is_named_as_a_section():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"trainer": {}})
    assert str(err.value).startswith("unknown section [trainer]")
    assert str(err.value).endswith("the sections are: pipeline, tracking, ingest, features, mlp, xgboost, linear, "
                                   "realmlp, tabm, peer_realmlp, peer_tabm, peer_lgbm, peer_catboost, "
                                   + "".join(f"{kind}, " for kind in MODEL_KINDS[9:]) + "evaluate, search, bench")


@pytest.mark.parametrize("section,key,value,match", [
    ("mlp", "lr", "fast", "'mlp.lr' must be a number"),
    ("mlp", "epochs", 2.5, "'mlp.epochs' must be an integer"),
    ("linear", "fit_intercept", "perhaps", "'linear.fit_intercept' must be true or false"),
    ("mlp", "activation", "softplus", "mlp.activation = 'softplus' is not one of"),
    ("pipeline", "models", ["mlp", "svm"], "pipeline.models = 'svm' is not one of"),
    ("mlp", "hidden", [8, 0], "mlp.hidden = .*widths must be at least 1"),
    ("mlp", "lr", 0, "mlp.lr = 0.0: must be positive"),
    ("mlp", "weight_decay", -1, "mlp.weight_decay = -1.0"),
    ("mlp", "dropout", 1.0, "mlp.dropout = 1.0"),
    ("mlp", "batch_size", 0, "mlp.batch_size = 0"),
    ("mlp", "epochs", 0, "mlp.epochs = 0"),
    ("mlp", "patience", -1, "mlp.patience = -1"),
    ("xgboost", "n_estimators", 0, "xgboost.n_estimators = 0"),
    ("xgboost", "learning_rate", 0, "xgboost.learning_rate = 0.0"),
    ("xgboost", "max_depth", -1, "xgboost.max_depth = -1"),
    ("xgboost", "min_child_weight", -1, "xgboost.min_child_weight = -1.0"),
    ("xgboost", "subsample", 1.5, "xgboost.subsample = 1.5"),
    ("xgboost", "colsample_bytree", 0, "xgboost.colsample_bytree = 0.0"),
    ("xgboost", "reg_lambda", -1, "xgboost.reg_lambda = -1.0"),
    ("xgboost", "reg_alpha", -1, "xgboost.reg_alpha = -1.0"),
    ("xgboost", "early_stopping_rounds", -1, "xgboost.early_stopping_rounds = -1"),
    ("xgboost", "n_jobs", -2, "xgboost.n_jobs = -2"),
    ("features", "train_frac", 1.0, "features.train_frac = 1.0"),
    ("features", "valid_frac", 0.0, "features.valid_frac = 0.0"),
    ("features", "valid_frac", 0.4, "train_frac \\+ valid_frac must leave rows for test"),
    ("evaluate", "dpi", 5, "evaluate.dpi = 5"),
])
def test_each_validator_names_its_one_violation(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({section: {key: value}})


def test_models_named_twice():
    with pytest.raises(ConfigError, match="a model is named twice"):
        Config.from_dict({"pipeline": {"models": ["mlp", "mlp"]}})


def test_flags_override_toml_which_overrides_defaults(tmp_path):
    toml = tmp_path / "settings.toml"
    toml.write_text('[mlp]\nlr = 0.01\nepochs = 7\n[features]\nonehot = ["hour"]\n')
    args = build_parser().parse_args(["run", "--config", str(toml), "--mlp-epochs", "3", "--mlp-hidden", "16,8"])
    cfg = resolve_config(args)
    assert (cfg.mlp.lr, cfg.mlp.epochs, cfg.mlp.hidden, cfg.features.onehot) == (0.01, 3, (16, 8), ("hour",))
    assert cfg.xgboost == Config().xgboost


def test_bad_toml_names_the_file(tmp_path):
    toml = tmp_path / "broken.toml"
    toml.write_text("[mlp\nlr = 1\n")
    args = build_parser().parse_args(["run", "--config", str(toml)])
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        resolve_config(args)


def test_help_lists_every_setting():
    commands = build_parser()._subparsers._group_actions[0].choices
    help_text = commands["run"].format_help()
    search_help = commands["search"].format_help()
    bench_help = commands["bench"].format_help()
    for name in flatten(Config().to_dict()):
        section, key = name.split(".")
        shown = {"search": search_help, "bench": bench_help}.get(section, help_text)
        assert flag(section, key) in shown, name
    assert "--source" in help_text and "--force" in help_text and "--config" in help_text


@pytest.mark.parametrize("meta, words", [
    ({"gt": 0}, "must be positive"),
    ({"ge": 0, "note": "0: no limit"}, "must not be negative (0: no limit)"),
    ({"ge": 2}, "must be at least 2"),
    ({"ge": 0, "lt": 1}, "must be in [0, 1)"),
    ({"gt": 0, "le": 1}, "must be in (0, 1]"),
    ({"ge": 1, "le": 6}, "must be between 1 and 6"),
])
def test_declared_bounds_read_as_the_checks_did(meta, words):
    from tabduel.infra.settings import bound_message

    assert bound_message(meta) == words


def test_every_bounded_model_setting_is_checked_once_by_the_machinery():
    import dataclasses

    from tabduel.infra.settings import BOUNDS, ModelSettings, within_bounds

    checked = 0
    for section, cls in ModelSettings.sections.items():
        for f in dataclasses.fields(cls):
            if any(f.metadata.get(b) is not None for b in BOUNDS):
                assert within_bounds(getattr(cls(), f.name), f.metadata), f"{section}.{f.name}: default out of bounds"
                bad = f.metadata["gt"] if f.metadata["gt"] is not None else (
                    f.metadata["ge"] - 1 if f.metadata["ge"] is not None else f.metadata["lt"] or f.metadata["le"] + 1)
                with pytest.raises(ConfigError, match=rf"^{section}\.{f.name} = .*: must "):
                    cls(**{f.name: type(getattr(cls(), f.name))(bad)})
                checked += 1
    assert checked > 40


def test_a_model_section_built_directly_checks_its_declared_choices():
    from tabduel.infra.model_sections import RealMLPConfig

    expected = r"^realmlp.activation = 'swish' is not one of: mish, selu, relu, silu, gelu$"
    with pytest.raises(ConfigError, match=expected):
        RealMLPConfig(activation="swish")  # not through the TOML/flag path, which checks choices on its own
