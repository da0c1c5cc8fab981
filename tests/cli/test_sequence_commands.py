"""The command line on sequences: a SMILES file and a text file train with the sequence
defaults, evaluate per token (and, for molecules, with the MOSES metrics), sample,
interpolate, design, resume, and refuse what they cannot read."""

from __future__ import annotations

import json
import math

import pytest

from pyrovae.cli import main
from pyrovae.data.datasets import load_dataset

rdkit = pytest.importorskip("rdkit")

TINY = ["--epochs", "1", "--z-dim", "4", "--hidden", "16", "--no-progress"]


@pytest.fixture(scope="module")
def smiles_file(tmp_path_factory):
    data = load_dataset("moses-sample")
    texts = data.vocabulary.decode(data.train[:400])
    path = tmp_path_factory.mktemp("smiles") / "mols.smi"
    path.write_text("SMILES\n" + "".join(f"{t} id{i}\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture(scope="module")
def smiles_run(smiles_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mols"
    assert main(["train", "--dataset", str(smiles_file), "--out", str(out), *TINY]) == 0
    return out


def test_a_smiles_file_trains_with_the_sequence_defaults(smiles_run):
    config = json.loads((smiles_run / "config.json").read_text())
    model, data = config["model"], config["data"]
    assert model["net"] == "gru" and model["likelihood"] == "autoregressive"
    assert data["vocabulary"]["tokenizer"] == "smiles"
    assert model["vocab_size"] == len(data["vocabulary"]["tokens"])
    assert data["binarize"] == "none" and config["train"]["kl_warmup"] == 1.0
    assert config["train"]["free_bits"] == 7.5 and config["train"]["free_bits_per_unit"]
    assert data["n_train"] == 320 and data["n_test"] == 80


def test_evaluate_reports_per_token_figures_and_molecule_metrics(smiles_run, capsys):
    argv = ["evaluate", str(smiles_run), "--num-samples", "4", "--molecules", "30"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "perplexity" in said and "validity" in said and "reconstruction accuracy" in said
    metrics = json.loads((smiles_run / "metrics.json").read_text())
    tokens = metrics["test_nll"] * metrics["n_test"] / metrics["test_nll_per_token"]
    assert tokens == pytest.approx(round(tokens))  # a whole number of tokens
    assert metrics["test_perplexity"] == pytest.approx(math.exp(metrics["test_nll_per_token"]))
    assert metrics["molecules_n"] == 30 and 0 <= metrics["molecules_validity"] <= 1
    assert 0 <= metrics["reconstruction_accuracy"] <= 1


def test_sample_writes_smiles_and_draws_molecules(smiles_run, tmp_path, capsys):
    out = tmp_path / "s.smi"
    assert main(["sample", str(smiles_run), "--n", "12", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 12
    again = tmp_path / "t.smi"
    main(["sample", str(smiles_run), "--n", "12", "--out", str(again)])
    assert again.read_text() == out.read_text()  # seeded
    png = tmp_path / "s.png"
    cold = ["--temperature", "0.3", "--n", "40"]
    if main(["sample", str(smiles_run), *cold, "--out", str(png)]) == 0:
        assert png.read_bytes()[:4] == b"\x89PNG"
    else:  # a decoder trained one epoch may draw no valid molecule: said so, no file
        assert "is a molecule" in capsys.readouterr().err and not png.exists()


def test_sample_refuses_an_image_output_it_cannot_make(smiles_run, tmp_path, capsys):
    assert main(["sample", str(smiles_run), "--out", str(tmp_path / "s.npy")]) != 0
    assert ".smi or .txt" in capsys.readouterr().err


def test_interpolate_writes_one_path_per_pair(smiles_run, tmp_path):
    out = tmp_path / "paths.txt"
    argv = ["interpolate", str(smiles_run), "--out", str(out), "--steps", "5", "--pairs", "3"]
    assert main(argv) == 0
    lines = out.read_text().split("\n")[:-1]
    assert len(lines) == 3 * 5 + 2 and lines[5] == "" and lines[11] == ""


def test_design_writes_new_valid_molecules_best_first(smiles_run, smiles_file, tmp_path, capsys):
    from pyrovae.use.molecules import canonical, canonical_set

    out = tmp_path / "best.smi"
    argv = [
        "design",
        str(smiles_run),
        "--n",
        "5",
        "--starts",
        "4",
        "--rounds",
        "2",
        "--budget",
        "16",
    ]
    code = main([*argv, "--out", str(out)])
    if code != 0:  # a decoder trained one epoch may write nothing valid: said so
        assert "none is a new valid molecule" in capsys.readouterr().err
        assert not out.exists()
        return
    rows = [line.split() for line in out.read_text().splitlines()]
    training = canonical_set(line.split()[0] for line in smiles_file.read_text().splitlines()[1:])
    values = [float(v) for _, v in rows]
    assert values == sorted(values, reverse=True)
    assert all(canonical(s) is not None and canonical(s) not in training for s, _ in rows)


def test_a_run_on_sequences_resumes(smiles_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(smiles_run, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((copy / "history.json").read_text())["epoch"] == [1, 2]


def test_a_token_the_vocabulary_lacks_is_one_line_at_evaluation(smiles_run, tmp_path, capsys):
    other = tmp_path / "other.smi"
    other.write_text("CC[Se]C\nCCO\nCCN\nCCC\nCO\n")
    argv = ["evaluate", str(smiles_run), "--dataset", str(other), "--num-samples", "2"]
    assert main([*argv, "--molecules", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[Se]" in err[0]


def test_a_text_file_trains_samples_and_interpolates(tmp_path):
    words = ["the cat sat", "a dog ran", "the dog sat", "a cat ran", "the cat ran"] * 20
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(words) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(text), "--out", str(run), *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["vocabulary"]["tokenizer"] == "words"
    out = tmp_path / "samples.txt"
    assert main(["sample", str(run), "--n", "7", "--out", str(out)]) == 0
    vocabulary = set(" ".join(words).split())
    for line in out.read_text().splitlines():
        assert set(line.split()) <= vocabulary
    paths = tmp_path / "paths.txt"
    assert main(["interpolate", str(run), "--out", str(paths), "--pairs", "1"]) == 0
    assert main(["design", str(run), "--out", str(tmp_path / "d.smi")]) != 0


def test_another_file_is_padded_to_the_run_s_length(smiles_run, tmp_path, capsys):
    short = tmp_path / "short.smi"
    short.write_text("CCO\nCCN\nCCC\nCO\nCC\n")
    argv = ["evaluate", str(smiles_run), "--dataset", str(short), "--num-samples", "2"]
    assert main([*argv, "--molecules", "0"]) == 0
    long = tmp_path / "long.smi"
    long.write_text("C" * 200 + "\nCCO\nCCN\nCCC\nCO\n")
    capsys.readouterr()
    argv = ["evaluate", str(smiles_run), "--dataset", str(long), "--num-samples", "2"]
    assert main([*argv, "--molecules", "0"]) != 0
    assert "more than the" in capsys.readouterr().err


def test_interpolate_draws_each_path_on_its_own_row(smiles_run, tmp_path):
    from PIL import Image

    out = tmp_path / "paths.png"
    argv = ["interpolate", str(smiles_run), "--out", str(out), "--steps", "4", "--pairs", "3"]
    assert main(argv) == 0
    with Image.open(out) as image:  # invalid decodes kept as a * atom: 3 rows of 4
        assert image.size == (4 * 250, 3 * 250)


def test_free_bits_per_unit_are_refused_on_a_prior_that_does_not_factorise(
    smiles_file, tmp_path, capsys
):
    out = tmp_path / "flow"
    code = main(
        ["train", "--dataset", str(smiles_file), "--out", str(out), *TINY, "--prior", "flow"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "factorise over its units" in err and "--no-free-bits-per-unit" in err, err


def test_without_free_bits_a_sequence_run_does_not_share_them_out(smiles_file, tmp_path):
    out = tmp_path / "nofb"
    args = ["train", "--dataset", str(smiles_file), "--out", str(out), *TINY, "--free-bits", "0"]
    assert main(args) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["free_bits"] == 0 and train["free_bits_per_unit"] is False
