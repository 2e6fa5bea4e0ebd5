"""The comparison reads predictions only: one test set for all, CIs per variant, a headline sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from lesionlab.config import load_params
from lesionlab.data.taxonomy import HAM10000_CLASSES
from lesionlab.evaluation import compare
from lesionlab.evaluation.metrics import METRIC_LABELS
from lesionlab.paths import variant_dir
from lesionlab.pipeline.contracts import ContractError, write_predictions

K = len(HAM10000_CLASSES)


def _preds(labels: np.ndarray, quality: float, seed: int) -> pd.DataFrame:
    """Predictions that put ``quality`` extra mass on the true class."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(K), size=len(labels)) + quality * np.eye(K)[labels]
    p /= p.sum(axis=1, keepdims=True)
    df = pd.DataFrame(
        {
            "image_id": [f"i{n}" for n in range(len(labels))],
            "split": "test",
            "label": [HAM10000_CLASSES[j] for j in labels],
        }
    )
    for j, c in enumerate(HAM10000_CLASSES):
        df[f"p_{c}"] = p[:, j]
    return df


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, K, 140)


def test_leaderboard_ranks_the_better_model_first_with_cis(labels):
    preds = {"weak": _preds(labels, 0.0, 1), "strong": _preds(labels, 3.0, 2)}
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    board = compare.leaderboard(preds, HAM10000_CLASSES, lesion_of, n_resamples=100, seed=0)
    strong, weak = board.set_index("variant").loc["strong"], board.set_index("variant").loc["weak"]
    assert strong["balanced_accuracy"] > 0.9 and weak["balanced_accuracy"] < 0.35
    assert strong["balanced_accuracy_lo"] > weak["balanced_accuracy_hi"]
    assert board["n_test_lesions"].iloc[0] == 70
    text = compare.headline(board, baseline="weak")
    assert "<b>strong</b>" in text and "do not overlap" in text
    shown = compare.with_ci_text(board)
    assert shown.loc[shown["variant"] == "strong", "balanced accuracy"].iloc[0].startswith("<b>")


