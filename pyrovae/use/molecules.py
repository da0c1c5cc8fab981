"""Generated molecules: the MOSES metrics, molecular properties, and drawings.

A VAE trained on SMILES strings is judged by what it samples (Polykovskiy et al. 2020,
"Molecular Sets (MOSES)"): how many samples are molecules at all (validity), how many
distinct ones (uniqueness), how many are not copies of the training set (novelty), how
different they are from each other (internal diversity), and how far the distribution of
their chemical properties lies from held-out molecules (Wasserstein distances). The same
properties (logP, QED, synthetic accessibility, ...) are what latent-space design
optimises, so :data:`PROPERTIES` lists them by name.

RDKit is an optional dependency (``pip install 'pyrovae[molecules]'``): it is imported
inside the functions, so this module imports without it and each function raises a
:class:`~pyrovae.errors.PyrovaeError` saying how to install it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError

#: An ``rdkit.Chem.Mol``; RDKit is optional, so the annotation names no class of it.
Mol = Any

#: The properties whose distributions MOSES compares (``property_distances``).
MOSES_PROPERTIES = ("logp", "qed", "sa", "weight")
#: Internal diversity of more molecules than this is computed on a random subset.
DIVERSITY_SUBSET = 5000
#: MOSES's fingerprint: Morgan (ECFP4-like), radius 2, folded to 1024 bits.
MORGAN_RADIUS, MORGAN_BITS = 2, 1024


def _rdkit():
    """Return ``rdkit.Chem``, or raise a one-line error saying how to install RDKit."""
    try:
        from rdkit import Chem
    except ImportError:
        raise PyrovaeError(
            "the molecule metrics need RDKit: pip install 'pyrovae[molecules]'"
        ) from None
    return Chem


def _mols(smiles: Iterable[str]) -> list[Mol | None]:
    """Parse each SMILES string; None where it does not parse or is empty.

    RDKit's parse errors are silenced while parsing (a model's samples are often invalid,
    and each invalid one would print several lines), and restored afterwards.
    """
    chem = _rdkit()
    from rdkit import rdBase

    with rdBase.BlockLogs():
        mols = [chem.MolFromSmiles(s) if s else None for s in smiles]
    return [m if m is not None and m.GetNumAtoms() > 0 else None for m in mols]


def _valid(mols: Iterable[Mol | None]) -> list[Mol]:
    return [m for m in mols if m is not None]


def _canonicals(mols: Iterable[Mol]) -> list[str]:
    chem = _rdkit()
    return [chem.MolToSmiles(m) for m in mols]


def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES of a molecule, or None when it does not parse (or is empty).

    Two strings of the same molecule (``"OCC"``, ``"CCO"``) have the same canonical form,
    so uniqueness and novelty compare canonical strings.
    """
    mol = _mols([smiles])[0]
    return None if mol is None else _canonicals([mol])[0]


def canonical_set(smiles: Iterable[str]) -> set[str]:
    """The distinct canonical SMILES of the valid strings.

    Canonicalising a training set (MOSES's has 1.6M molecules) takes minutes: compute it
    once with this and pass the set to :func:`novelty` or :func:`molecule_metrics`.
    """
    return set(_canonicals(_valid(_mols(smiles))))


def validity(smiles: Iterable[str]) -> float:
    """The fraction of the strings that parse to a molecule: ``#valid / #strings``.

    Empty strings are invalid; an empty input has validity 0.0.
    """
    mols = _mols(smiles)
    return len(_valid(mols)) / len(mols) if mols else 0.0


def _unique_fraction(canonicals: Sequence[str]) -> float:
    return len(set(canonicals)) / len(canonicals) if canonicals else 0.0


def uniqueness(smiles: Iterable[str], k: int | None = None) -> float:
    """The fraction of distinct molecules among the valid ones: ``#distinct / #valid``.

    Parameters
    ----------
    smiles
        The generated SMILES strings; the invalid ones are left out.
    k
        Count only the first ``k`` valid molecules, as MOSES's unique@k (unique@1000,
        unique@10000) does, so that samples of different sizes compare; all of them
        when there are fewer than ``k``.

    Returns
    -------
    float
        0.0 when no string is valid.
    """
    if k is not None and k < 1:
        raise PyrovaeError("unique@k needs ", Param("k"), f" of at least 1, got {k}")
    canonicals = _canonicals(_valid(_mols(smiles)))
    return _unique_fraction(canonicals[:k] if k is not None else canonicals)


def _training_set(training: Iterable[str]) -> set[str]:
    """A set or frozenset is taken as canonical already; anything else is canonicalised."""
    return training if isinstance(training, set | frozenset) else canonical_set(training)


