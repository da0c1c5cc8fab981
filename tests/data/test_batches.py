"""Data in any shape become batches of arguments (pyrovae.batches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyrovae.data.batches import Batch, Indexable, Stream, as_data, as_training_data
from pyrovae.errors import PyrovaeError


def test_forms_become_the_arguments_they_stand_for():
    x, y = torch.zeros(4, 3), torch.arange(4)
    assert as_data(x).batch.args == (x,)
    assert as_data((x, None, y)).batch.args[1] is None
    assert set(as_data({"a": x, "b": y}).batch.kwargs) == {"a", "b"}
    collated = as_data(TensorDataset(x, y))
    assert isinstance(collated, Indexable) and torch.equal(collated.batch.args[1], y)
    assert isinstance(as_data(DataLoader(TensorDataset(x, y), batch_size=2)), Stream)


def test_numpy_floats_become_the_default_dtype_and_integers_stay():
    batch = as_data((np.zeros((3, 2)), np.arange(3))).batch
    assert batch.args[0].dtype == torch.float32 and batch.args[1].dtype == torch.int64


def test_a_lone_training_tensor_is_read_as_grey_levels():
    x = as_training_data(np.full((2, 3), 255, dtype=np.uint8)).batch.first
    assert x.dtype == torch.float32 and (x == 1).all()


def test_passes_cover_every_datapoint_in_order():
    x = torch.arange(10.0)[:, None]
    data = as_data((x, -x))
    rows = torch.cat([b.args[0] for b in data.passes(3)])
    assert torch.equal(rows, x)
    stream = as_data([(x[:6], -x[:6]), (x[6:], -x[6:])])
    assert [len(b) for b in stream.passes(4)] == [4, 2, 4]


def test_replication_repeats_rows_only():
    batch = Batch((torch.tensor([1.0, 2.0]), torch.tensor(7.0)), {"k": torch.tensor([3, 4])})
    rep = batch.repeat_interleave(2)
    assert rep.args[0].tolist() == [1, 1, 2, 2] and rep.kwargs["k"].tolist() == [3, 3, 4, 4]
    assert rep.args[1] is batch.args[1]


def test_with_first_replaces_the_first_tensor_positional_or_keyword():
    a, b = torch.zeros(2), torch.ones(2)
    assert Batch((a, b)).with_first(b).args[0] is b
    assert Batch((), {"x": a, "y": b}).with_first(b).kwargs["x"] is b


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((torch.zeros(3), torch.zeros(2)), "tensor 1 has shape"),
        ((torch.zeros(0),), "empty"),
        ("text", "must be a tensor"),
        (iter([torch.zeros(2)]), "one-shot"),
        ((torch.tensor([1.0, float("inf")]),), "NaN or infinite"),
        ((None,), "at least one tensor"),
    ],
)
def test_bad_data_are_one_line_errors(data, match):
    with pytest.raises(PyrovaeError, match=match):
        as_data(data)


def test_a_stream_checks_values_on_its_first_full_pass_only():
    good, bad = torch.zeros(2, 3), torch.full((2, 3), float("nan"))
    with pytest.raises(PyrovaeError, match="NaN"):
        list(as_data([good, bad]))
    batches = [good, good.clone()]
    stream = as_data(batches)
    assert len(list(stream)) == 2
    batches[1].fill_(float("nan"))  # later passes check shapes, not every number again
    assert len(list(stream)) == 2
    assert len(list(as_data([good, bad], allow_nan=True))) == 2