def test_variants_on_different_test_sets_are_refused(tmp_path, labels):
    a, b = _preds(labels, 1.0, 1), _preds(labels, 1.0, 2)
    b.loc[0, "label"] = HAM10000_CLASSES[(labels[0] + 1) % K]
    for name, df in (("a", a), ("b", b)):
        p = df[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy()
        write_predictions(
            variant_dir(tmp_path, "toy", name) / "predictions.csv",
            df["image_id"],
            df["split"],
            df["label"],
            p,
            HAM10000_CLASSES,
        )
    with pytest.raises(ContractError, match="different test sets"):
        compare.load_predictions(tmp_path, "toy", ["a", "b"], HAM10000_CLASSES)


def test_task_leaderboards_and_their_markdown(tmp_path, labels, capsys):
    from lesionlab.cli import main

    preds = {"weak": _preds(labels, 0.0, 1), "strong": _preds(labels, 3.0, 2)}
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    for task, first in (("binary", "malignant AUC"), ("triage", "triage balanced accuracy")):
        board = compare.task_leaderboard(preds, HAM10000_CLASSES, lesion_of, task, n_resamples=50)
        rows = board.set_index("variant")
        main_metric = compare.task_headline(task)[0]
        assert rows.loc["strong", main_metric] > rows.loc["weak", main_metric]
        assert (board[f"{main_metric}_lo"] <= board[main_metric]).all()
        compare.write_leaderboard(board, tmp_path / f"{task}.csv")
        assert main(["leaderboard", str(tmp_path / f"{task}.csv")]) == 0
        table = capsys.readouterr().out
        assert first in table.splitlines()[0] and "`strong`" in table and "[" in table  # CI of the main metric


# --- paired comparisons, subgroups, explanations (one matrix of lesion resamples for everything) ----------------


def test_resampled_metrics_equal_the_metrics_of_the_resampled_rows():
    from lesionlab.evaluation.bootstrap import (
        group_resamples,
        resample_weights,
        weighted_auc,
        weighted_balanced_accuracy,
        weighted_mean,
    )
    from lesionlab.evaluation.metrics import balanced_accuracy, binary_auc, confusion_matrix

    rng = np.random.default_rng(1)
    n = 300
    groups, y, pred = rng.integers(0, 200, n), rng.integers(0, 4, n), rng.integers(0, 4, n)
    score = np.round(rng.random(n), 1)  # many ties: they count one half
    values = np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
    w = resample_weights(groups, 40, seed=3)
    auc, bacc, mean = (
        weighted_auc(w, y == 1, score),
        weighted_balanced_accuracy(w, y, pred, 4),
        weighted_mean(w, values),
    )
    for b, rows in enumerate(group_resamples(groups, 40, seed=3)):
        assert auc[b] == pytest.approx(binary_auc(y[rows] == 1, score[rows]), abs=1e-12)
        assert bacc[b] == pytest.approx(balanced_accuracy(confusion_matrix(y[rows], pred[rows], 4)), abs=1e-12)
        assert mean[b] == pytest.approx(np.nanmean(values[rows]), abs=1e-12)


@pytest.mark.parametrize("share", [0.0, 0.03, 0.5, 0.97, 1.0])
def test_the_weighted_auc_equals_the_auc_of_each_resample_whichever_outcome_is_rarer(share):
    """weighted_auc looks the rarer outcome up in the other's cumulative weights (positives or negatives):
    both ways, and with one outcome absent, it is the AUC of the explicitly resampled rows, ties one half."""
    from lesionlab.evaluation.bootstrap import group_resamples, resample_weights, weighted_auc
    from lesionlab.evaluation.metrics import binary_auc

    rng = np.random.default_rng(4)
    n = 120
    groups, positive = rng.integers(0, 70, n), rng.random(n) < share
    score = np.round(rng.random(n) + 0.3 * positive, 1)  # many ties
    auc = weighted_auc(resample_weights(groups, 30, seed=2), positive, score)
    scored = 0
    for b, rows in enumerate(group_resamples(groups, 30, seed=2)):
        if 0 < positive[rows].sum() < len(rows):
            assert auc[b] == pytest.approx(binary_auc(positive[rows], score[rows]), abs=1e-12)
            scored += 1
        else:
            assert np.isnan(auc[b])
    assert (scored > 20) == (0 < share < 1)  # the one-outcome samples are NaN throughout


def test_tables_sharing_a_draw_cache_score_each_row_once_with_the_same_numbers(labels):
    """The comparison passes one ``cache`` to every table: each row's draws are computed once per task, and the
    tables are exactly those computed without it."""
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    preds = {"a": _preds(labels, 0.2, 1), "b": _preds(labels, 0.3, 2)}
    reps = {"a": _replicated(labels, [0.2, 0.25], 5)}
    kw = dict(n_resamples=200, seed=0, replicates=reps)
    cache: dict = {}
    board = compare.leaderboard(preds, HAM10000_CLASSES, lesion_of, cache=cache, **kw)
    assert set(cache) == {("a", "diagnosis"), ("b", "diagnosis")}
    first = cache[("a", "diagnosis")]
    paired = compare.paired_differences(preds, HAM10000_CLASSES, lesion_of, [["b", "a"]], cache=cache, **kw)
    binary = compare.task_leaderboard(preds, HAM10000_CLASSES, lesion_of, "binary", cache=cache, **kw)
    assert cache[("a", "diagnosis")] is first and len(cache) == 4  # reused, not recomputed; binary added
    pd.testing.assert_frame_equal(board, compare.leaderboard(preds, HAM10000_CLASSES, lesion_of, **kw))
    pd.testing.assert_frame_equal(
        paired, compare.paired_differences(preds, HAM10000_CLASSES, lesion_of, [["b", "a"]], **kw)
    )
    pd.testing.assert_frame_equal(binary, compare.task_leaderboard(preds, HAM10000_CLASSES, lesion_of, "binary", **kw))


@pytest.mark.parametrize("task", ["diagnosis", "binary", "triage"])
def test_task_metrics_from_the_resample_matrix_equal_the_metrics_of_each_resample(task):
    """The leaderboards' CIs come from weighted metrics; each draw must equal the task's own metric function
    evaluated on the explicitly resampled rows (small, tied, class-starved samples included)."""
    from lesionlab.evaluation.bootstrap import group_resamples, resample_weights

    rng = np.random.default_rng(7)
    n = 90
    groups = rng.integers(0, 45, n)
    y = rng.choice(K, n, p=[0.04, 0.06, 0.1, 0.02, 0.12, 0.62, 0.04])  # rare classes go missing in resamples
    proba = np.round(rng.dirichlet(np.ones(K), n) + 1.5 * np.eye(K)[y] * (rng.random(n) < 0.6)[:, None], 1)
    proba /= proba.sum(axis=1, keepdims=True)  # rounded first: many tied scores
    weights = resample_weights(groups, 60, seed=5)
    draws = compare.resampled_task_metrics(task, y, proba, HAM10000_CLASSES, weights)
    statistic = compare.task_statistic(task, HAM10000_CLASSES)
    assert set(draws) == set(compare.task_headline(task))
    checked = 0
    for b, rows in enumerate(group_resamples(groups, 60, seed=5)):
        expected = statistic(y[rows], proba[rows])
        for m, values in draws.items():
            if np.isnan(expected[m]):
                assert np.isnan(values[b]), (m, b)
            else:
                assert values[b] == pytest.approx(expected[m], abs=1e-12), (m, b)
                checked += 1
    assert checked > 0.9 * 60 * len(draws)


def test_mcnemar_exact_test():
    from lesionlab.evaluation.bootstrap import mcnemar

    a = np.array([True] * 10 + [True] * 20)
    b = np.array([False] * 10 + [True] * 20)
    got = mcnemar(a, b)
    assert got["only_a_correct"] == 10 and got["only_b_correct"] == 0
    assert got["mcnemar_p"] == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, a)["mcnemar_p"] == 1.0
    balanced = mcnemar(np.array([True, False] * 5), np.array([False, True] * 5))
    assert balanced["mcnemar_p"] == pytest.approx(1.0)


