"""Sequences (SMILES molecules, text) as padded tensors of token ids.

A text is split into tokens by a tokenizer of :data:`TOKENIZERS` and each token is
replaced by its id in a :class:`Vocabulary`. A row of an encoded batch is
``[t1, ..., tn, EOS, PAD, ...]``: the tokens, the end token, then padding up to a
common length. The four special tokens have fixed ids (:data:`PAD`, :data:`BOS`,
:data:`EOS`, :data:`UNK`) so that a model can rely on them without reading the
vocabulary; data never encode to ``BOS`` (a decoder's first input) nor to ``UNK`` (its
input under word dropout): a literal ``<unk>`` word, as Penn Treebank text writes its
rare words, is an error to replace by a word of your own.

The vocabulary is built from the training split only, deterministically (tokens by
decreasing frequency, then alphabetically), and stored with a run
(:meth:`Vocabulary.to_config`), so that a reloaded run encodes data exactly as it was
trained. Reading sequence files is here too (:func:`read_lines`, :func:`read_column`);
the train/test split itself is :func:`pyrovae.data.datasets.load_sequences`.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
#: The names of the special tokens, at ids 0..3 of every vocabulary.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
#: Special tokens that data may not hold: a model never emits them (``<unk>`` included,
#: which exists as the decoder's input under word dropout).
RESERVED = frozenset(SPECIALS)

#: The SMILES regular expression of Schwaller et al. (2019), "Molecular Transformer".
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$"
    r"|\%[0-9]{2}|[0-9])"
)
_SMILES = re.compile(SMILES_REGEX)
#: The same tokens for many strings at once: the multi-character ones, never across a line
#: break, and the single characters the regex takes.
_SMILES_MULTI = re.compile(r"\[[^\]\n]+]|Br|Cl|%[0-9]{2}")
_SMILES_SINGLES = "BCNOSPFIbcnosp().=#-+\\/:~@?>*$0123456789"
_UNCOVERED, _NEWLINE, _INSIDE = -1, -2, -3


# ----------------------------------------------------------------------------- tokenizers
def split_smiles(text: str) -> list[str]:
    """SMILES tokens: bracket atoms, ``Br``, ``Cl`` and ring bonds ``%10`` whole.

    Raises a one-line error when the regex leaves characters of ``text`` out, rather than
    dropping them silently as ``re.findall`` would.
    """
    tokens = _SMILES.findall(text)
    if "".join(tokens) != text:
        raise PyrovaeError(*_uncovered(text))
    return tokens


def _uncovered(text: str) -> tuple[str | Param, ...]:
    """The message parts for a SMILES string the tokenizer does not cover."""
    left = "".join(sorted(set(_SMILES.sub("", text))))
    return (
        f"the SMILES tokenizer does not cover {text!r} (characters {left!r}); "
        "correct the string, or pass ",
        Param("tokenizer", "characters"),
    )


@dataclass(frozen=True)
class Tokenizer:
    """How texts split into tokens, and how tokens join back into a text.

    Attributes
    ----------
    split
        Text to tokens.
    join
        The separator that joins tokens back: ``""`` for characters and SMILES, ``" "``
        for words.
    molecules
        Whether the texts are molecules (SMILES): what uses a run then may score and
        draw them with RDKit (:mod:`pyrovae.use.molecules`).
    codes
        A faster way to tokenise many texts at once, ``codes(texts, where)``, or None:
        one text at a time with ``split``.
    """

    split: Callable[[str], list[str]]
    join: str
    molecules: bool = False
    codes: Callable[[Sequence[str], str], Any] | None = None

    def __call__(self, text: str) -> list[str]:
        return self.split(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Tokens back to a text."""
        return self.join.join(tokens)


def default_tokenizer(path: str | Path, column: str | None = None) -> str:
    """The tokenizer a file implies: ``.smi`` or a column named SMILES, else words."""
    if column is not None:
        return "smiles" if column.lower() == "smiles" else "words"
    return "smiles" if suffix_of(path) == ".smi" else "words"


