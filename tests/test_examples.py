"""Every example runs from the command line with tiny settings."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = {
    "standard_vae.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5", "--out", "{tmp}"],
    "custom_model_guide.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5"],
    "custom_prior_likelihood.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5"],
    "embeddings.py": ["--epochs", "1", "--limit", "300"],
    "anomaly_scores.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5"],
    "sklearn_pipeline.py": ["--max-steps", "20", "--folds", "2", "--num-samples", "5"],
    "imputation.py": ["--epochs", "1", "--limit", "200", "--num-samples", "5"],
    "figures_and_report.py": ["--epochs", "1", "--num-samples", "5", "--out", "{tmp}/run"],
    "swap_prior.py": ["--epochs", "1", "--limit", "200", "--num-samples", "5"],
    "swap_likelihood.py": ["--epochs", "1", "--limit", "200", "--num-samples", "5"],
    "conditional_vae.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5"],
    "semi_supervised_vae.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5"],
    "count_model.py": ["--epochs", "2", "--limit", "300", "--num-samples", "5"],
    "missing_data.py": ["--masks", "1", "--epochs", "2", "--limit", "120", "--num-samples", "20"],
    "marginal_likelihood.py": [
        "--epochs",
        "1",
        "--limit",
        "100",
        "--num-samples",
        "10",
        "--ais-images",
        "5",
    ],
    "smiles_vae.py": [
        "--epochs",
        "1",
        "--limit",
        "300",
        "--hidden",
        "32",
        "--num-samples",
        "5",
        "--samples",
        "50",
        "--heldout",
        "50",
    ],
    "text_vae.py": ["--epochs", "1", "--limit", "300", "--num-samples", "5", "--hidden", "32"],
}


#: What each example must print: the figure it exists to show.
EXPECTED = {
    "standard_vae.py": "log p(x)",
    "custom_model_guide.py": "log p(x)",
    "custom_prior_likelihood.py": "log p(x)",
    "embeddings.py": "held-out accuracy",
    "anomaly_scores.py": "complexity",
    "sklearn_pipeline.py": "IsolationForest    ROC AUC",
    "imputation.py": "mean squared error",
    "figures_and_report.py": "report.html",
    "swap_prior.py": "prior vamp",
    "swap_likelihood.py": "discretized-logistic",
    "marginal_likelihood.py": "AIS",
    "conditional_vae.py": "log p(x | y)",
    "semi_supervised_vae.py": "sum rule",
    "count_model.py": "log p(x | c)",
    "missing_data.py": "IterativeImputer",
    "smiles_vae.py": "validity",
    "text_vae.py": "perplexity",
}


def test_every_example_has_smoke_settings():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(TINY) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in TINY[name]]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXPECTED[name] in proc.stdout