def test_every_row_is_compared_with_the_baseline_and_the_best(labels):
    preds = {"base": _preds(labels, 0.0, 1), "mid": _preds(labels, 0.4, 2), "top": _preds(labels, 3.0, 3)}
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    board = compare.leaderboard(preds, HAM10000_CLASSES, lesion_of, n_resamples=50, seed=0)
    pairs, labels_, best = compare.reference_pairs(board, "base")
    assert best == "top" and sorted(map(tuple, pairs)) == sorted(
        [("mid", "base"), ("top", "base"), ("base", "top"), ("mid", "top")]
    )
    paired = compare.paired_differences(
        preds, HAM10000_CLASSES, lesion_of, pairs, comparison=labels_, n_resamples=200, seed=0
    )
    top = paired[(paired["a"] == "top") & (paired["comparison"] == "vs baseline")].set_index("metric")
    assert top.loc["balanced_accuracy", "difference"] > 0.3 and top.loc["balanced_accuracy", "ci_excludes_zero"]
    assert top["mcnemar_p"].iloc[0] < 1e-6 and top["only_a_correct"].iloc[0] > top["only_b_correct"].iloc[0]
    marks = compare.difference_marks(paired, "vs baseline")
    assert "▲" in marks["top"] and set(marks) == {"mid", "top"}
    assert "▼" in compare.difference_marks(paired, "vs best")["base"]
    shown = compare.paired_display(paired[paired["comparison"] == "vs baseline"])
    assert list(shown["a"]) == ["mid", "top"] and "McNemar p" in shown


def test_subgroup_slices_count_and_mark_small_slices(labels):
    preds = {"m": _preds(labels, 2.0, 1)}
    n = len(labels)
    lesion_of = {f"i{k}": f"L{k // 2}" for k in range(n)}
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "sex": ["male" if k < 100 else "female" for k in range(n)],
            "age": [np.nan if k % 10 == 0 else 20 + (k % 7) * 10 for k in range(n)],
            "site": ["back" if k < 130 else "ear" for k in range(n)],
        }
    )
    slices = compare.subgroup_slices(
        preds,
        HAM10000_CLASSES,
        lesion_of,
        table,
        [30, 45, 60, 75],
        min_lesions=10,
        min_malignant=5,
        n_resamples=50,
        seed=0,
    )
    by = slices.set_index("slice")
    assert by.loc["sex: male", "n_images"] == 100 and by.loc["sex: female", "n_images"] == 40
    assert by.loc["site: ear", "n_images"] == 10 and by.loc["site: ear", "n_lesions"] == 5
    assert by.loc["site: ear", "too_small"] and not by.loc["site: back", "too_small"]
    assert by.loc["age: unknown", "n_images"] == 14
    ages = list(slices[slices["attribute"] == "age"]["slice"])
    assert ages == ["age: <30", "age: 30-44", "age: 45-59", "age: 60-74", "age: ≥75", "age: unknown"]
    assert (slices.groupby("attribute")["n_images"].sum() == n).all()  # every test image in one slice per attribute
    ok = slices.dropna(subset=["balanced_accuracy_lo"])
    assert (ok["balanced_accuracy_lo"] <= ok["balanced_accuracy_hi"]).all()
    assert "worst" in compare.worst_slice(slices, "m")
    shown = compare.slices_display(slices)
    assert shown["balanced accuracy"].str.contains("too small").any()


