"""Every benchmark script runs with tiny settings (their figures are not asserted here)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = {
    "conditional_samples.py": [
        "--cli",
        "--epochs",
        "1",
        "--per-class",
        "2",
        "--num-samples",
        "2",
    ],
    "anomaly.py": [
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--table-epochs",
        "2",
        "--num-samples",
        "5",
        "--limit",
        "300",
    ],
    "early_stopping.py": ["--factor", "2", "--points", "2", "--num-samples", "5"],
    "impute_cli.py": ["--masks", "1", "--epochs", "2", "--num-samples", "20", "--limit", "120"],
    "sklearn_impute.py": ["--masks", "1", "--max-steps", "20", "--limit", "120"],
    "train_vs_pytorch.py": ["--epochs", "1", "--limit", "256", "--eval-samples", "2"],
    "precision_nll.py": [
        "--epochs",
        "1",
        "--num-samples",
        "2",
        "--limit",
        "256",
        "--test-limit",
        "20",
    ],
    "speed.py": ["--batches", "16", "--rounds", "1", "--epochs", "2", "--size", "64"],
    "sequences.py": [
        "--epochs",
        "1",
        "--limit",
        "256",
        "--heldout",
        "20",
        "--num-samples",
        "3",
        "--samples",
        "20",
    ],
    "vq_prior.py": [
        "--epochs",
        "1",
        "--limit",
        "300",
        "--heldout",
        "50",
        "--samples",
        "50",
        "--num-samples",
        "3",
    ],
    "marginal_vs_pytorch.py": [
        "--epochs",
        "1",
        "--limit",
        "50",
        "--num-samples",
        "5",
        "--repeats",
        "1",
        "--no-memory",
    ],
    "structured_accuracy.py": [
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--init-after",
        "1",
        "--limit",
        "600",
    ],
    "compare_configs.py": [
        "--epochs",
        "1",
        "--num-samples",
        "3",
        "--only",
        "standard",
        "--out",
        "{tmp}",
    ],
    # needs a pyro-ppl/pyro checkout: PYRO_EXAMPLES=/path/to/pyro/examples, else skipped
    "pyro_examples.py": [
        "--pyro-examples",
        "{pyro_examples}",
        "--quick",
        "--out",
        "{tmp}/pyro_examples.json",
    ],
}
EXPECTED = {
    "anomaly.py": "held-out digit: trained on 0-8, the 9s anomalous",
    "early_stopping.py": "default minus the long run's best",
    "impute_cli.py": "pyrovae / IterativeImputer per mask",
    "sklearn_impute.py": "VAEImputer / IterativeImputer per mask",
    "train_vs_pytorch.py": "time ratio",
    "speed.py": "plain PyTorch float32, fused Adam",
    "sequences.py": "time per step, pyrovae / plain PyTorch",
    "vq_prior.py": "learned code prior",
    "precision_nll.py": "bfloat16 - float32 NLL",
    "conditional_samples.py": "labelled as requested:",
    "marginal_vs_pytorch.py": "time ratio pyrovae / plain PyTorch",
    "compare_configs.py": "| standard |",
    "structured_accuracy.py": "the same classifier on the 100 labels alone",
    "pyro_examples.py": "pyrovae log p against Pyro's Importance",
}


def test_every_benchmark_has_smoke_settings():
    helpers = {"plain_vae.py", "plain_seq_vae.py", "memory.py"}
    scripts = {p.name for p in BENCHMARKS.glob("*.py")} - helpers
    assert scripts == set(TINY) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs(name, tmp_path):
    examples = os.environ.get("PYRO_EXAMPLES", "")
    if "{pyro_examples}" in TINY[name] and not (examples and Path(examples).is_dir()):
        pytest.skip("PYRO_EXAMPLES is not set to the examples/ folder of a Pyro checkout")
    args = [
        a.replace("{tmp}", str(tmp_path)).replace("{pyro_examples}", examples) for a in TINY[name]
    ]
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXPECTED[name] in proc.stdout
