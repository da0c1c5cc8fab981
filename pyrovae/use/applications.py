"""Using a trained VAE: embeddings, generation paths, anomaly scores, imputation.

Each function takes a :class:`~pyrovae.VAE` (or, for anomaly scores, any model/guide
pair) and tensors, and returns tensors; the command line (``pyrovae encode``,
``score``, ``impute``, ``sample``, ``interpolate``) and the figures call these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pyrovae.data.batches import Batch, Indexable
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference import imputation
from pyrovae.inference.marginal import log_marginal_likelihood
from pyrovae.inference.passes import chunks
from pyrovae.parts.distributions import entry_log_prob, mean_of


@torch.no_grad()
def latent_means(
    vae,
    x: torch.Tensor,
    batch_size: int = 1000,
    draws: int = 32,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean of q(z|x) for each datapoint, shape ``(N, z_dim)``: an embedding.

    Families without a closed-form mean (a flow) are averaged over ``draws`` samples.
    ``y``: the labels, for a conditional VAE's q(z|x, y).
    """
    out = []
    for sl in chunks(x.shape[0], batch_size):
        q = vae.encode(x[sl], y[sl]) if y is not None else vae.encode(x[sl])
        out.append(mean_of(q, draws))
    return torch.cat(out)


@torch.no_grad()
def decode_mean(vae, z: torch.Tensor) -> torch.Tensor:
    """The mean of p(x|z) for each z."""
    return vae.decode(z).mean


@torch.no_grad()
def interpolate(vae, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decoder means along the straight line between the latent means of two inputs.

    Returns ``(steps, x_dim)``: the first row decodes x_a's embedding, the last x_b's.
    """
    if steps < 2:
        raise PyrovaeError("an interpolation needs at least 2 ", Param("steps"), f", got {steps}")
    z = latent_means(vae, torch.stack([x_a, x_b]))
    t = torch.linspace(0, 1, steps, device=z.device, dtype=z.dtype)[:, None]
    return decode_mean(vae, (1 - t) * z[0] + t * z[1])


@torch.no_grad()
def traversals(
    vae, x: torch.Tensor, dims: list[int], span: float = 3.0, steps: int = 9
) -> torch.Tensor:
    """Decoder means as one latent coordinate at a time moves through ``[-span, span]``.

    Starting from x's latent mean, coordinate d takes ``steps`` values; returns
    ``(len(dims), steps, x_dim)``.
    """
    z0 = latent_means(vae, x[None])[0]
    values = torch.linspace(-span, span, steps, device=z0.device, dtype=z0.dtype)
    rows = []
    for d in dims:
        z = z0.repeat(steps, 1)
        z[:, d] = values
        rows.append(decode_mean(vae, z))
    return torch.stack(rows)


def anomaly_scores(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1000, **kwargs: Any
) -> torch.Tensor:
    """-log p(x) for each datapoint (nats): the higher, the less like the training data.

    The ``nll`` score of :mod:`pyrovae.use.anomaly`; its
    :func:`~pyrovae.use.anomaly.anomaly_score` also gives the scores that do not rank
    simple inputs as likely (``complexity``, ``llr``, ``likelihood-ratio``). ``kwargs``
    go to :func:`~pyrovae.inference.marginal.log_marginal_likelihood`.
    """
    return -log_marginal_likelihood(
        model, guide, x, num_samples=num_samples, **kwargs
    ).per_datapoint


#: log p(x_d | z) for every pixel d (kept under its old name; see
#: :func:`pyrovae.parts.distributions.entry_log_prob`).
pixel_log_prob = entry_log_prob


@torch.no_grad()
def impute(
    vae,
    x: torch.Tensor,
    missing: torch.Tensor,
    num_samples: int = 1000,
    gibbs_steps: int = 0,
    batch_size: int = 100,
    fill: torch.Tensor | float = 0.5,
) -> torch.Tensor:
    """Fill the missing pixels of ``x`` with their mean under p(x_miss | x_obs).

    The model is conditioned on the observed pixels only: K draws z_k ~ q(z | x_filled),
    with the missing pixels first set to ``fill``, are weighted by
    p(x_obs | z_k) p(z_k) / q(z_k | x_filled), the importance weights of the posterior
    given the observed part alone, and the missing pixels become the weighted mean of
    E[x_miss | z_k] (:func:`pyrovae.inference.imputation.impute`, which the tables'
    imputation shares). Optional pseudo-Gibbs steps (Rezende et al., 2014: z at the
    guide's mean given the current fill, then the missing pixels at the decoder's mean)
    first move the fill towards one completion; on the bundled MNIST sample they made
    the guide overconfident about that completion and the error larger (0.066 with none,
    0.084 after 5, K=1000), so the default is 0.

    Parameters
    ----------
    vae
        A trained :class:`~pyrovae.models.vae.VAE` whose likelihood factorises over
        pixels (a hierarchical one too).
    x
        Datapoints ``(N, x_dim)``; the values at missing pixels are ignored.
    missing
        Boolean mask of the same shape, True where a pixel is missing.
    num_samples
        K, importance samples per datapoint.
    gibbs_steps
        Pseudo-Gibbs steps before the importance step.
    batch_size
        Datapoints per pass.
    fill
        Starting value of the missing pixels (a number, or per-pixel values such as the
        training mean).

    Returns
    -------
    torch.Tensor
        ``x`` with the missing pixels filled in.
    """
    if missing.shape != x.shape or missing.dtype != torch.bool:
        raise PyrovaeError(Param("missing"), " must be a boolean mask with the shape of x")
    filled = torch.where(missing, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)
    for _ in range(gibbs_steps):
        filled = torch.where(missing, decode_mean(vae, latent_means(vae, filled)), x)
    masked = Indexable(Batch((), {"x": filled, "mask": ~missing}))
    return imputation.impute(vae.model, vae.guide, masked, num_samples, None, batch_size)