def test_explanation_summary_has_cis_and_chance():
    ids = [f"i{k}" for k in range(40)]
    preds = {"m": pd.DataFrame({"image_id": ids, "split": "test", "label": "nv"})}
    lesion_of = {i: f"L{k // 2}" for k, i in enumerate(ids)}
    per_image = pd.DataFrame(
        {
            "image_id": ids,
            "label": "nv",
            "has_mask": [k % 8 != 0 for k in range(40)],
            "energy_in_mask": [0.8 if k % 8 else np.nan for k in range(40)],
            "pointing_hit": [1.0 if k % 8 else np.nan for k in range(40)],
            "mask_area": [0.25 if k % 8 else np.nan for k in range(40)],
        }
    )
    got = compare.explanation_summary({"m": per_image}, preds, lesion_of, n_resamples=50, seed=0).iloc[0]
    assert got["mask_energy"] == pytest.approx(0.8) and got["mask_energy_lo"] == pytest.approx(0.8)
    assert got["pointing_hit_rate"] == 1.0 and got["chance"] == pytest.approx(0.25) and got["n_with_mask"] == 35
    text = compare.explanation_verdict(pd.DataFrame([got]))
    assert "at least half" in text
    with pytest.raises(ContractError, match="explanations of 'm'.*dvc repro explain"):
        compare.explanation_summary({"m": per_image.iloc[:-1]}, preds, lesion_of, n_resamples=5)


def test_forest_plot_draws_a_percentile_interval_that_misses_its_point():
    """With few test lesions the percentile CI can exclude the point estimate; the figure must still draw it
    (matplotlib's errorbar refuses negative error lengths)."""
    import matplotlib

    matplotlib.use("Agg")
    from lesionlab.reporting import figures

    board = pd.DataFrame(
        {
            "variant": ["a", "b"],
            "balanced_accuracy": [0.50, 0.62],
            "balanced_accuracy_lo": [0.52, 0.55],
            "balanced_accuracy_hi": [0.70, 0.66],
        }
    )
    fig = figures.forest_plot(board, ["balanced_accuracy"], METRIC_LABELS)
    segments = fig.axes[0].collections[0].get_segments()
    assert [tuple(s[:, 0]) for s in segments] == [(0.52, 0.70), (0.55, 0.66)]


def test_each_rung_of_the_ladder_steps_from_the_rung_it_changes_one_thing_of():
    params = load_params(REPO / "params.yaml")
    steps = {rung: (parent, change) for rung, parent, change in compare.ladder_steps(params)}
    assert steps["cnn_aug"] == ("cnn_baseline", "augment=True")
    assert steps["cnn_batchnorm"] == ("cnn_aug_class_weights", "batchnorm=True")
    assert steps["cnn_batch64_crop"] == ("cnn_batch64", "resize=crop")
    assert "cnn_baseline" not in steps
    paired = pd.DataFrame(
        [
            {
                "a": "cnn_aug",
                "b": "cnn_baseline",
                "comparison": "step",
                "metric": "balanced_accuracy",
                "difference": -0.1,
                "lo": -0.2,
                "hi": 0.01,
                "ci_excludes_zero": False,
            },
            {
                "a": "cnn_aug",
                "b": "cnn_baseline",
                "comparison": "vs baseline",
                "metric": "balanced_accuracy",
                "difference": 9.0,
                "lo": 9.0,
                "hi": 9.0,
                "ci_excludes_zero": True,
            },
        ]
    )
    effects = compare.step_effects(paired, params)
    assert effects.to_dict("records") == [
        {
            "step": "cnn_aug vs cnn_baseline",
            "change": "augment=True",
            "effect": -0.1,
            "lo": -0.2,
            "hi": 0.01,
            "ci_excludes_zero": False,
        }
    ]
    from lesionlab.reporting import figures

    fig = figures.step_effect_plot(effects)
    assert len(fig.axes[0].get_yticklabels()) == 1