def _novel_fraction(canonicals: Iterable[str], training: set[str]) -> float:
    distinct = set(canonicals)
    return len(distinct - training) / len(distinct) if distinct else 0.0


def novelty(smiles: Iterable[str], training: Iterable[str]) -> float:
    """The fraction of the distinct valid molecules not in the training set.

    ``|G - T| / |G|`` with G the distinct canonical SMILES of the valid generated strings
    and T those of the training set: a model that only recalls its training molecules
    has novelty 0.

    Parameters
    ----------
    smiles
        The generated SMILES strings.
    training
        The training SMILES strings, canonicalised here; or a ``set`` (or ``frozenset``)
        of canonical SMILES from :func:`canonical_set`, taken as it is.

    Returns
    -------
    float
        0.0 when no generated string is valid.
    """
    return _novel_fraction(_canonicals(_valid(_mols(smiles))), _training_set(training))


def _fingerprints(mols: Sequence[Mol]) -> np.ndarray:
    """Morgan fingerprints, radius 2, 1024 bits, as an ``(n, 1024)`` matrix of 0/1."""
    _rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)
    return np.stack([generator.GetFingerprintAsNumPy(m) for m in mols]).astype(np.float32)


def _mean_tanimoto_power(fps: np.ndarray, p: int, block: int = 1000) -> float:
    """The mean over all ordered pairs (i, j), i == j included, of Tanimoto(i, j)^p.

    Tanimoto(a, b) = |a & b| / (|a| + |b| - |a & b|), the intersections all at once as a
    matrix product of the 0/1 fingerprints (exact: float32 sums integers up to 2^24), a
    block of rows at a time to bound memory. Two empty fingerprints count as identical.
    """
    counts = fps.sum(axis=1, dtype=np.float64)
    total = 0.0
    for start in range(0, len(fps), block):
        both = (fps[start : start + block] @ fps.T).astype(np.float64)
        either = counts[start : start + block, None] + counts[None, :] - both
        similarity = np.divide(both, either, out=np.ones_like(both), where=either > 0)
        total += float(np.sum(similarity**p))
    return total / len(fps) ** 2


def _diversity(mols: Sequence[Mol], p: int, max_molecules: int, seed: int) -> float:
    if not mols:
        return 0.0
    if len(mols) > max_molecules:
        keep = np.random.default_rng(seed).choice(len(mols), max_molecules, replace=False)
        mols = [mols[i] for i in keep]
    return 1.0 - _mean_tanimoto_power(_fingerprints(mols), p) ** (1.0 / p)


def internal_diversity(
    smiles: Iterable[str], p: int = 1, *, max_molecules: int = DIVERSITY_SUBSET, seed: int = 0
) -> float:
    """MOSES's internal diversity IntDiv_p of the valid molecules: are the samples varied?

    ``IntDiv_p(G) = 1 - ( 1/|G|^2 sum_{m1, m2 in G} T(m1, m2)^p )^(1/p)``, T the Tanimoto
    similarity of Morgan fingerprints (radius 2, 1024 bits), over all ordered pairs with
    each molecule paired with itself too (as MOSES does), so n copies of one molecule
    have IntDiv 0, and even n distinct ones at most ``1 - 1/n``. This is the paper's
    formula; for p = 2 the ``moses`` package's code instead averages
    ``(mean_j T^p)^(1/p)`` over i, which differs slightly.

    Parameters
    ----------
    smiles
        The generated SMILES strings; duplicates count, invalid ones are left out.
    p
        The power: 1 (IntDiv1) or 2 (IntDiv2, which weighs near-copies more).
    max_molecules
        With more valid molecules than this (5,000), the diversity is computed on a
        random subset of this many, drawn with ``seed``: the cost grows as n^2.
    seed
        The seed of that subset, so that the value is reproducible.

    Returns
    -------
    float
        0.0 when no string is valid.
    """
    if p < 1:
        raise PyrovaeError("internal diversity needs ", Param("p"), f" of at least 1, got {p}")
    return _diversity(_valid(_mols(smiles)), p, max_molecules, seed)


def _logp(mol: Mol) -> float:
    from rdkit.Chem import Crippen

    return Crippen.MolLogP(mol)


def _qed(mol: Mol) -> float:
    from rdkit.Chem import QED

    return QED.qed(mol)


