"""The metadata model's encoding: explicit missing / unknown handling, no dx_type, stable columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlab.models.tabular import MetadataEncoder, balanced_class_weights


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            "age": [30.0, np.nan, 50.0, 70.0, 40.0],
            "sex": ["male", "female", "", "unknown", "MALE"],
            "site": ["back", "face", "back", "unknown", "trunk"],
            "dx_type": ["histo", "follow_up", "histo", "consensus", "confocal"],
        }
    )


def test_unknown_and_empty_categories_are_one_explicit_category(table):
    enc = MetadataEncoder.fit(table, ["age", "sex", "site"])
    assert enc.categories["sex"] == ["female", "male", "unknown"]
    x = enc.transform(table, impute=False)
    assert x.loc[2, "sex=unknown"] == 1 and x.loc[3, "sex=unknown"] == 1 and x.loc[4, "sex=male"] == 1
    assert (x.filter(like="sex=").sum(axis=1) == 1).all() and (x.filter(like="site=").sum(axis=1) == 1).all()


def test_missing_age_stays_missing_for_gbm_and_is_flagged_for_logistic(table):
    enc = MetadataEncoder.fit(table, ["age"])
    assert np.isnan(enc.transform(table, impute=False).loc[1, "age"])
    x = enc.transform(table, impute=True)
    assert x["age_missing"].tolist() == [0, 1, 0, 0, 0]
    assert np.isfinite(x["age"]).all() and x["age"].mean() == pytest.approx(0, abs=1e-9)


def test_categories_unseen_in_training_count_as_unknown(table):
    enc = MetadataEncoder.fit(table.iloc[:3], ["sex", "site"])
    new = table.copy()
    new.loc[0, "site"] = "palms"
    x = enc.transform(new, impute=False)
    assert list(x.columns) == enc.columns(impute=False)  # same columns whatever the table holds
    assert (
        x.loc[0, "site=unknown"] == 1 and enc.unseen(new)["site"] == 2
    )  # palms, trunk ("unknown" is always a category)


def test_dx_type_is_never_a_feature(table):
    with pytest.raises(ValueError, match="dx_type"):
        MetadataEncoder.fit(table, ["age", "dx_type"])
    enc = MetadataEncoder.fit(table, ["age", "sex", "site"])
    shuffled = table.assign(dx_type=table["dx_type"][::-1].to_numpy())
    pd.testing.assert_frame_equal(enc.transform(table, impute=True), enc.transform(shuffled, impute=True))
    assert not any("dx" in c for c in enc.columns(impute=True))


def test_balanced_class_weights():
    w = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 6, 4 / 2, 0])
