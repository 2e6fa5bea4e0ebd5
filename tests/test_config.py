"""params.yaml validation: unknown keys, wrong types and unknown variant fields fail, naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel

from lesionlab.cli import main
from lesionlab.config import ParamsError, load_params, parse_params

RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def _with(edit):
    raw = copy.deepcopy(RAW)
    edit(raw)
    return raw


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.dataset == "synthetic"
    assert set(params.variants) == {
        "cnn_baseline",
        "cnn_aug",
        "cnn_class_weights",
        "cnn_aug_class_weights",
        "cnn_batchnorm",
        "cnn_elu",
        "cnn_batch64",
        "cnn_batch64_sog",
        "cnn_batch64_crop",
    }
    # the two preprocessing ablations are cnn_batch64 on other pixels, and are found as its twins
    assert params.preprocessing_pairs() == [["cnn_batch64_sog", "cnn_batch64"], ["cnn_batch64_crop", "cnn_batch64"]]
    assert params.preprocess("cnn_batch64_sog").color_constancy == "shades_of_gray"
    assert (
        params.preprocess("cnn_batch64_crop").resize == "crop"
        and params.preprocess("cnn_batch64") == params.preprocess()
    )


def test_an_ensemble_of_differently_preprocessed_members_is_refused():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ensembles"] = {"mixed": {"members": ["cnn_batch64", "cnn_batch64_sog"]}}
    with pytest.raises(ParamsError, match="preprocessed differently"):
        parse_params(raw)


def test_variant_overrides_train_defaults():
    params = parse_params(RAW)
    assert params.variant("cnn_batch64").batch_size == 64
    assert params.variant("cnn_batch64").activation == "elu"
    assert params.variant("cnn_baseline") == params.train


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["train"].update(epochz=3), r"train\.epochz: unknown key \(did you mean 'epochs'\?\)"),
        (
            lambda r: r["variants"]["cnn_aug"].update(augmnt=True),
            r"variants\.cnn_aug\.augmnt: unknown key \(did you mean 'augment'\?\)",
        ),
        (lambda r: r.update(splitt={}), r"splitt: unknown key \(did you mean 'split'\?\)"),
        (lambda r: r["train"].update(epochs="ten"), r"train\.epochs: Input should be a valid integer"),
        (lambda r: r["train"].update(augment="yes"), r"train\.augment: Input should be a valid boolean"),
        (lambda r: r["variants"]["cnn_elu"].update(activation="gelu"), r"variants\.cnn_elu\.activation"),
        (lambda r: r["split"].update(test_fraction=0.7), r"split\.test_fraction"),
        (lambda r: r.update(dataset="isic2031"), r"dataset: .*unknown dataset 'isic2031'"),
        (lambda r: r["compare"].update(baseline="cnn_nope"), r"compare.baseline 'cnn_nope' is not one of the variants"),
        (lambda r: r["synthetic"]["priors"].pop("df"), r"synthetic\.priors.*missing: \['df'\]"),
        (
            lambda r: r.update(dataset="ham10000"),
            r"dataset_source must be 'data/ham10000' for dataset 'ham10000'.*-S dataset_source=data/ham10000",
        ),
        (lambda r: r["prepare"].update(on_bad="ignore"), r"prepare\.on_bad: Input should be 'error' or 'skip'"),
        (lambda r: r["split"].update(method="predefined"), r"predefined needs a source with its own split"),
    ],
)
def test_bad_params_name_the_key(edit, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(_with(edit))


def test_unknown_variant_is_named():
    with pytest.raises(ParamsError, match="unknown variant 'cnn_nope'"):
        parse_params(RAW).variant("cnn_nope")


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match=str(bad)):
        load_params(bad)


def test_cli_fails_before_work_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(_with(lambda r: r["variants"]["cnn_aug"].update(augmnt=True))))
    assert main(["check-params", "--params", str(bad)]) == 2
    assert "variants.cnn_aug.augmnt: unknown key" in capsys.readouterr().err


def test_dvc_yaml_lists_only_existing_params():
    """Each stage's `params:` names keys that exist in params.yaml (so `dvc params diff` sees them)."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        fanned = {
            "train": "variants",
            "probe": "probes",
            "finetune": "finetunes",
            "tabular": "tabulars",
            "ensemble": "ensembles",
        }.get(name.removesuffix("_seed"), "variants")
        row = next(iter(RAW[fanned]))
        keys = [k.replace("${key}", row).replace("${item.variant}", row) for k in body.get("params", [])]
        for key in keys:
            node = RAW
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: param {key} not in params.yaml"
                node = node[part]