# ----------------------------------------------------------------------------- token codes
@dataclass
class _Codes:
    """Tokenised texts, flat: ``ids`` index ``table`` (the distinct tokens met), and
    ``lengths`` say how many tokens each text has."""

    ids: np.ndarray
    table: list[str]
    lengths: np.ndarray

    def line_of(self, position: int) -> int:
        """The 0-based text that flat token ``position`` belongs to."""
        return int(np.searchsorted(np.cumsum(self.lengths), position, side="right"))


class _Growing(dict):
    """A dict that gives each new key the next id."""

    def __missing__(self, key: str) -> int:
        self[key] = value = len(self)
        return value


def _codes(texts: Sequence[str], tokenizer: str, where: str) -> _Codes:
    """Tokenise ``texts``; ``where`` names a text in errors ("line", "held-out line")."""
    if isinstance(texts, str):
        raise PyrovaeError("pass a list of texts, not one string")
    texts = texts if isinstance(texts, list) else list(texts)
    other = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if other is not None:
        kind = type(texts[other]).__name__
        raise PyrovaeError(f"{where} {other + 1} is a {kind}, not a string")
    chosen = lookup(TOKENIZERS, tokenizer, "tokenizer")
    if chosen.codes is not None:
        return chosen.codes(texts, where)
    return _generic_codes(texts, chosen, where)


def _generic_codes(texts: Sequence[str], tokenizer: Tokenizer, where: str) -> _Codes:
    """Any tokenizer, one text at a time."""
    index, ids, lengths = _Growing(), array("i"), array("q")
    get = index.__getitem__
    for i, text in enumerate(texts):
        try:
            tokens = tokenizer.split(text)
        except PyrovaeError as err:
            raise PyrovaeError(f"{where} {i + 1}: ", *err.parts) from None
        lengths.append(len(tokens))
        ids.extend(map(get, tokens))
    return _Codes(np.frombuffer(ids, np.int32), list(index), np.frombuffer(lengths, np.int64))


def _smiles_codes(texts: Sequence[str], where: str) -> _Codes:
    """SMILES tokens of many strings at once, as :func:`split_smiles` splits each.

    Why: the regex one string at a time takes ~10 s on the 1.6 M strings of MOSES. Here one
    pass of a regex finds the few multi-character tokens in all strings joined, and
    every other character is a token of its own, looked up in a table.
    """
    joined = "\n".join(texts)
    if not texts or not joined.isascii() or joined.count("\n") != len(texts) - 1:
        return _generic_codes(texts, TOKENIZERS["smiles"], where)
    table = list(_SMILES_SINGLES)
    lut = np.full(256, _UNCOVERED, np.int32)
    lut[np.frombuffer(_SMILES_SINGLES.encode(), np.uint8)] = np.arange(len(table))
    lut[ord("\n")] = _NEWLINE
    code = lut[np.frombuffer(joined.encode("ascii"), np.uint8)]
    starts, ends, multi = _multi_tokens(joined, table)
    inside = _inside(starts, ends)
    code[starts] = multi
    code[inside] = _INSIDE
    newlines = np.flatnonzero(code == _NEWLINE)
    uncovered = np.flatnonzero(code == _UNCOVERED)
    if uncovered.size:
        line = int(np.searchsorted(newlines, uncovered[0]))
        raise PyrovaeError(f"{where} {line + 1}: ", *_uncovered(texts[line]))
    # tokens before the end of each text: positions, less those inside a multi-character
    # token and the line breaks
    bounds = np.append(newlines, len(code))
    before = bounds - np.searchsorted(inside, bounds) - np.arange(len(bounds))
    return _Codes(code[code >= 0], table, np.diff(before, prepend=0))


