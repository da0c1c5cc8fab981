"""fit(run_dir=...) on sequences records how to read them again: a run folder made from
Python reloads with its vocabulary, tokenizer and column, as one made by the CLI does."""

from __future__ import annotations

import json

import torch

import pyrovae
from pyrovae.data.datasets import load_dataset
from pyrovae.rundir.folder import load_run


def test_a_python_run_on_sequences_reloads_with_its_vocabulary(tmp_path):
    table = tmp_path / "texts.csv"
    rows = ["ab", "ba", "abc", "cab", "bca", "a", "cc", "bb", "aca", "cba"] * 3
    table.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(rows)))
    data = load_dataset(str(table), column="text", tokenizer="characters")
    vae = pyrovae.VAE(
        x_dim=data.x_dim,
        z_dim=2,
        hidden=(8,),
        net="gru",
        likelihood="autoregressive",
        vocab_size=data.vocabulary.size,
    )
    run = tmp_path / "run"
    pyrovae.fit(vae, data, epochs=1, binarize="none", progress=False, run_dir=run)
    config = json.loads((run / "config.json").read_text())["data"]
    assert config["column"] == "text" and config["tokenizer"] == "characters"
    assert config["vocabulary"] == data.vocabulary.to_config()
    again = load_run(run)
    assert torch.equal(again.heldout, data.test)