def test_parents_are_explicit_across_families_and_tta_is_a_step_of_its_own():
    params = load_params(REPO / "params.yaml")
    steps = {(rung, parent): change for rung, parent, change in compare.ladder_steps(params)}
    # probe -> partial -> full fine-tune: a step across families names the families and what else changed
    assert steps[("lite0_partial", "lite0_probe")].startswith("probe → fine-tune")
    assert "strategy=full" in steps[("lite0_full", "lite0_partial")]
    assert steps[("lite0_probe+tta", "lite0_probe")] == "test-time augmentation"
    assert steps[("image_meta_stack", "image_stack")] == "members +meta_gbm"  # a list: what was added
    # a row without a parent starts the ladder: no step, however close another row's config is
    raw = params.model_dump()
    raw["variants"]["cnn_aug"]["parent"] = None
    from lesionlab.config import parse_params

    assert "cnn_aug" not in {r for r, _, _ in compare.ladder_steps(parse_params(raw))}


def _replicated(labels, qualities, seed0):
    return [_preds(labels, q, seed0 + i) for i, q in enumerate(qualities)]


def test_a_replicated_row_is_the_mean_of_its_runs_with_a_ci_over_runs_and_lesions(labels):
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    runs = _replicated(labels, [0.05, 0.2, 0.3], 10)  # three training runs of one recipe, far apart (0.18-0.68)
    single = {"row": runs[0]}
    one = compare.leaderboard(single, HAM10000_CLASSES, lesion_of, n_resamples=300, seed=0).iloc[0]
    both = compare.leaderboard(
        single, HAM10000_CLASSES, lesion_of, n_resamples=300, seed=0, replicates={"row": runs}
    ).iloc[0]
    each = [
        compare.leaderboard({"r": r}, HAM10000_CLASSES, lesion_of, n_resamples=10)["balanced_accuracy"].iloc[0]
        for r in runs
    ]
    assert both["n_runs"] == 3 and one["n_runs"] == 1
    assert np.isclose(both["balanced_accuracy"], np.mean(each))  # mean of the runs' metrics
    # the runs disagree far more than a lesion resample moves one run: the two-level CI is much wider
    assert (both["balanced_accuracy_hi"] - both["balanced_accuracy_lo"]) > 2 * (
        one["balanced_accuracy_hi"] - one["balanced_accuracy_lo"]
    )
    assert both["balanced_accuracy_lo"] < each[1] < both["balanced_accuracy_hi"]
    # identical runs: the same point and an interval no wider than one run's lesion bootstrap
    same = compare.leaderboard(
        single, HAM10000_CLASSES, lesion_of, n_resamples=300, seed=0, replicates={"row": [runs[0]] * 3}
    ).iloc[0]
    assert np.isclose(same["balanced_accuracy"], one["balanced_accuracy"])
    assert np.isclose(same["balanced_accuracy_lo"], one["balanced_accuracy_lo"])


def test_a_step_between_replicated_rows_is_robust_only_when_the_runs_agree(labels):
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    base = _replicated(labels, [0.2, 0.21, 0.19], 20)  # balanced accuracy about 0.45 whatever the run
    steady = _replicated(labels, [0.35, 0.36, 0.34], 30)  # every run clearly better (about 0.75)
    shaky = _replicated(labels, [0.05, 0.5, 0.3], 40)  # runs from 0.18 to 0.99: the first alone looks like a loss
    preds = {"base": base[0], "steady": steady[0], "shaky": shaky[0]}
    reps = {"base": base, "steady": steady, "shaky": shaky}
    paired = compare.paired_differences(
        preds,
        HAM10000_CLASSES,
        lesion_of,
        [["steady", "base"], ["shaky", "base"]],
        n_resamples=300,
        comparison=["step", "step"],
        replicates=reps,
    ).set_index(["a", "metric"])
    assert paired.loc[("steady", "balanced_accuracy"), "ci_excludes_zero"]
    shaky_row = paired.loc[("shaky", "balanced_accuracy")]
    assert not shaky_row["ci_excludes_zero"] and shaky_row["lo"] < 0 < shaky_row["hi"]
    alone = compare.paired_differences(
        preds, HAM10000_CLASSES, lesion_of, [["shaky", "base"]], n_resamples=300
    ).set_index("metric")
    assert alone.loc["balanced_accuracy", "ci_excludes_zero"] and alone.loc["balanced_accuracy", "difference"] < 0
    shown = compare.steps_display(
        pd.DataFrame(
            [
                {
                    "step": "steady vs base",
                    "change": "x",
                    "effect": 0.2,
                    "lo": 0.1,
                    "hi": 0.3,
                    "ci_excludes_zero": True,
                },
                {
                    "step": "shaky vs base",
                    "change": "y",
                    "effect": 0.1,
                    "lo": -0.1,
                    "hi": 0.3,
                    "ci_excludes_zero": False,
                },
            ]
        )
    )
    assert shown["verdict"].tolist() == ["robust gain", "not robust"]