def test_explain_variants_must_be_image_models():
    import yaml
    from conftest import REPO

    from lesionlab.config import ParamsError, parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["explain"]["variants"] = ["cnn_baseline", "meta_gbm"]
    with pytest.raises(ParamsError, match=r"explain.variants: \['meta_gbm'\] is not an image model"):
        parse_params(raw)
    raw["explain"]["variants"] = ["cnn_baseline", "cnn_baseline"]
    with pytest.raises(ParamsError, match="listed twice"):
        parse_params(raw)


#: keys of defaults sections whose params.yaml value names this project's rows (which no code default can know)
ROW_REFERENCES = {("explain", "variants"), ("compare", "pairs")}


def test_params_yaml_states_every_default_and_the_code_agrees():
    """params.yaml is where defaults live: every key of every defaults section is written there, and the code's
    default (used only by a params.yaml that omits the key) is the same value."""
    from lesionlab.config import Params, _probe_defaults, read_yaml

    raw = read_yaml((REPO / "params.yaml").read_text(), "params.yaml")
    checked = 0
    for section, field in Params.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        code = _probe_defaults() if section == "probe" else model()
        given = raw.get(section) or {}
        assert sorted(set(model.model_fields) - set(given)) == [], f"params.yaml {section}: keys not written"
        for key, value in given.items():
            if (section, key) not in ROW_REFERENCES:
                assert getattr(code, key) == value, (
                    f"{section}.{key}: code {getattr(code, key)!r}, params.yaml {value!r}"
                )
                checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "overrides, defaults",
    [
        ("VariantParams", "TrainParams"),
        ("BackboneVariantParams", "BackboneParams"),
        ("TabularVariantParams", "TabularParams"),
        ("EnsembleVariantParams", "EnsembleParams"),
    ],
)
def test_override_models_are_derived_from_their_defaults(overrides, defaults):
    """Every default can be overridden, with the same bounds, and nothing else can (plus description/parent/members)."""
    from lesionlab import config

    over, base = getattr(config, overrides), getattr(config, defaults)
    assert set(over.model_fields) - set(base.model_fields) <= {"description", "parent", "members"}
    assert set(base.model_fields) <= set(over.model_fields)
    for key, info in base.model_fields.items():
        assert over.model_fields[key].default is None and over.model_fields[key].metadata == info.metadata, key


def test_seed_replicates_are_named_runs_of_the_same_row():
    params = load_params(REPO / "params.yaml")
    assert params.base.training_seeds == [params.base.seed, *params.base.replicate_seeds]
    assert params.replicates("cnn_aug") == ["cnn_aug", "cnn_aug.seed43", "cnn_aug.seed44"]
    assert params.replicates("lite0_probe+tta") == [
        "lite0_probe+tta",
        "lite0_probe.seed43+tta",
        "lite0_probe.seed44+tta",
    ]
    assert params.replicates("meta_gbm") == ["meta_gbm"] and params.replicates("image_mean") == ["image_mean"]
    same, name = params.replicate("cnn_aug", None)
    assert same is params and name == "cnn_aug"
    run, name = params.replicate("cnn_aug", 43)
    assert name == "cnn_aug.seed43" and run.base.seed == 43 and params.base.seed == 42
    assert run.variant(name) == params.variant("cnn_aug")  # the row's own settings, under the run's name
    run, name = params.replicate("lite0_full", 44)
    assert run.backbone_variant(name) == params.backbone_variant("lite0_full")
    with pytest.raises(ParamsError, match="not in base.replicate_seeds"):
        params.replicate("cnn_aug", 7)
    with pytest.raises(ParamsError, match="not a row trained per seed"):
        params.replicate("meta_gbm", 43)


@pytest.mark.parametrize(
    ("seeds", "message"), [([43, 43], "distinct"), ([42, 43], "repeats base.seed"), ([-1], "distinct")]
)
def test_replicate_seeds_are_checked(seeds, message):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["base"]["replicate_seeds"] = seeds
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_a_parent_must_be_a_row_and_parents_never_cycle():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["cnn_aug"]["parent"] = "cnn_agu"
    with pytest.raises(ParamsError, match="did you mean 'cnn_aug'"):
        parse_params(raw)
    raw["variants"]["cnn_aug"]["parent"] = "cnn_elu"  # cnn_elu -> ... -> cnn_class_weights -> cnn_baseline: fine
    parse_params(raw)
    raw["variants"]["cnn_baseline"]["parent"] = "cnn_aug"  # cnn_aug -> cnn_elu -> ... -> cnn_baseline -> cnn_aug
    with pytest.raises(ParamsError, match="cycle"):
        parse_params(raw)
