"""Skin tone (ITA) on images of known CIELAB colour; colour constancy and the resize policy, identical in prepare
and predict."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lesionlab.data import quality
from lesionlab.data.preprocess import Preprocess, border_colour, shades_of_gray, square_box
from lesionlab.data.skin import image_ita, ita_angle, ita_category, lab_to_srgb, skin_tone_table, srgb_to_lab


def test_cielab_matches_published_reference_values():
    lab = srgb_to_lab(np.array([[255, 255, 255], [255, 0, 0], [0, 0, 0], [128, 128, 128]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.01)
    assert np.allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)  # sRGB red, D65
    assert np.allclose(lab[2], [0, 0, 0], atol=0.01)
    assert np.allclose(lab[3], [53.59, 0, 0], atol=0.02)
    skin = np.array([[70.0, 12.0, 18.0], [40.0, 15.0, 25.0]])
    assert np.allclose(srgb_to_lab(lab_to_srgb(skin)), skin, atol=0.01)  # the inverse


@pytest.mark.parametrize(
    "lightness, b, category",
    [
        (80, 12, "very light"),
        (70, 18, "light"),
        (62, 18, "intermediate"),
        (55, 20, "tan"),
        (45, 22, "brown"),
        (25, 15, "dark"),
    ],
)
def test_ita_of_skin_with_known_lab(lightness, b, category):
    """Skin painted in a known L*a*b* colour around a dark lesion: the angle is arctan((L* - 50) / b*), with or
    without the lesion mask (the mask keeps the lesion out; without it the image border is the skin)."""
    skin = lab_to_srgb(np.array([lightness, 10.0, b]))
    img = np.empty((40, 40, 3))
    img[:] = skin
    mask = np.zeros((40, 40), bool)
    mask[8:32, 8:32] = True
    img[mask] = lab_to_srgb(np.array([30.0, 20.0, 30.0]))  # the lesion: dark, must not count
    img = np.rint(img).astype(np.uint8)
    expected = np.degrees(np.arctan((lightness - 50) / b))
    assert ita_angle(lightness, b) == pytest.approx(expected)
    assert image_ita(img, mask) == pytest.approx(expected, abs=0.5)  # uint8 rounding only
    assert image_ita(img) == pytest.approx(expected, abs=0.5)
    assert ita_category(image_ita(img, mask)) == category
    table = skin_tone_table(img[None], mask[None].astype(np.uint8), np.array([True]), ["x"])
    assert table.loc[0, "ita_category"] == category and table.loc[0, "skin_from"] == "outside mask"


def test_ita_without_skin_is_unknown():
    img = np.zeros((4, 4, 3), np.uint8)
    assert np.isnan(image_ita(img, np.ones((4, 4), bool))) and ita_category(float("nan")) == "unknown"


def test_shades_of_gray_removes_a_colour_cast():
    rng = np.random.default_rng(0)
    scene = rng.uniform(60, 200, (32, 32, 3))
    cast = np.clip(scene * np.array([1.25, 1.0, 0.7]), 0, 255).astype(np.uint8)
    neutral = shades_of_gray(scene.astype(np.uint8))
    corrected = shades_of_gray(cast)
    before = np.abs(cast.astype(float) - neutral).mean()
    after = np.abs(corrected.astype(float) - neutral).mean()
    assert after < before / 4  # the cast is (mostly) gone
    grey = np.full((8, 8, 3), 120, np.uint8)
    assert np.array_equal(shades_of_gray(grey), grey)  # a neutral image is unchanged


def test_resize_policies_keep_or_change_the_geometry(tmp_path):
    img = np.zeros((30, 60, 3), np.uint8)  # 60 wide, 30 high: left half red, right half blue
    img[:, :30] = (255, 0, 0)
    img[:, 30:] = (0, 0, 255)
    img[:, 25:35] = (0, 255, 0)  # a green band in the centre
    path = tmp_path / "wide.png"
    Image.fromarray(img).save(path)
    squash, _ = quality.load_image(str(path), 20)
    crop, _ = quality.load_image(str(path), 20, Preprocess(resize="crop"))
    pad, _ = quality.load_image(str(path), 20, Preprocess(resize="pad"))
    assert squash.shape == crop.shape == pad.shape == (20, 20, 3)
    assert square_box(60, 30, "crop") == (15, 0, 45, 30)
    assert squash[10, 1, 0] > 200 and squash[10, 18, 2] > 200  # both halves, squeezed
    assert crop[10, 10, 1] > 200 and crop[10, 0, 0] > 200  # centred square: green band twice as wide
    assert (crop[:, 8:12, 1] > 200).all() and (squash[:, 9:11, 1] > 200).all() and not (squash[:, 8, 1] > 200).all()
    fill = border_colour(img)
    assert np.allclose(pad[0, 10], fill, atol=2) and np.allclose(pad[10, 1], (255, 0, 0), atol=30)  # letterboxed
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((30, 60), 255, np.uint8)).save(mask)
    assert quality.load_mask(str(mask), 20, "pad")[0].sum() == 0 and quality.load_mask(str(mask), 20, "pad")[10].all()


def test_prepare_and_predict_decode_identically(tmp_path):
    """The options reach predict through summary.json: the same decode, byte for byte."""
    rng = np.random.default_rng(1)
    path = tmp_path / "a.jpg"
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(path)
    options = Preprocess("shades_of_gray", "crop")
    assert options.record() == {"preprocess": {"color_constancy": "shades_of_gray", "resize": "crop"}}
    assert Preprocess().record() == {}  # defaults leave summary.json as it was
    assert Preprocess.from_summary(options.record()) == options and Preprocess.from_summary({}) == Preprocess()
    (small, large), _ = quality.load_image(str(path), (16, 24), options)  # prepare: one decode, two caches
    assert np.array_equal(small, quality.load_image(str(path), 16, options)[0])  # predict: one size at a time
    assert np.array_equal(large, quality.load_image(str(path), 24, options)[0])
    assert not np.array_equal(small, quality.load_image(str(path), 16)[0])
    with pytest.raises(ValueError, match="resize must be one of"):
        Preprocess(resize="stretch")


def test_predict_decodes_with_the_datasets_preprocessing(tmp_path):
    """`lesionlab predict` feeds a model exactly what prepare gave it in training: the same colour constancy and
    resize policy (Predictor.preprocess, read from summary.json by load_predictor)."""
    import pandas as pd

    from lesionlab.models.predict import Predictor, run_predictions

    rng = np.random.default_rng(2)
    path = tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)).save(path)
    seen = []

    def proba(images):
        seen.append(np.asarray(images).copy())
        return np.full((len(images), 2), 0.5)

    options = Preprocess("shades_of_gray", "pad")
    predictor = Predictor("v", "cnn", "keras", ("nv", "mel"), 16, proba, preprocess=options)
    pred, skipped = run_predictions(
        predictor, pd.DataFrame({"image_id": ["b"], "path": [str(path)], "label": [""]}), progress=False
    )
    assert len(pred) == 1 and skipped.empty
    assert np.array_equal(seen[0][0], quality.load_image(str(path), 16, options)[0])
    assert not np.array_equal(seen[0][0], quality.load_image(str(path), 16)[0])
