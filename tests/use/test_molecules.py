import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem, DataStructs, RDConfig  # noqa: E402
from rdkit.Chem import QED, Crippen, Descriptors, rdFingerprintGenerator  # noqa: E402

from pyrovae import PyrovaeError  # noqa: E402
from pyrovae.use import molecules  # noqa: E402

THREE = ["CCO", "c1ccccc1O", "CC(=O)O"]


def _by_hand_int_div(smiles, p):
    """1 - (mean over all ordered pairs of T^p)^(1/p), with RDKit's own Tanimoto."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    pairs = [t**p for fp in fps for t in DataStructs.BulkTanimotoSimilarity(fp, fps)]
    return 1 - (sum(pairs) / len(pairs)) ** (1 / p)


def test_validity_counts_parsing_strings_and_empty_ones_are_invalid():
    assert molecules.validity(["CCO", "C1CC", "", "c1ccccc1"]) == 0.5
    assert molecules.validity([]) == 0.0


def test_canonical_smiles_identify_a_molecule_however_written():
    assert molecules.canonical("OCC") == molecules.canonical("CCO") == "CCO"
    assert molecules.canonical("C1CC") is None and molecules.canonical("") is None
    assert molecules.canonical_set(["OCC", "CCO", "C1CC"]) == {"CCO"}


def test_parse_errors_print_nothing(capfd):
    molecules.validity(["C1CC", "Xx", "c1cccc1"])
    assert capfd.readouterr().err == ""


def test_uniqueness_is_distinct_over_valid_and_unique_at_k_takes_the_first_valid():
    assert molecules.uniqueness(["CCO", "OCC", "CCC"]) == pytest.approx(2 / 3)
    assert molecules.uniqueness(["CCO", "C1CC", "OCC", "CCC"], k=2) == 0.5
    assert molecules.uniqueness(["C1CC", ""]) == 0.0
    with pytest.raises(PyrovaeError, match="k"):
        molecules.uniqueness(["CCO"], k=0)


def test_novelty_is_the_fraction_of_distinct_valid_molecules_not_in_training():
    assert molecules.novelty(["OCC", "CCC"], ["CCO"]) == 0.5
    assert molecules.novelty(["OCC", "CCC", "CCC", "C1CC"], {"CCO"}) == 0.5
    assert molecules.novelty(["OCC"], molecules.canonical_set(["OCC"])) == 0.0
    assert molecules.novelty(["C1CC"], ["CCO"]) == 0.0


def test_internal_diversity_of_copies_is_zero_and_matches_rdkit_tanimoto():
    assert molecules.internal_diversity(["CCO", "OCC"]) == pytest.approx(0.0, abs=1e-12)
    for p in (1, 2):
        mine = molecules.internal_diversity(THREE + ["C1CC"], p=p)
        assert mine == pytest.approx(_by_hand_int_div(THREE, p), abs=1e-9)
    assert molecules.internal_diversity(["C1CC"]) == 0.0


def test_internal_diversity_of_many_molecules_takes_a_seeded_subset():
    pairs = {_by_hand_int_div([a, b], 1) for i, a in enumerate(THREE) for b in THREE[i + 1 :]}
    value = molecules.internal_diversity(THREE, max_molecules=2, seed=3)
    assert min(abs(value - v) for v in pairs) < 1e-9
    assert molecules.internal_diversity(THREE, max_molecules=2, seed=3) == value


def test_property_values_are_nan_for_invalid_and_match_rdkit():
    values = molecules.property_values(["c1ccccc1", "C1CC", ""], "qed")
    assert values[0] == QED.qed(Chem.MolFromSmiles("c1ccccc1"))
    assert np.isnan(values[1:]).all() and values.dtype == np.float64
    ethanol = Chem.MolFromSmiles("CCO")
    assert molecules.property_values(["CCO"], "logp")[0] == Crippen.MolLogP(ethanol)
    assert molecules.property_values(["OCC"], "weight")[0] == pytest.approx(
        Descriptors.MolWt(ethanol), abs=1e-12
    )


def test_sa_is_contribs_sascorer():
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    spec = importlib.util.spec_from_file_location("sascorer_by_hand", path)
    sascorer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sascorer)
    sa = molecules.property_values(["CCO", "c1ccccc1O"], "sa")
    assert list(sa) == [sascorer.calculateScore(Chem.MolFromSmiles(s)) for s in THREE[:2]]
    assert ((sa >= 1) & (sa <= 10)).all()


@pytest.mark.parametrize(("smiles", "large_rings"), [("c1ccccc1", 0), ("C1CCCCCC1", 1)])
def test_penalized_logp_takes_one_per_ring_of_more_than_six_atoms(smiles, large_rings):
    def value(name):
        return molecules.property_values([smiles], name)[0]

    penalised = value("penalized-logp")
    assert penalised == pytest.approx(value("logp") - value("sa") - large_rings, abs=1e-12)


def test_property_names_and_unknown_name():
    assert molecules.property_names() == ("logp", "qed", "sa", "weight", "penalized-logp")
    with pytest.raises(PyrovaeError, match="unknown property 'tpsa'; choose one of: logp"):
        molecules.property_values(["CCO"], "tpsa")


def test_property_distances_are_one_wasserstein():
    same = molecules.property_distances(THREE, list(reversed(THREE)))
    assert set(same) == {"logp", "qed", "sa", "weight"} and set(same.values()) == {0.0}
    weights = molecules.property_distances(["C", "C1CC"], ["CC"], names=("weight",))
    expected = Descriptors.MolWt(Chem.MolFromSmiles("CC")) - Descriptors.MolWt(
        Chem.MolFromSmiles("C")
    )
    assert weights["weight"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(molecules.property_distances(["C1CC"], THREE)["qed"])


def test_wasserstein_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=37), rng.gamma(2.0, size=11).round(1)
    assert molecules._wasserstein(u, v) == pytest.approx(stats.wasserstein_distance(u, v))


def test_molecule_metrics_agree_with_the_single_metrics():
    generated = ["OCC", "CCO", "c1ccccc1O", "C1CC", "CC(=O)O"]
    result = molecules.molecule_metrics(generated, ["CCO"], THREE, properties=("logp", "qed"))
    assert result.n == 5 and result.validity == 0.8
    assert result.uniqueness == 0.75 and result.novelty == pytest.approx(2 / 3)
    assert result.internal_diversity == pytest.approx(molecules.internal_diversity(generated))
    assert result.distances == molecules.property_distances(generated, THREE, ("logp", "qed"))
    flat = result.as_dict()
    assert list(flat) == ["n", "validity", "unique", "novelty", "int_div"] + [
        "wasserstein_logp",
        "wasserstein_qed",
    ]


def test_molecule_metrics_of_no_valid_molecule_are_zeros_and_nan():
    result = molecules.molecule_metrics(["C1CC", ""], ["CCO"], THREE)
    assert (result.validity, result.uniqueness, result.novelty) == (0.0, 0.0, 0.0)
    assert result.internal_diversity == 0.0 and result.n == 2
    assert len(result.distances) == 4 and all(math.isnan(d) for d in result.distances.values())


def test_draw_grid_writes_a_png_of_the_valid_molecules(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    path = tmp_path / "grid.png"
    smiles = ["CCO", "C1CC", "c1ccccc1", "CC(=O)O", "CCN", "CCC"]
    molecules.draw_grid(smiles, path, per_row=3, size=100, legends=list("abcdef"))
    with image_module.open(path) as image:
        assert image.format == "PNG" and image.size == (300, 200)  # 5 valid: 2 rows


def test_draw_grid_of_no_molecule_and_mismatched_legends_are_errors(tmp_path):
    with pytest.raises(PyrovaeError, match="none of the 2 SMILES"):
        molecules.draw_grid(["C1CC", ""], tmp_path / "grid.png")
    with pytest.raises(PyrovaeError, match="legends"):
        molecules.draw_grid(["CCO"], tmp_path / "grid.png", legends=["a", "b"])


def test_without_rdkit_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(PyrovaeError, match=r"pyrovae\[molecules\]") as caught:
        molecules.validity(["CCO"])
    assert "\n" not in str(caught.value)
    with pytest.raises(PyrovaeError, match="RDKit"):
        molecules.property_values(["CCO"], "qed")
