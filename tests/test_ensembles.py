"""Ensembles read predictions only: known answers on hand-made members; stacking never scores a row it saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from lesionlab.config import EnsembleConfig, ParamsError, parse_params
from lesionlab.data.taxonomy import HAM10000_CLASSES
from lesionlab.evaluation import compare
from lesionlab.models.ensemble import (
    align_members,
    combine,
    cross_fit_stacking,
    fit_mean_weights,
    mean_ensemble,
    stack_features,
)
from lesionlab.pipeline.contracts import ContractError

C = list(HAM10000_CLASSES)
K = len(C)


def _frame(labels, splits, proba) -> pd.DataFrame:
    df = pd.DataFrame(
        {"image_id": [f"i{n:04d}" for n in range(len(labels))], "split": splits, "label": [C[j] for j in labels]}
    )
    for j, c in enumerate(C):
        df[f"p_{c}"] = proba[:, j]
    return df


def _members(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    splits = np.array(["train", "val", "test"])[rng.integers(0, 3, n)]
    good = 0.15 * rng.dirichlet(np.ones(K), n) + 0.85 * np.eye(K)[y]  # right 100 %
    noise = rng.dirichlet(np.ones(K), n)  # uninformative
    return y, splits, {"good": _frame(y, splits, good), "noise": _frame(y, splits, noise)}


def test_mean_of_two_hand_made_members_is_their_average():
    a = np.array([[[0.8, 0.2], [0.4, 0.6]]])
    b = np.array([[[0.6, 0.4], [0.0, 1.0]]])
    np.testing.assert_allclose(mean_ensemble(np.concatenate([a, b])), [[0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_allclose(mean_ensemble(np.concatenate([a, b]), weights=[3, 1]), [[0.75, 0.25], [0.3, 0.7]])


def test_weighted_ensemble_puts_the_weight_on_the_informative_member():
    y, splits, preds = _members()
    members = align_members(preds, C)
    val = members.rows("val")
    w = fit_mean_weights(members.proba[:, val], members.y()[val])
    assert w.sum() == pytest.approx(1.0) and w[members.names.index("good")] > 0.9


def test_stacking_never_scores_a_row_it_was_fitted_on():
    y, splits, preds = _members(seed=1)
    members = align_members(preds, C)
    lesion = np.array([f"L{n // 3}" for n in range(len(y))])  # 3 images per lesion
    val = members.rows("val")
    fit = cross_fit_stacking(stack_features(members.proba), members.y(), val, lesion, folds=5, seed=0)
    scored_val = np.concatenate([f["scored"] for f in fit.fits[:-1]])
    assert sorted(scored_val.tolist()) == sorted(val.tolist())  # every val row scored exactly once, out of fold
    for f in fit.fits:
        assert np.isin(f["fitted_on"], val).all()  # fitted on validation rows only
        assert not np.intersect1d(f["fitted_on"], f["scored"]).size  # never scores its own rows
        assert not set(lesion[f["fitted_on"]]) & set(lesion[f["scored"]]) or f is fit.fits[-1]  # folds group lesions
    final = fit.fits[-1]
    assert sorted(final["scored"].tolist()) == sorted(np.flatnonzero(splits != "val").tolist())
    test = members.rows("test")
    assert (fit.proba[test].argmax(1) == members.y()[test]).mean() > 0.95
    np.testing.assert_allclose(fit.proba.sum(axis=1), 1.0)


def test_stacking_output_of_val_rows_does_not_depend_on_their_own_labels():
    """Flip the labels of one fold's rows: their out-of-fold scores must not move (they never trained on them)."""
    y, splits, preds = _members(seed=2)
    members = align_members(preds, C)
    lesion = np.array([f"L{n}" for n in range(len(y))])
    val = members.rows("val")
    x, labels = stack_features(members.proba), members.y()
    first = cross_fit_stacking(x, labels, val, lesion, folds=4, seed=0)
    fold = first.fits[0]["scored"]
    changed = labels.copy()
    changed[fold] = (changed[fold] + 1) % K
    # same folds need the same stratification: compare against a re-fit with the flipped labels outside the fold
    second = cross_fit_stacking(x, changed, val, lesion, folds=4, seed=0)
    same_fold = [f for f in second.fits[:-1] if np.array_equal(np.sort(f["scored"]), np.sort(fold))]
    if same_fold:  # stratified folds may move with the labels; when they do not, the scores must be identical
        np.testing.assert_allclose(second.proba[fold], first.proba[fold])
    assert not np.allclose(second.proba[np.setdiff1d(val, fold)], first.proba[np.setdiff1d(val, fold)])