def test_seed_spread_lists_every_run_and_its_sd(labels, tmp_path):
    params = load_params(REPO / "params.yaml")
    lesion_of = {f"i{n}": f"L{n // 2}" for n in range(len(labels))}
    runs = _replicated(labels, [0.5, 1.0, 1.5], 50)
    table, spread = compare.seed_spread({"cnn_aug": runs[0]}, {"cnn_aug": runs}, HAM10000_CLASSES, lesion_of, params)
    assert table["run"].tolist() == ["cnn_aug", "cnn_aug.seed43", "cnn_aug.seed44"]
    assert table["seed"].tolist() == [42, 43, 44]
    row = spread.iloc[0]
    assert np.isclose(row["balanced_accuracy_sd"], table["balanced_accuracy"].std(ddof=1))
    assert row["balanced_accuracy_min"] < row["balanced_accuracy_mean"] < row["balanced_accuracy_max"]
    assert "±" in compare.spread_display(spread).iloc[0]["balanced accuracy"]
    # the comparison finds each run's predictions file by its name, and names the stage of a missing one
    for name, frame in zip(table["run"], runs):
        out = variant_dir(tmp_path, "synthetic", name)
        out.mkdir(parents=True)
        p = frame[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy()
        write_predictions(
            out / "predictions.csv", frame["image_id"], frame["split"], frame["label"], p, HAM10000_CLASSES
        )
    preds = compare.load_predictions(tmp_path, "synthetic", ["cnn_aug"], HAM10000_CLASSES, params)
    loaded = compare.load_replicates(tmp_path, "synthetic", ["cnn_aug"], HAM10000_CLASSES, params, preds)
    assert len(loaded["cnn_aug"]) == 3
    (variant_dir(tmp_path, "synthetic", "cnn_aug.seed44") / "predictions.csv").unlink()
    with pytest.raises(ContractError, match="cnn_aug.seed44"):
        compare.load_replicates(tmp_path, "synthetic", ["cnn_aug"], HAM10000_CLASSES, params, preds)


def test_the_cost_table_reads_as_numbers_and_leaves_out_the_ensembles():
    params = load_params(REPO / "params.yaml")
    board = pd.DataFrame(
        {
            "variant": ["cnn_aug", "image_mean"],
            "epochs": [25.0, np.nan],
            "best_epoch": [12.0, np.nan],
            "n_params": [548903.0, np.nan],
            "train_seconds": [35.25, np.nan],
            "train_images_per_second": [612.4, np.nan],
        }
    )
    table = compare.cost_table(board, params)
    assert table.to_dict("records") == [
        {
            "variant": "cnn_aug",
            "epochs (best)": "25 (12)",
            "parameters": "548,903",
            "training time (s)": "35.2",
            "training images/s": "612",
        }
    ]


def test_roc_and_curves_are_faceted_by_family_and_metadata_rounds_keep_their_own_axis():
    from lesionlab.reporting import figures

    rng = np.random.default_rng(0)
    y = rng.integers(len(HAM10000_CLASSES), size=80)
    tests = {n: (y, rng.dirichlet(np.ones(len(HAM10000_CLASSES)), 80)) for n in ("a", "b", "c", "c+tta")}
    fig = figures.roc_overlay(tests, HAM10000_CLASSES, {"a": "CNN", "b": "CNN", "c": "probe"})
    assert len(fig.axes) == 4 and len(fig.axes[2].get_legend().get_texts()) == 2  # probe row: c and c+tta
    h = pd.DataFrame({"epoch": [1, 2], "val_balanced_accuracy": [0.1, 0.2], "val_loss": [1.0, 0.9]})
    fig = figures.curves_overlay({"a": h, "g": h}, {"a": "CNN", "g": "metadata"})
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch", "boosting round", "boosting round"]


def _with_val(frame: pd.DataFrame) -> pd.DataFrame:
    """A run's internal predictions: its test rows plus the same rows again as the validation split."""
    val = frame.assign(split="val", image_id=[f"v{i}" for i in frame["image_id"]])
    return pd.concat([frame, val], ignore_index=True)


def test_the_external_leaderboard_of_a_replicated_row_is_the_mean_of_its_runs_with_a_ci_over_runs():
    from types import SimpleNamespace

    from lesionlab.config import UncertaintyParams
    from lesionlab.evaluation import external
    from lesionlab.evaluation.metrics import binary_auc

    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, 120)
    inside_labels = rng.integers(0, K, 140)
    lesion_of = {**{f"i{n}": f"L{n // 2}" for n in range(140)}, **{f"vi{n}": f"V{n // 2}" for n in range(140)}}
    outside = _replicated(labels, [0.05, 0.6, 1.5], 20)  # three training runs, far apart on the external set
    inside = [_with_val(f) for f in _replicated(inside_labels, [0.5, 1.0, 1.5], 30)]
    table = pd.DataFrame({"image_id": outside[0]["image_id"], "lesion_id": [f"E{n // 2}" for n in range(120)]})
    ext = {"data": SimpleNamespace(table=table), "preds": {"row": outside[0], "twin": outside[0]}, "gradcam": None}
    kw = dict(lesion_of=lesion_of, temperatures={}, uncertainty=UncertaintyParams(), n_resamples=300, seed=0)

    def board(runs, replicates=None):
        return (
            external.external_leaderboard(
                "ext",
                {**ext, "runs": runs},
                {"row": inside[0], "twin": inside[0]},
                HAM10000_CLASSES,
                **kw,
                replicates=replicates,
            )
            .set_index("variant")
            .loc["row"]
        )

    one = board({})
    three = board({"row": outside}, {"row": inside})
    mel = HAM10000_CLASSES.index("mel")
    each = [binary_auc(labels == mel, f["p_mel"].to_numpy()) for f in outside]
    assert one["n_runs"] == 1 and three["n_runs"] == 3
    assert np.isclose(one["melanoma_auc"], each[0]) and np.isclose(three["melanoma_auc"], np.mean(each))
    inside_each = [binary_auc(inside_labels == mel, f[f["split"] == "test"]["p_mel"].to_numpy()) for f in inside]
    assert np.isclose(three["melanoma_auc_internal"], np.mean(inside_each))
    assert np.isclose(three["melanoma_auc_drop"], three["melanoma_auc_internal"] - three["melanoma_auc"])
    # the runs disagree: resampling them widens the CI beyond the lesions' alone
    assert three["melanoma_auc_hi"] - three["melanoma_auc_lo"] > one["melanoma_auc_hi"] - one["melanoma_auc_lo"]
    # three copies of one run are that run: same value, same CI
    same = board({"row": [outside[0]] * 3}, {"row": [inside[0]] * 3})
    for m in ("melanoma_auc", "melanoma_auc_lo", "melanoma_auc_hi", "sensitivity", "ece", "uncertain_share"):
        assert np.isclose(same[m], one[m]), m
    # paired on the external set: a row against itself is exactly 0 (the same runs drawn in every resample); another
    # row with the same predictions is not (its runs are drawn independently: two rows are separate training runs)
    runs = {"row": outside, "twin": outside}
    paired = external.external_paired("ext", {**ext, "runs": runs}, [["row", "row"]], HAM10000_CLASSES, 300)
    assert np.allclose(paired[["difference", "lo", "hi"]].to_numpy(dtype=float), 0)
    paired = external.external_paired("ext", {**ext, "runs": runs}, [["row", "twin"]], HAM10000_CLASSES, 300)
    assert np.allclose(paired["difference"], 0) and (paired["lo"] < 0).all() and (paired["hi"] > 0).all()
    paired = external.external_paired("ext", {**ext, "runs": {"row": outside}}, [["row", "twin"]], HAM10000_CLASSES)
    mel_row = paired.set_index("metric").loc["melanoma_auc"]
    assert np.isclose(mel_row["difference"], np.mean(each) - each[0]) and mel_row["lo"] <= mel_row["hi"]
    with pytest.raises(ValueError, match="3 run\\(s\\) scored on 'ext', 1 on the internal test split"):
        board({"row": outside})
