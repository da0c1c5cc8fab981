"""The HTML report of a run: one self-contained file, figures embedded.

``report.html`` holds its figures as ``data:`` URIs and its style inline, so it opens
from disk in any browser with no server, no network and no other file. It shows the
run's configuration, the per-epoch curves, a table of metrics (the last epoch's, and
those of ``pyrovae evaluate`` when it has run), and the figures of :mod:`pyrovae.use.plots`.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pyrovae._version import __version__
from pyrovae.data.sequences import Vocabulary
from pyrovae.errors import PyrovaeError
from pyrovae.models.clusters import ClusterVAE
from pyrovae.models.vae import VAE
from pyrovae.rundir.config import HISTORY
from pyrovae.rundir.files import atomic_write
from pyrovae.rundir.folder import load_run
from pyrovae.use import plots
from pyrovae.use.molecules import draw_grid
from pyrovae.use.sequences import reconstructions, sample_sequences

REPORT = "report.html"
METRICS = "metrics.json"
LOG_PX = "log_px.npy"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
"""


def figure_to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _image_uri(figure: Figure | bytes) -> str:
    """A figure, or a PNG image given as bytes (RDKit's drawings), as a data URI."""
    if isinstance(figure, bytes):
        return "data:image/png;base64," + base64.b64encode(figure).decode("ascii")
    return figure_to_data_uri(figure)


