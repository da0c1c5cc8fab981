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
}


def test_every_example_has_smoke_settings():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(TINY)


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
    assert "log p(x)" in proc.stdout