@cache
def _sascorer():
    """RDKit's Contrib ``sascorer`` module, loaded from its file (it is no package)."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise PyrovaeError(f"the 'sa' property needs RDKit's Contrib SA_Score, not at {path}")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sa(mol: Mol) -> float:
    return _sascorer().calculateScore(mol)


def _weight(mol: Mol) -> float:
    from rdkit.Chem import Descriptors

    return Descriptors.MolWt(mol)


def _large_rings(mol: Mol) -> int:
    return sum(len(ring) > 6 for ring in mol.GetRingInfo().AtomRings())


def _penalized_logp(mol: Mol) -> float:
    return _logp(mol) - _sa(mol) - _large_rings(mol)


#: Molecular properties by name, each a function of an ``rdkit.Chem.Mol``:
#:
#: ``logp``: Crippen's octanol-water partition coefficient (``Crippen.MolLogP``).
#: ``qed``: quantitative estimate of drug-likeness in [0, 1] (``QED.qed``).
#: ``sa``: synthetic accessibility, 1 (easy) to 10 (hard), Ertl & Schuffenhauer 2009
#: (RDKit's Contrib ``sascorer``).
#: ``weight``: the molecular weight in daltons (``Descriptors.MolWt``).
#: ``penalized-logp``: ``logP - SA - (number of rings with more than 6 atoms)``, the
#: design target of Gómez-Bombarelli et al. 2018 and Kusner et al. 2017 as their papers
#: state it, unnormalised (JT-VAE's code instead standardises each term by its ZINC
#: mean and deviation, and penalises ``max(largest ring size - 6, 0)``).
#:
#: The functions import RDKit when called; use :func:`property_values` on SMILES.
PROPERTIES: dict[str, Callable[[Mol], float]] = {
    "logp": _logp,
    "qed": _qed,
    "sa": _sa,
    "weight": _weight,
    "penalized-logp": _penalized_logp,
}
#: The properties a design search maximises: those that are better higher (SA,
#: synthetic difficulty, and molecular weight are not).
DESIGNABLE = ("logp", "penalized-logp", "qed")


def property_names() -> tuple[str, ...]:
    """The names of :data:`PROPERTIES`: what :func:`property_values` computes."""
    return tuple(PROPERTIES)


def _property(name: str) -> Callable[[Mol], float]:
    return lookup(PROPERTIES, name, "property")


def _values(mols: Iterable[Mol | None], prop: Callable[[Mol], float]) -> np.ndarray:
    return np.array([np.nan if m is None else prop(m) for m in mols], dtype=np.float64)


def property_values(smiles: Iterable[str], name: str) -> np.ndarray:
    """A property of each molecule, NaN where the SMILES string is invalid.

    Parameters
    ----------
    smiles
        SMILES strings.
    name
        One of :func:`property_names`: ``"logp"``, ``"qed"``, ``"sa"``, ``"weight"``,
        ``"penalized-logp"`` (see :data:`PROPERTIES`).

    Returns
    -------
    numpy.ndarray
        Shape ``(len(smiles),)``, float64.
    """
    prop = _property(name)
    return _values(_mols(smiles), prop)


def _wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """The 1-Wasserstein distance between two samples: ``integral |F_u(t) - F_v(t)| dt``.

    F_u and F_v are the empirical distribution functions; between consecutive points of
    the pooled sample they are constant, so the integral is a sum. This is what
    ``scipy.stats.wasserstein_distance`` computes (scipy is no dependency of pyrovae).
    NaN when either sample is empty.
    """
    if len(u) == 0 or len(v) == 0:
        return float("nan")
    u, v = np.sort(u), np.sort(v)
    points = np.sort(np.concatenate([u, v]))
    cdf_u = np.searchsorted(u, points[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, points[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(points)))


def _distances(
    generated: Sequence[Mol], reference: Sequence[Mol], names: Sequence[str]
) -> dict[str, float]:
    props = {name: _property(name) for name in names}
    return {
        name: _wasserstein(_values(generated, prop), _values(reference, prop))
        for name, prop in props.items()
    }


def property_distances(
    generated: Iterable[str],
    reference: Iterable[str],
    names: Sequence[str] = MOSES_PROPERTIES,
) -> dict[str, float]:
    """Per property, how far the generated molecules' distribution is from the reference.

    ``W1(P_gen, P_ref) = integral |F_gen(t) - F_ref(t)| dt``, the 1-Wasserstein distance
    between the property values of the valid generated molecules and those of the valid
    reference (held-out) ones, in the property's units; MOSES reports it for logP, QED,
    SA and molecular weight. 0 when the two distributions are the same.

    Parameters
    ----------
    generated
        The generated SMILES strings; the invalid ones are left out.
    reference
        Held-out SMILES strings (MOSES's test set).
    names
        Which of :func:`property_names` to compare.

    Returns
    -------
    dict
        Property name to distance; NaN for all when no generated string is valid.
    """
    for name in names:
        _property(name)
    return _distances(_valid(_mols(generated)), _valid(_mols(reference)), names)


@dataclass
class MoleculeMetrics:
    """The MOSES metrics of a sample of generated SMILES strings.

    Attributes
    ----------
    validity
        The fraction of the strings that are molecules.
    uniqueness
        The fraction of distinct molecules among the valid ones.
    novelty
        The fraction of the distinct valid molecules not in the training set.
    internal_diversity
        IntDiv1 of the valid molecules (see :func:`internal_diversity`).
    distances
        Property name to the 1-Wasserstein distance from the reference molecules.
    n
        The number of strings sampled.
    """

    validity: float
    uniqueness: float
    novelty: float
    internal_diversity: float
    distances: dict[str, float]
    n: int

    def as_dict(self) -> dict[str, float]:
        """Flat keys, as a table or a log writes them: ``"unique"``, ``"wasserstein_qed"``."""
        flat = {
            "n": self.n,
            "validity": self.validity,
            "unique": self.uniqueness,
            "novelty": self.novelty,
            "int_div": self.internal_diversity,
        }
        return flat | {f"wasserstein_{name}": d for name, d in self.distances.items()}


def molecule_metrics(
    generated: Iterable[str],
    training: Iterable[str],
    reference: Iterable[str],
    properties: Sequence[str] = MOSES_PROPERTIES,
) -> MoleculeMetrics:
    """All the MOSES metrics of a sample, each molecule parsed once.

    Parameters
    ----------
    generated
        The sampled SMILES strings.
    training
        The training SMILES, for novelty; or a set of canonical SMILES from
        :func:`canonical_set`, which saves canonicalising a large training set each time.
    reference
        Held-out SMILES, for the property distances.
    properties
        Which of :func:`property_names` to compare with ``reference``.

    Returns
    -------
    MoleculeMetrics
        With zeros and NaN distances when no generated string is valid.
    """
    for name in properties:
        _property(name)
    mols = _mols(generated)
    valid = _valid(mols)
    canonicals = _canonicals(valid)
    return MoleculeMetrics(
        validity=len(valid) / len(mols) if mols else 0.0,
        uniqueness=_unique_fraction(canonicals),
        novelty=_novel_fraction(canonicals, _training_set(training)),
        internal_diversity=_diversity(valid, 1, DIVERSITY_SUBSET, 0),
        distances=_distances(valid, _valid(_mols(reference)), properties),
        n=len(mols),
    )


def _save_png(image: Any, path: str | os.PathLike) -> None:
    """Save what ``MolsToGridImage`` returned: a PIL image, or PNG bytes (under IPython)."""
    data = getattr(image, "data", image)
    if hasattr(image, "save"):
        image.save(path, format="PNG")
    elif isinstance(data, bytes) and data.startswith(b"\x89PNG"):
        Path(path).write_bytes(data)
    else:
        raise PyrovaeError(f"RDKit drew the grid as {type(image).__name__}, not as a PNG image")


def draw_grid(
    smiles: Sequence[str],
    path: str | os.PathLike,
    per_row: int = 5,
    size: int = 250,
    legends: Sequence[str] | None = None,
) -> None:
    """Draw the valid molecules in a grid and save it as a PNG image.

    The image is ``per_row * size`` pixels wide and ``rows * size`` high; invalid strings
    are skipped (with their legends), so a sample's drawing shows what it made.

    Parameters
    ----------
    smiles
        SMILES strings.
    path
        Where to write the PNG file.
    per_row
        Molecules per row.
    size
        The side of each molecule's square, in pixels.
    legends
        A caption under each molecule, one per string of ``smiles``.
    """
    if per_row < 1 or size < 1:
        raise PyrovaeError("a grid needs ", Param("per_row"), " and ", Param("size"), " >= 1")
    if legends is not None and len(legends) != len(smiles):
        raise PyrovaeError(f"{len(legends)} ", Param("legends"), f" for {len(smiles)} SMILES")
    mols = _mols(smiles)
    keep = [i for i, m in enumerate(mols) if m is not None]
    if not keep:
        raise PyrovaeError(f"none of the {len(mols)} SMILES strings to draw is a molecule")
    from rdkit.Chem import Draw

    image = Draw.MolsToGridImage(
        [mols[i] for i in keep],
        molsPerRow=per_row,
        subImgSize=(size, size),
        legends=None if legends is None else [str(legends[i]) for i in keep],
        useSVG=False,
        returnPNG=False,
    )
    _save_png(image, path)
