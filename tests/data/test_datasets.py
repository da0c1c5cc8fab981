import gzip

import numpy as np
import pytest
import torch

from pyrovae.data.binarization import BINARIZATIONS, get_binarization
from pyrovae.data.datasets import load_array, load_dataset, read_idx
from pyrovae.errors import PyrovaeError


def test_bundled_sample_split(sample):
    assert sample.train.shape == (8000, 784) and sample.test.shape == (2000, 784)
    assert sample.train.dtype == torch.float32
    assert 0 <= float(sample.train.min()) and float(sample.train.max()) == 1.0
    assert sample.image_shape == (1, 28, 28)
    assert sample.train_labels.shape == (8000,) and set(sample.test_labels.tolist()) == set(
        range(10)
    )
    # grey levels are multiples of 1/255
    assert torch.allclose(sample.train[:10] * 255, (sample.train[:10] * 255).round(), atol=1e-4)


def test_idx_reader_refuses_corrupt_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3]))
    with pytest.raises(PyrovaeError, match="truncated or corrupt"):
        read_idx(bad)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(PyrovaeError, match="cannot read IDX"):
        read_idx(bad)


@pytest.mark.parametrize("shape", [(10, 28, 28), (10, 1, 28, 28), (10, 784)])
def test_user_arrays_in_each_shape(tmp_path, shape):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(str(tmp_path / "x.npy"))
    assert ds.train.shape == (8, 784) and ds.test.shape == (2, 784)
    assert ds.image_shape == (1, 28, 28)
    assert torch.allclose(ds.train[0], torch.from_numpy(x.reshape(10, -1)[0] / 255).float())


def test_float_arrays_and_npz_splits(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.random((6, 5)),
        x_test=rng.random((3, 5)),
        y_train=np.arange(6),
        y_test=np.arange(3),
    )
    ds = load_array(tmp_path / "d.npz")
    assert ds.train.shape == (6, 5) and ds.test.shape == (3, 5) and ds.image_shape is None
    assert ds.train_labels.tolist() == list(range(6))


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.full((4, 784), np.nan), "NaN or infinite"),
        (np.zeros((0, 784)), "empty"),
        (np.zeros((4,)), "has shape"),
        (np.array(["a", "b"]).reshape(2, 1), "expected numbers"),
    ],
)
def test_bad_arrays(tmp_path, array, match):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(PyrovaeError, match=match):
        load_dataset(str(tmp_path / "x.npy"))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PyrovaeError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npy"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(PyrovaeError, match="corrupt or not a .npz file"):
        load_dataset(str(tmp_path / "junk.npz"))
    with pytest.raises(PyrovaeError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_torchvision_offline_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(PyrovaeError, match="cannot load MNIST in data_dir="):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_binarizations():
    x = torch.rand(50, 30)
    dynamic, static, none = (get_binarization(n) for n in ("dynamic", "static", "none"))
    assert set(BINARIZATIONS) == {"dynamic", "static", "none"}
    a, b = dynamic.batch(x), dynamic.batch(x)
    assert not torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static.prepare(x, 1), static.prepare(x, 1))
    assert not torch.equal(static.prepare(x, 1), static.prepare(x, 2))
    assert torch.equal(static.batch(x), x) and torch.equal(none.prepare(x, 1), x)
    assert torch.equal(dynamic.heldout(x, 4), static.heldout(x, 4))
    # a draw is Bernoulli(x): its mean tracks the grey levels
    draws = torch.stack([dynamic.batch(x) for _ in range(400)]).mean(0)
    assert (draws - x).abs().max() < 0.15
    with pytest.raises(PyrovaeError, match=r"values in \[0, 1\]"):
        dynamic.check(x * 3)


def test_the_held_out_fraction_of_a_table_is_a_setting(tmp_path):
    np.save(tmp_path / "t.npy", np.arange(200, dtype=np.float32).reshape(100, 2))
    data = load_dataset(str(tmp_path / "t.npy"), test_fraction=0.05)
    assert data.test.shape == (5, 2) and float(data.test[0, 0]) == 190.0
    with pytest.raises(PyrovaeError, match="between 0 and 1"):
        load_dataset(str(tmp_path / "t.npy"), test_fraction=1.0)
