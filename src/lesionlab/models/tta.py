"""Test-time augmentation over the dihedral group: the 4 rotations by 90° and their mirror images.

Dermoscopic lesions have no "up", so all 8 views of an image are equally valid inputs. The same
views serve three purposes: TTA (average the 8 predicted distributions), the cached embeddings of
a linear probe (every view embedded once, a random view drawn per training epoch) and training
augmentation. Pure numpy on uint8 NHWC batches: any framework can use it.
"""

from __future__ import annotations

import numpy as np

N_VIEWS = 8
VIEW_NAMES = ("identity", "rot90", "rot180", "rot270", "flip", "flip+rot90", "flip+rot180", "flip+rot270")


def dihedral(images: np.ndarray, view: int) -> np.ndarray:
    """View ``view`` (0..7) of a batch (N, H, W, C): rotate by 90° x (view % 4), mirror when view >= 4."""
    if not 0 <= view < N_VIEWS:
        raise ValueError(f"view must be in 0..{N_VIEWS - 1}, got {view}")
    out = np.rot90(images, view % 4, axes=(1, 2))
    if view >= 4:
        out = out[:, :, ::-1]
    return np.array(out, order="C", copy=True)  # writable, whatever the input (memory maps are read-only)


def average_views(predict, images: np.ndarray, tta: bool) -> np.ndarray:
    """``predict`` on view 0, or the mean of its outputs over all 8 views when ``tta``."""
    if not tta:
        return predict(images)
    return np.mean([predict(dihedral(images, v)) for v in range(N_VIEWS)], axis=0)


def predict_with_tta(predict, images: np.ndarray, scored: np.ndarray, tta: bool):
    """``(proba, proba_tta)``: single-view predictions of every row, and (when ``tta``) a copy whose
    ``scored`` rows (val/test) are averaged over the 8 views; train rows keep the single view. The identity view
    of the scored rows is ``proba``'s own (predicted once, not twice: an eighth of the TTA cost)."""
    proba = predict(images)
    if not tta:
        return proba, None
    proba_tta = proba.copy()
    scored_images = np.asarray(images[scored])
    views = [proba[scored]] + [predict(dihedral(scored_images, v)) for v in range(1, N_VIEWS)]
    proba_tta[scored] = np.mean(views, axis=0)
    return proba, proba_tta
