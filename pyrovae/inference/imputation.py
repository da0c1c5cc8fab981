"""Imputation: missing entries filled from the model, given the observed ones.

One implementation, two front ends. The data follow the masking convention
(:mod:`pyrovae.data.masks`): ``x`` with a fill value at the missing entries and a
boolean ``mask``, True where observed, so that the model scores the observed entries
only. With K draws z_k from the guide, self-normalised importance weights
w_k proportional to p(x_obs, z_k) / q(z_k | x_filled) weigh the model's completions:

    E[x_mis | x_obs] ~ sum_k w_k E[x_mis | z_k]                          (:func:`impute`)

and multiple imputation draws z_k by its weight, then x_mis ~ p(x_mis | z_k). Two front
ends: tables with NaN at the missing entries (zero-filled, as the model was trained), and
:func:`pyrovae.use.applications.impute` for images whose hidden pixels a boolean mask
names (filled with the training mean, masked, and given to :func:`impute`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from pyrovae.data.batches import Batch, Data
from pyrovae.data.masks import as_masked
from pyrovae.errors import PyrovaeError
from pyrovae.inference.logweights import log_weights_of
from pyrovae.inference.particles import Program
from pyrovae.inference.programs import evaluating
from pyrovae.inference.traces import traces


@torch.no_grad()
def impute(
    model: Callable,
    guide: Callable,
    data: Any,
    num_samples: int = 1000,
    multiple: int | None = None,
    batch_size: int = 100,
    site: str = "x",
    seed: int | None = None,
) -> torch.Tensor:
    """Fill the missing entries of ``data`` from the model; observed entries kept bit for bit.

    Parameters
    ----------
    model, guide
        A program following the masking convention (:mod:`pyrovae.data.masks`), such as
        ``vae.model`` and ``vae.guide`` of a :class:`~pyrovae.models.vae.VAE`: called
        with keyword arguments ``x`` and ``mask``, its site ``site`` observes x and
        scores the observed entries only. It must broadcast over a leading particle
        dimension.
    data
        A tensor ``(N, D)`` with NaN where an entry is missing, or data already masked
        (:func:`~pyrovae.data.masks.as_masked`: ``x`` with a fill value at the missing
        entries, which the guide sees, and ``mask`` True where observed).
    num_samples
        K, importance samples per datapoint.
    multiple
        None: the conditional mean E[x_mis | x_obs], shape ``(N, D)``. M: M draws from
        p(x_mis | x_obs) (multiple imputation), shape ``(M, N, D)``.
    batch_size
        Datapoints per pass.
    site
        The name of the model's sample site that observes x.
    seed
        Seeds the draws (None: the current random state).
    """
    if not isinstance(data, Data | torch.Tensor):
        data = torch.as_tensor(data, dtype=torch.get_default_dtype())
    if not isinstance(data, Data):
        data = as_masked(data)
    if seed is not None:
        torch.manual_seed(seed)
    with evaluating(model, guide):
        program = Program(model, guide, data, discrete="sample")
        filled = [
            _fill_batch(program, batch, num_samples, multiple, site)
            for batch in data.passes(batch_size)
        ]
    return torch.cat(filled, dim=-2)


def _fill_batch(
    program: Program, batch: Batch, k: int, multiple: int | None, site: str
) -> torch.Tensor:
    """One pass of :func:`impute`: K particles of the batch, weighed."""
    args, kwargs = program.call(batch)
    model_trace, guide_trace = traces(
        program.model,
        program.guide,
        *args,
        num_particles=k,
        plate_nesting=program.nesting,
        **kwargs,
    )
    if site not in model_trace.nodes:
        raise PyrovaeError(f"the model has no sample site {site!r} observing the data")
    lw = log_weights_of(model_trace, guide_trace, k, len(batch), plate=program.plate)
    px = model_trace.nodes[site]["fn"]
    x, mask = batch.first, batch.kwargs["mask"]
    if multiple is None:
        w = lw.log_weight.softmax(0)
        fill = (w[..., None] * px.mean.expand(k, *x.shape)).sum(0)
    else:
        picks = torch.multinomial(lw.log_weight.T.softmax(-1), multiple, replacement=True).T
        draws = px.sample().expand(k, *x.shape)
        fill = draws.gather(0, picks[..., None].expand(multiple, *x.shape))
    return torch.where(mask, x, fill)


def rmse(truth: torch.Tensor, filled: torch.Tensor, missing: torch.Tensor) -> float:
    """Root mean squared error over the entries that were missing."""
    diff = (truth - filled)[missing]
    return math.sqrt(float((diff**2).mean())) if diff.numel() else math.nan