def render(
    title: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    figures: dict[str, Figure | bytes],
    texts: dict[str, dict[str, str]] | None = None,
) -> str:
    """The report as an HTML string (pure: no files read or written).

    ``figures`` are matplotlib figures or PNG bytes; ``texts`` are tables of strings
    (a sequence run's samples and reconstructions), each under its caption.
    """
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>pyrovae {html.escape(__version__)}; ELBO and log-likelihoods are in nats "
        "per datapoint.</p>",
        "<h2>Metrics</h2>",
        _table(metrics) if metrics else "<p>No metrics yet.</p>",
        "<h2>Configuration</h2>",
    ]
    for part, settings in config.items():
        if isinstance(settings, dict):
            sections += [f"<h3>{html.escape(part)}</h3>", _table(settings)]
        else:
            sections.append(_table({part: settings}))
    for caption, rows in (texts or {}).items():
        sections += [f"<h2>{html.escape(caption)}</h2>", _table(rows)]
    sections.append("<h2>Figures</h2>")
    for caption, fig in figures.items():
        uri = _image_uri(fig)
        sections.append(
            f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _metrics(run_dir: Path, history: dict) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for key, values in history.items():
        if values and key != "epoch":
            metrics[f"last epoch: {key}"] = values[-1]
    if history.get("epoch"):
        metrics["epochs"] = history["epoch"][-1]
    path = run_dir / METRICS
    if path.exists():
        evaluated = json.loads(path.read_text())
        per_unit = ("kl_per_dim", "posterior_mean_variance")  # drawn as a figure instead
        metrics.update({f"evaluate: {k}": v for k, v in evaluated.items() if k not in per_unit})
    return metrics


@torch.no_grad()
def write_report(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    data_dir: str | None = None,
    num_images: int = 16,
    num_scatter: int = 2000,
) -> Path:
    """Write ``RUN_DIR/report.html`` for a run folder and return its path.

    Every run gets its curves and evaluation figures; a pyrovae VAE also gets the
    figures of its encoder and decoder (a user's model has no known encoder).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, data_dir=data_dir, device=device)
    history, evaluated = _read(run_dir / HISTORY), _read(run_dir / METRICS)
    figures: dict[str, Figure | bytes] = {}
    texts: dict[str, dict[str, str]] = {}
    if history.get("epoch"):
        figures["training curves: ELBO, reconstruction and KL terms per epoch"] = (
            plots.training_curves(history)
        )
    vocabulary = run.config["data"].get("vocabulary")
    if isinstance(run.vae, VAE) and vocabulary is not None:
        texts, drawn = _sequence_sections(run, Vocabulary.from_config(vocabulary), num_images)
        figures.update(drawn)
    elif isinstance(run.vae, VAE):
        figures.update(_vae_figures(run, num_images, num_scatter))
    figures.update(_evaluation_figures(run_dir, evaluated))
    metrics = _metrics(run_dir, history)
    page = render(f"pyrovae run {run_dir.name}", run.config, metrics, figures, texts)
    path = run_dir / REPORT
    atomic_write(path, lambda f: f.write(page), mode="w")
    return path


def _read(path: Path) -> dict:
    """A run's JSON file, or nothing before it is written."""
    return json.loads(path.read_text()) if path.exists() else {}


def _vae_figures(run: Any, num_images: int, num_scatter: int) -> dict[str, Figure]:
    """What a pyrovae VAE shows of its held-out data: reconstructions, samples, the latent."""
    vae, (x, mask, y) = run.vae, _parts(run.heldout)
    figures: dict[str, Figure] = {}
    if vae.image_shape is None:
        figures["reconstruction error per column of the held-out data"] = plots.column_errors(
            vae, x, mask
        )
    else:
        figures.update(_image_figures(vae, x, y, num_images, num_scatter))
    labels = run.data.test_labels if run.data is not None else None
    figures["latent space of the held-out data"] = plots.latent_scatter(
        vae, x[:num_scatter], labels[:num_scatter] if labels is not None else None
    )
    return figures


def _sequence_sections(
    run: Any, vocabulary: Vocabulary, num: int
) -> tuple[dict[str, dict[str, str]], dict[str, bytes]]:
    """A sequence run's samples and greedy reconstructions as text; for a SMILES run,
    a drawing of molecules sampled from the prior (when RDKit is installed)."""
    torch.manual_seed(0)
    samples = sample_sequences(run.vae, 4 * num, vocabulary)
    x = _parts(run.heldout)[0][:num]
    rebuilt = vocabulary.decode(reconstructions(run.vae, x))
    texts = {
        "samples from the prior": {str(i): t for i, t in enumerate(samples[:num])},
        "held-out inputs and their greedy reconstructions": dict(
            zip(vocabulary.decode(x), rebuilt, strict=True)
        ),
    }
    if not vocabulary.molecules or importlib.util.find_spec("rdkit") is None:
        return texts, {}
    buffer = io.BytesIO()
    try:
        draw_grid(samples, buffer, per_row=8, size=200)
    except PyrovaeError:  # no valid molecule among the samples: the table says so
        return texts, {}
    return texts, {"molecules sampled from the prior (valid ones drawn)": buffer.getvalue()}


def _parts(heldout: Any) -> tuple[torch.Tensor, Any, Any]:
    """The held-out images, their mask of observed entries and their labels, if any."""
    if isinstance(heldout, dict):  # missing entries, or labels
        return heldout["x"], heldout.get("mask"), heldout.get("y")
    if isinstance(heldout, tuple):
        return heldout[0], None, heldout[1] if len(heldout) > 1 else None
    return heldout, None, None


def _image_figures(vae: VAE, x, y, num_images: int, num_scatter: int) -> dict[str, Figure]:
    """Reconstructions, samples (by class or cluster where there are some), latent paths."""
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(x.shape[0], generator=gen)[:num_images].to(x.device)
    shown = x[pick]
    figures = {
        "held-out inputs and their reconstructions": plots.reconstructions(
            vae, shown, y[pick] if y is not None else None
        )
    }
    if vae.num_classes is None:
        figures["samples from the prior"] = plots.prior_samples(vae, 64)
        figures["interpolations between held-out inputs"] = plots.interpolation(vae, shown)
        figures["latent traversals"] = plots.latent_traversals(vae, x[:num_scatter])
    else:  # conditional or M2: samples by class; paths in z hold y fixed, not shown
        figures["samples from the prior, one class per column"] = plots.prior_samples(
            vae, 8 * vae.num_classes
        )
    if isinstance(vae, ClusterVAE):
        figures["samples per cluster, one cluster per column"] = plots.cluster_samples(vae)
    return figures


def _evaluation_figures(run_dir: Path, evaluated: dict) -> dict[str, Figure]:
    """What ``pyrovae evaluate`` measured: log p(x) per datapoint, KL and activity per unit."""
    figures: dict[str, Figure] = {}
    if (run_dir / LOG_PX).exists():
        figures["held-out log p(x) (from pyrovae evaluate)"] = plots.log_px_histogram(
            np.load(run_dir / LOG_PX)
        )
    if evaluated.get("posterior_mean_variance"):
        figures["posterior collapse: KL and activity per latent unit (from pyrovae evaluate)"] = (
            plots.latent_units(
                evaluated["kl_per_dim"],
                evaluated["posterior_mean_variance"],
                evaluated.get("active_threshold", 0.01),
            )
        )
    return figures