def test_members_describing_different_rows_are_refused():
    y, splits, preds = _members()
    preds["noise"] = preds["noise"].iloc[1:]
    with pytest.raises(ContractError, match="'good' and 'noise' do not describe the same rows"):
        align_members(preds, C)


def test_combine_methods_end_to_end_on_hand_made_members():
    y, splits, preds = _members(seed=3)
    members = align_members(preds, C)
    lesion_of = {i: i for i in members.frame["image_id"]}
    test = members.rows("test")
    for method in ("mean", "weighted", "stacking"):
        proba, record = combine(members, EnsembleConfig(method=method, members=list(preds)), lesion_of, seed=0)
        assert proba.shape == (len(y), K) and np.allclose(proba.sum(1), 1)
        assert (proba[test].argmax(1) == members.y()[test]).mean() > 0.9, method
    assert record["member_weights"]["good"] > record["member_weights"]["noise"]


def _params(**changes):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in changes.items():
        raw[key] = value
    return raw


def test_ensemble_members_are_checked_at_params_load():
    raw = _params(ensembles={"e": {"members": ["cnn_baseline", "cnn_baselin"]}})
    with pytest.raises(ParamsError, match=r"ensembles.e.members: \['cnn_baselin'\] not trained"):
        parse_params(raw)
    raw = _params(ensembles={"e": {"members": ["cnn_baseline", "lite0_probe_balanced+tta"]}})  # no TTA there
    with pytest.raises(ParamsError, match="lite0_probe_balanced\\+tta"):
        parse_params(raw)
    raw = _params(ensembles={"cnn_aug": {"members": ["cnn_baseline", "meta_gbm"]}})
    with pytest.raises(ParamsError, match="already used"):
        parse_params(raw)
    raw = _params(ensembles={"e": {"members": ["cnn_baseline"]}})
    with pytest.raises(ParamsError, match="ensembles.e.members"):
        parse_params(raw)


def test_metadata_twin_is_found_from_the_members():
    params = parse_params(_params())
    assert ["image_meta_stack", "image_stack"] in compare.metadata_pairs(params)
    assert ["image_meta_stack", "image_mean"] not in compare.metadata_pairs(params)  # different method


def test_paired_difference_of_a_row_with_itself_is_zero_and_of_a_better_row_positive():
    y, splits, preds = _members(seed=4)
    test_only = {k: v[v["split"] == "test"] for k, v in preds.items()}
    lesion_of = {i: i for i in preds["good"]["image_id"]}
    paired = compare.paired_differences(
        {**test_only, "same": test_only["good"]}, C, lesion_of, [["good", "same"], ["good", "noise"]], n_resamples=50
    )
    same = paired[paired["b"] == "same"]
    assert (same["difference"] == 0).all() and (same["lo"] == 0).all() and not same["ci_excludes_zero"].any()
    better = paired[(paired["b"] == "noise") & (paired["metric"] == "balanced_accuracy")].iloc[0]
    assert better["difference"] > 0.5 and better["ci_excludes_zero"]
    text = compare.metadata_verdict(paired, "good", "noise")
    assert "adds measurable value" in text


def test_stacking_on_a_tiny_validation_split_falls_back_to_grouped_folds():
    """One validation image per class (e.g. 8 classes x 3 lesions): stratified folds are impossible, grouped ones
    still score every validation row out-of-fold."""
    from lesionlab.models.ensemble import cross_fit_stacking

    rng = np.random.default_rng(0)
    y = np.arange(8)
    x = rng.dirichlet(np.ones(8), size=(2, 8))
    fit = cross_fit_stacking(x, y, np.arange(8), np.array([f"L{i}" for i in range(8)]), folds=2, seed=0)
    scored = np.concatenate([f["scored"] for f in fit.fits[:-1]])
    assert sorted(scored) == list(range(8)) and np.allclose(fit.proba.sum(axis=1), 1)
