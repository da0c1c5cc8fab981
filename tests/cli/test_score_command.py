"""``pyrovae score --method``: every anomaly score from the command line, or one line why not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.cli import main

TINY = ["--epochs", "1", "--hidden", "16", "--no-progress"]


def _score(run, out, *flags: str) -> int:
    return main(["score", str(run), "--out", str(out), "--num-samples", "3", *flags])


def _refused(capsys, code: int, out, *words: str) -> None:
    """Exit status 1, one line on stderr naming ``words``, and no file written."""
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("pyrovae score: error: ")
    assert all(w in err for w in words), err
    assert not out.exists()


@pytest.fixture(scope="module")
def hierarchical_run(tmp_path_factory, sample):
    """A run of a VAE with two latent layers, one epoch on 300 images."""
    where = tmp_path_factory.mktemp("hierarchical")
    images = (sample.train[:300] * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    np.savez(where / "tiny.npz", x=images)
    args = ["train", "--dataset", str(where / "tiny.npz"), "--z-dim", "4,2", *TINY]
    assert main([*args, "--out", str(where / "run")]) == 0
    return where / "run"


@pytest.mark.parametrize("method", ["nll", "elbo", "reconstruction", "complexity"])
def test_the_scores_of_a_run_on_images(method, trained_run, tmp_path):
    out = tmp_path / "s.npy"
    assert _score(trained_run, out, "--method", method) == 0
    scores = np.load(out)
    assert scores.shape == (60,) and np.isfinite(scores).all()


def test_nll_is_the_default_and_complexity_subtracts_the_png_length(trained_run, tmp_path):
    assert _score(trained_run, tmp_path / "default.npy") == 0
    assert _score(trained_run, tmp_path / "nll.npy", "--method", "nll") == 0
    assert _score(trained_run, tmp_path / "c.npy", "--method", "complexity") == 0
    nll = np.load(tmp_path / "nll.npy")
    assert np.array_equal(np.load(tmp_path / "default.npy"), nll)
    assert (np.load(tmp_path / "c.npy") < nll).all()  # L(x) > 0 for every image


def test_llr_needs_two_latent_layers(trained_run, hierarchical_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    _refused(capsys, _score(trained_run, out, "--method", "llr"), out, "one", "--z-dim")
    assert _score(hierarchical_run, out, "--method", "llr", "--k", "1") == 0
    assert np.load(out).shape == (60,) and np.isfinite(np.load(out)).all()
    out.unlink()
    _refused(capsys, _score(hierarchical_run, out, "--method", "llr", "--k", "2"), out, "--k")
    _refused(capsys, _score(hierarchical_run, out, "--k", "1"), out, "nll", "--k")


def test_likelihood_ratio_needs_a_background_run(run_dir, hierarchical_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code = _score(run_dir, out, "--method", "likelihood-ratio")
    _refused(capsys, code, out, "background", "--background")
    code = _score(run_dir, out, "--method", "nll", "--background", str(run_dir))
    _refused(capsys, code, out, "--background")
    code = _score(run_dir, out, "--method", "likelihood-ratio", "--background", str(run_dir))
    assert code == 0 and np.array_equal(np.load(out), np.zeros(60, dtype=np.load(out).dtype))
    other = tmp_path / "other.npy"
    flags = ["--method", "likelihood-ratio", "--background", str(hierarchical_run)]
    assert _score(run_dir, other, *flags) == 0 and np.isfinite(np.load(other)).all()


def test_an_unknown_method_is_a_usage_error(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        _score(run_dir, tmp_path / "s.npy", "--method", "magic")
    assert done.value.code == 2 and "invalid choice: 'magic'" in capsys.readouterr().err


def test_a_table_with_missing_entries_is_scored_on_its_observed_entries(tmp_path, capsys):
    gen = np.random.default_rng(0)
    table = gen.normal(size=(80, 3)) @ gen.normal(size=(3, 6))
    lines = ["c0,c1,c2,c3,c4,c5"] + [
        ",".join("" if gen.random() < 0.2 and j else repr(float(v)) for j, v in enumerate(row))
        for row in table
    ]
    data = tmp_path / "table.csv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["train", "--dataset", str(data), "--missing", "mask", "--likelihood", "gaussian"]
    assert main([*args, "--z-dim", "2", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()  # what training said
    out = tmp_path / "s.npy"
    for method in ("nll", "elbo", "reconstruction"):
        assert _score(run, out, "--method", method) == 0
        assert np.isfinite(np.load(out)).all() and len(np.load(out)) > 0
    out.unlink()
    _refused(capsys, _score(run, out, "--method", "complexity"), out, "image")
