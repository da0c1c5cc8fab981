"""Sequences as token ids: tokenizers, the vocabulary, readers and the sequence datasets."""

from __future__ import annotations

import csv
import gzip
import importlib.machinery
import json
import re
import sys
from importlib import resources

import pytest
import torch

from pyrovae.data import datasets
from pyrovae.data.datasets import load_dataset, load_sequences, molsets_folder
from pyrovae.data.sequences import (
    BOS,
    EOS,
    PAD,
    SMILES_REGEX,
    SPECIALS,
    TOKENIZERS,
    UNK,
    Vocabulary,
    encode_splits,
    read_column,
    read_csv_column,
    read_lines,
)
from pyrovae.errors import PyrovaeError

SMILES = ["CC(=O)Nc1ccc(Cl)cc1", "C[C@@H](Br)c1ccc[nH]1", "C1CC%10CC1", "O=C=O", "c1ccccc1"]


# ----------------------------------------------------------------------------- tokenizers
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("CC(=O)Nc1ccc(Cl)cc1", "C C ( = O ) N c 1 c c c ( Cl ) c c 1"),
        ("C[C@@H](Br)c1ccc[nH]1", "C [C@@H] ( Br ) c 1 c c c [nH] 1"),
        ("C1CC%10CC1", "C 1 C C %10 C C 1"),
    ],
)
def test_smiles_tokens_keep_multi_character_tokens_whole(text, tokens):
    split = TOKENIZERS["smiles"](text)
    assert split == tokens.split()
    assert TOKENIZERS["smiles"].detokenize(split) == text


def test_smiles_the_regex_does_not_cover_is_refused_in_one_line():
    with pytest.raises(PyrovaeError, match=r"does not cover 'CCX'.*'X'.*tokenizer='characters'"):
        TOKENIZERS["smiles"]("CCX")
    with pytest.raises(PyrovaeError, match=r"line 2: .*'C\[C'") as err:
        Vocabulary.build(["CC", "C[C", "CO"], "smiles")
    assert "\n" not in str(err.value)


def test_many_smiles_at_once_split_as_the_regex_splits_each():
    tricky = [*SMILES, "", "[[C]C", "BrCCl", "C%12%13Br", "[Cl-].[Na+]", "B", "C/C=C\\C"]
    vocab = Vocabulary.build(tricky, "smiles")
    x = vocab.encode(tricky, 20)
    for row, text in zip(x.tolist(), tricky, strict=True):
        tokens = re.findall(SMILES_REGEX, text)
        assert row[: len(tokens) + 1] == [*map(vocab.tokens.index, tokens), EOS]
    assert vocab.decode(x) == tricky
    assert vocab.length_of(tricky) == max(len(re.findall(SMILES_REGEX, s)) for s in tricky) + 1
    # one string at a time where the strings are not ASCII
    assert Vocabulary.build(["[é]C", "CC"], "smiles").tokens[4:] == ["C", "[é]"]
    for bad in (["C]"], ["C[]C"], ["C[C", "C]"], ["C%1C"]):
        with pytest.raises(PyrovaeError, match="does not cover"):
            Vocabulary.build(bad, "smiles")


def test_words_and_characters():
    assert TOKENIZERS["words"]("the  cat sat\n") == ["the", "cat", "sat"]
    assert TOKENIZERS["words"].join == " " and TOKENIZERS["characters"].join == ""
    assert TOKENIZERS["characters"]("a b") == ["a", " ", "b"]
    vocab = Vocabulary.build(["the cat", "the dog"], "words")
    assert vocab.tokens == [*SPECIALS, "the", "cat", "dog"]
    assert vocab.decode(vocab.encode(["dog the cat"], 5)) == ["dog the cat"]
    for special in SPECIALS:  # <unk> too, as Penn Treebank writes rare words: never emitted
        with pytest.raises(PyrovaeError, match="a model never emits; replace it"):
            Vocabulary.build([f"a {special} b"], "words")


# ----------------------------------------------------------------------------- vocabulary
def test_vocabulary_is_deterministic_with_specials_first():
    vocab = Vocabulary.build(["aab", "bc", "b"], "characters")
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert vocab.tokens == [*SPECIALS, "b", "a", "c"]  # by count, ties alphabetically
    assert Vocabulary.build(["b", "bc", "aab"], "characters") == vocab
    assert vocab.size == len(vocab) == 7


def test_encode_places_eos_then_padding_and_decodes_back():
    vocab = Vocabulary.build(SMILES, "smiles")
    x = vocab.encode(SMILES, vocab.length_of(SMILES) + 2)
    assert x.dtype == torch.int64 and x.shape == (len(SMILES), 21)
    n = len(TOKENIZERS["smiles"]("O=C=O"))
    assert x[3, n] == EOS and (x[3, n + 1 :] == PAD).all() and (x[3, :n] > UNK).all()
    assert vocab.decode(x) == SMILES
    assert vocab.decode(x[0]) == SMILES[:1]
    unk = x[3].clone()
    unk[1] = UNK
    unk = torch.cat([torch.tensor([BOS]), unk])
    assert vocab.decode(unk) == ["O<unk>C=O"]


def test_too_long_and_unknown_tokens_are_one_line_errors():
    vocab = Vocabulary.build(["CCO"], "smiles")
    with pytest.raises(PyrovaeError, match=r"line 2 needs 6 positions.*length=6"):
        vocab.encode(["CO", "CCCCO"], 5)
    with pytest.raises(PyrovaeError, match=r"line 2 holds the token 'Cl'.*rebuild the vocab"):
        vocab.encode(["CO", "CCl"], 10)
    with pytest.raises(PyrovaeError, match="special token"):
        Vocabulary.build(["a <eos> b"], "words")


