"""The Keras CNN's training input (keras_common.training_batches): every image once per epoch, reshuffled each
epoch from the run's seed, in batches with a last short one, and each image's weight travelling with it.

TensorFlow runs in a child process (loaded into the test process, it would crash a later torchvision import)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from lesionlab.models.keras_common import load_keras, training_batches

    load_keras(0)
    n = 70
    x = np.arange(n, dtype=np.int32).reshape(n, 1) * np.ones((1, 3), dtype=np.int32)  # row i holds i
    y = np.arange(n) % 7
    w = np.arange(n, dtype=np.float32) / 10
    def epochs(seed, weights=None, k=2):
        ds = training_batches(x, y, 32, seed, weights)
        out = []
        for _ in range(k):
            out.append([[np.asarray(t).tolist() for t in batch] for batch in ds])
        return out
    print(json.dumps({"a": epochs(1, w), "b": epochs(1, w), "c": epochs(2, w), "plain": epochs(1, k=1)}))
    """
)


@pytest.fixture(scope="module")
def ran():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ids(epoch):
    return [row[0] for batch in epoch for row in batch[0]]


def test_every_image_once_per_epoch_in_full_batches_and_a_last_short_one(ran):
    for epoch in ran["a"]:
        assert sorted(_ids(epoch)) == list(range(70))
        assert [len(batch[0]) for batch in epoch] == [32, 32, 6]


def test_labels_and_weights_travel_with_their_image(ran):
    for epoch in ran["a"]:
        for images, labels, weights in epoch:
            assert labels == [row[0] % 7 for row in images]
            assert weights == pytest.approx([row[0] / 10 for row in images])
    assert all(len(batch) == 2 for batch in ran["plain"][0])  # no weights: (images, labels) only


def test_reshuffled_each_epoch_and_reproduced_by_the_seed(ran):
    first, second = (_ids(e) for e in ran["a"])
    assert first != second and first != sorted(first)
    assert ran["a"] == ran["b"]  # same seed: the same order, epoch by epoch
    assert [_ids(e) for e in ran["c"]] != [first, second]