#: Tokenizers by name (``tokenizer=``): each is a callable from a text to its tokens.
TOKENIZERS: dict[str, Tokenizer] = {
    "characters": Tokenizer(list, ""),
    "smiles": Tokenizer(split_smiles, "", molecules=True, codes=_smiles_codes),
    "words": Tokenizer(str.split, " "),
}


def _multi_tokens(joined: str, table: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the multi-character SMILES tokens start and end, and their ids in ``table``
    (which grows by the new ones)."""
    index = {token: i for i, token in enumerate(table)}
    starts, ends, ids = array("q"), array("q"), array("i")
    for match in _SMILES_MULTI.finditer(joined):
        token = match.group()
        if token not in index:
            index[token] = len(table)
            table.append(token)
        starts.append(match.start())
        ends.append(match.end())
        ids.append(index[token])
    return (
        np.frombuffer(starts, np.int64),
        np.frombuffer(ends, np.int64),
        np.frombuffer(ids, np.int32),
    )


def _inside(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The positions after the first character of each span ``[start, end)``, sorted."""
    sizes = ends - starts - 1
    offsets = starts + 1 - (np.cumsum(sizes) - sizes)
    return np.repeat(offsets, sizes) + np.arange(int(sizes.sum()))


def _pad(ids: np.ndarray, lengths: np.ndarray, length: int) -> torch.Tensor:
    """Rows ``[t1..tn, EOS, PAD...]`` of ``length`` ids, as a LongTensor."""
    out = np.zeros((len(lengths), length), np.int64)
    out[np.arange(length) < lengths[:, None]] = ids
    out[np.arange(len(lengths)), lengths] = EOS
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- vocabulary
@dataclass
class Vocabulary:
    """Token ids: the special tokens at 0..3, then the data's tokens.

    Attributes
    ----------
    tokens
        ``SPECIALS`` first, then the tokens of the training data by decreasing frequency,
        ties alphabetically, so that the same data always give the same ids.
    tokenizer
        The name in :data:`TOKENIZERS` that splits texts into these tokens.
    """

    tokens: list[str]
    tokenizer: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tokens = list(self.tokens)
        lookup(TOKENIZERS, self.tokenizer, "tokenizer")
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise PyrovaeError(f"a vocabulary's tokens must start with {list(SPECIALS)}")
        self._index = {token: i for i, token in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise PyrovaeError("a vocabulary's tokens must be distinct")

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: str) -> Vocabulary:
        """The vocabulary of ``texts`` (the training split only: held-out data must not
        choose the tokens a model can read)."""
        codes = _codes(texts, tokenizer, "line")
        vocab = cls._from_codes(codes, tokenizer)
        vocab._ids(codes, "line")  # refuses the names of special tokens in the data
        return vocab

    @classmethod
    def _from_codes(cls, codes: _Codes, tokenizer: str) -> Vocabulary:
        counts = np.bincount(codes.ids, minlength=len(codes.table)).tolist()
        ranked = sorted(
            (-n, t) for t, n in zip(codes.table, counts, strict=True) if n and t not in SPECIALS
        )
        return cls([*SPECIALS, *(t for _, t in ranked)], tokenizer)

    @property
    def molecules(self) -> bool:
        """Whether its texts are molecules (SMILES), as its tokenizer says."""
        return TOKENIZERS[self.tokenizer].molecules

    @property
    def size(self) -> int:
        """How many tokens, specials included: the size of a model's softmax."""
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def length_of(self, texts: Sequence[str]) -> int:
        """The positions the longest of ``texts`` needs: its tokens and the end token."""
        return int(_codes(texts, self.tokenizer, "line").lengths.max(initial=0)) + 1

    def encode(self, texts: Sequence[str], length: int) -> torch.Tensor:
        """``texts`` as a LongTensor ``(N, length)`` of rows ``[t1..tn, EOS, PAD...]``.

        Raises a one-line error for a token that is not in the vocabulary, and for a text
        that needs more than ``length`` positions.
        """
        if int(length) < 1:
            raise PyrovaeError(Param("length"), f" must be at least 1, got {length}")
        codes = _codes(texts, self.tokenizer, "line")
        ids = self._ids(codes, "line")
        needed = codes.lengths + 1
        if needed.size and int(needed.max()) > length:
            i = int(np.argmax(needed > length))
            raise PyrovaeError(
                f"line {i + 1} needs {int(needed[i])} positions with its end token, more "
                f"than length={length}; pass a larger max length: ",
                Param("length", int(needed.max())),
            )
        return _pad(ids, codes.lengths, int(length))

    def _ids(self, codes: _Codes, where: str, hint: str = "") -> np.ndarray:
        """The vocabulary's ids of tokenised texts; a one-line error for a token without
        one (or a reserved special token in the data)."""
        index = self._index
        remap = np.array(
            [-1 if t in RESERVED else index.get(t, -1) for t in codes.table], np.int32
        )
        ids = remap[codes.ids]
        missing = np.flatnonzero(ids < 0)
        if missing.size:
            token = codes.table[codes.ids[missing[0]]]
            line = codes.line_of(int(missing[0])) + 1
            if token in RESERVED:
                raise PyrovaeError(
                    f"{where} {line} holds {token!r}, the name of a special token that a "
                    "model never emits; replace it in the data by a word of your own"
                )
            raise PyrovaeError(
                f"{where} {line} holds the token {token!r}, which is not in the vocabulary"
                f"{hint}; rebuild the vocabulary from data that contain it"
            )
        return ids

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Rows of ids back to texts: each stops at its first ``EOS``; ``PAD`` and ``BOS``
        are skipped, ``UNK`` reads ``<unk>``. A 1-D tensor is one row."""
        rows = torch.as_tensor(tokens).detach().cpu().long()
        rows = rows.reshape(1, -1) if rows.dim() == 1 else rows
        if rows.dim() != 2:
            raise PyrovaeError(f"decode takes ids of shape (N, L); got {tuple(rows.shape)}")
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.size):
            raise PyrovaeError(f"token ids must lie in 0..{self.size - 1} for this vocabulary")
        is_end = rows == EOS
        ends = torch.where(is_end.any(1), is_end.int().argmax(1), rows.shape[1]).tolist()
        join, tokens_ = TOKENIZERS[self.tokenizer].join, self.tokens
        return [
            join.join([tokens_[i] for i in row[:end] if i > BOS])
            for row, end in zip(rows.tolist(), ends, strict=True)
        ]

    def to_config(self) -> dict[str, Any]:
        """JSON-safe: what a run stores to encode data again exactly as it was trained."""
        return {"tokens": list(self.tokens), "tokenizer": self.tokenizer}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary :meth:`to_config` wrote."""
        if not isinstance(config, Mapping) or not {"tokens", "tokenizer"} <= set(config):
            raise PyrovaeError("a vocabulary's config needs 'tokens' and 'tokenizer'")
        return cls(list(config["tokens"]), str(config["tokenizer"]))


def encode_splits(
    train: Sequence[str],
    test: Sequence[str],
    tokenizer: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> tuple[Vocabulary, torch.Tensor, torch.Tensor]:
    """Encode a train/test split to one common length: the longest text's tokens + 1.

    The vocabulary is built from ``train`` unless given (a reloaded run passes its own);
    ``tokenizer`` defaults to the vocabulary's and must agree with it.
    """
    if vocabulary is not None and tokenizer not in (None, vocabulary.tokenizer):
        raise PyrovaeError(
            Param("tokenizer", tokenizer),
            f" differs from the vocabulary's {vocabulary.tokenizer!r}; leave it out",
        )
    name = tokenizer or (vocabulary.tokenizer if vocabulary is not None else None)
    if name is None:
        raise PyrovaeError("pass ", Param("tokenizer"), f": one of {', '.join(TOKENIZERS)}")
    train_codes = _codes(train, name, "training line")
    test_codes = _codes(test, name, "held-out line")
    built = vocabulary is None
    vocab = Vocabulary._from_codes(train_codes, name) if built else vocabulary
    hint = " (it is built from the training split)" if built else ""
    train_ids = vocab._ids(train_codes, "training line")
    test_ids = vocab._ids(test_codes, "held-out line", hint)
    length = max(int(c.lengths.max(initial=0)) for c in (train_codes, test_codes)) + 1
    return (
        vocab,
        _pad(train_ids, train_codes.lengths, length),
        _pad(test_ids, test_codes.lengths, length),
    )


# ----------------------------------------------------------------------------- readers
def suffix_of(path: str | Path) -> str:
    """The suffix that says what a file holds, past a ``.gz``: ``.smi`` for ``a.smi.gz``
    (lower case)."""
    name = Path(path).name.lower()
    return Path(name.removesuffix(".gz")).suffix


def _open_text(path: Path) -> IO[str]:
    """A file as UTF-8 text, through gzip when its name ends in ``.gz``."""
    if not path.is_file():
        raise PyrovaeError(f"data file {path} does not exist")
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_lines(path: str | Path) -> list[str]:
    """One sequence a line, stripped, blank lines skipped (``.txt``, ``.smi``, or gzipped).

    A ``.smi`` line keeps its first field only (SMILES files often name the molecule
    after it), and a first line ``smiles`` (any case) is a header and skipped.
    """
    path = Path(path)
    try:
        with _open_text(path) as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    lines = [line for line in lines if line]
    if suffix_of(path) == ".smi":
        lines = [line.split(maxsplit=1)[0] for line in lines]
        if lines and lines[0].lower() == "smiles":
            lines = lines[1:]
    return lines


def read_column(path: str | Path, column: str) -> list[str]:
    """The non-empty cells of ``column`` of a CSV with a header row (gzipped if ``.gz``)."""
    return read_csv_column(path, column)[0]


def read_csv_column(path: str | Path, column: str) -> tuple[list[str], list[str] | None]:
    """The non-empty cells of ``column``, and the split each row names (lower case) when
    the table has a column named ``split`` (any case), else None.

    ``column`` is matched exactly, or in any case when only one column matches so.
    """
    path = Path(path)
    try:
        with _open_text(path) as f:
            text = f.read()
        header, rows = _csv_rows(text)
        c, s = _column_index(path, header, column), _split_index(header)
        cells = [(row[c].strip(), row[s] if s is not None else "") for row in rows if row]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    except IndexError:
        raise PyrovaeError(f"{path} has a row shorter than its header") from None
    cells = [(cell, split) for cell, split in cells if cell]
    texts = [cell for cell, _ in cells]
    return texts, ([split.strip().lower() for _, split in cells] if s is not None else None)


def _csv_rows(text: str) -> tuple[list[str], Iterable[list[str]]]:
    """A CSV's header and rows. A table of one column without quotes is its lines: that
    reads the 1.6 M rows of MOSES in a fraction of the ``csv`` module's time."""
    if "," not in text and '"' not in text:
        lines = text.splitlines()
        return lines[:1], ([line] for line in lines[1:])
    reader = csv.reader(io.StringIO(text))
    return [cell.strip() for cell in next(reader, [])], reader


def _column_index(path: Path, header: list[str], column: str) -> int:
    if column in header:
        return header.index(column)
    folded = [i for i, name in enumerate(header) if name.lower() == str(column).lower()]
    if len(folded) == 1:
        return folded[0]
    names = ", ".join(repr(name) for name in header) or "none"
    raise PyrovaeError(
        f"{path} has no column {column!r}; its columns are {names}: pass one as ",
        Param("column"),
    )


def _split_index(header: list[str]) -> int | None:
    splits = [i for i, name in enumerate(header) if name.lower() == "split"]
    return splits[0] if splits else None