def test_config_round_trips_through_json():
    vocab = Vocabulary.build(SMILES, "smiles")
    again = Vocabulary.from_config(json.loads(json.dumps(vocab.to_config())))
    assert again == vocab
    assert torch.equal(again.encode(SMILES, 30), vocab.encode(SMILES, 30))
    with pytest.raises(PyrovaeError, match="must start with"):
        Vocabulary(["a", "b"], "words")
    with pytest.raises(PyrovaeError, match="unknown tokenizer"):
        Vocabulary(list(SPECIALS), "bytes")


# ----------------------------------------------------------------------------- readers
def test_read_lines_of_a_smi_file(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("SMILES\nCCO ethanol\n\n  c1ccccc1\tbenzene  \nO=C=O\n")
    assert read_lines(path) == ["CCO", "c1ccccc1", "O=C=O"]
    text = tmp_path / "t.txt"
    text.write_text("the cat\n\n a dog \n")
    assert read_lines(text) == ["the cat", "a dog"]
    with pytest.raises(PyrovaeError, match="does not exist"):
        read_lines(tmp_path / "missing.smi")


def test_read_column_names_the_columns_when_one_is_missing(tmp_path):
    path = tmp_path / "mols.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        csv.writer(f).writerows([["name", "SMILES"], ["a", "CCO"], ["b", ""], ["c", "CN"]])
    assert read_column(path, "SMILES") == ["CCO", "CN"]
    assert read_column(path, "smiles") == ["CCO", "CN"]
    with pytest.raises(PyrovaeError, match=r"no column 'smi'.*'name', 'SMILES'.*column"):
        read_column(path, "smi")


# ----------------------------------------------------------------------------- datasets
def test_smi_file_loads_as_token_ids_with_a_training_vocabulary(tmp_path):
    path = tmp_path / "mols.smi"
    lines = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCCCCCCCC", "OCCO", "CO", "CN", "NCO", "CC"]
    path.write_text("\n".join(lines) + "\n")
    data = load_dataset(str(path))
    assert data.train.dtype == data.test.dtype == torch.int64
    assert data.train.shape == (8, 11) and data.test.shape == (2, 11) and data.x_dim == 11
    assert data.vocabulary.tokenizer == "smiles"
    assert data.vocabulary.decode(data.test) == lines[-2:]
    path.write_text("\n".join([*lines[:-1], "CBr"]) + "\n")
    with pytest.raises(PyrovaeError, match=r"held-out line 2 holds the token 'Br'.*training"):
        load_dataset(str(path))
    given = Vocabulary.build(["CBr", *lines], "smiles")
    data = load_dataset(str(path), vocabulary=given)
    assert data.vocabulary is given and data.vocabulary.decode(data.test)[-1] == "CBr"


def test_sequence_options_are_refused_where_they_do_not_apply(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,split\nthe cat,train\na dog,train\nthe dog,test\n")
    data = load_dataset(str(path), column="text")
    assert data.vocabulary.tokenizer == "words" and data.test.shape == (1, 3)
    with pytest.raises(PyrovaeError, match=r"tokenizer applies to sequences only"):
        load_dataset("sample", tokenizer="words")
    with pytest.raises(PyrovaeError, match=r"column names a column of a .csv"):
        load_sequences(["a", "b"], "words", column="text")
    with pytest.raises(PyrovaeError, match=r"tokenizer='words' differs"):
        encode_splits(["CC"], ["C"], "words", Vocabulary.build(["CC"], "smiles"))


def test_bundled_moses_sample_loads_and_decodes_back():
    data = load_dataset("moses-sample")
    assert data.train.shape[0] == 50_000 and data.test.shape[0] == 5_000
    assert data.vocabulary.tokenizer == "smiles" and "Cl" in data.vocabulary.tokens
    bundled = resources.files("pyrovae.data") / "bundled" / "moses_sample.csv.gz"
    with resources.as_file(bundled) as path:
        texts, split = read_csv_column(path, "SMILES")
    pairs = list(zip(texts, split, strict=True))
    assert data.vocabulary.decode(data.train) == [t for t, s in pairs if s == "train"]
    assert data.vocabulary.decode(data.test) == [t for t, s in pairs if s == "test"]


def _fake_molsets(tmp_path, monkeypatch):
    folder = tmp_path / "moses"
    (folder / "dataset" / "data").mkdir(parents=True)
    for name, rows in (("train", ["CCO", "CCN", "c1ccccc1"]), ("test", ["CO"])):
        with gzip.open(folder / "dataset" / "data" / f"{name}.csv.gz", "wt") as f:
            f.write("SMILES\n" + "\n".join(rows) + "\n")
    spec = importlib.machinery.ModuleSpec("moses", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    monkeypatch.setattr(datasets, "find_spec", lambda name: spec)


def test_full_moses_reads_the_molsets_files(tmp_path, monkeypatch):
    _fake_molsets(tmp_path, monkeypatch)
    data = load_dataset("moses")
    assert data.train.shape == (3, 9) and data.test.shape == (1, 9)
    assert data.vocabulary.decode(data.train) == ["CCO", "CCN", "c1ccccc1"]


def test_full_moses_without_molsets_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(datasets, "find_spec", lambda name: None)
    with pytest.raises(PyrovaeError, match=r"pip install --no-deps molsets.*'moses-sample'"):
        load_dataset("moses")


def test_finding_molsets_does_not_import_it():
    try:
        molsets_folder()
    except PyrovaeError:
        pytest.skip("molsets is not installed")
    assert "moses" not in sys.modules
