"""Per-particle, per-datapoint log weights, read from a model trace and a guide trace.

For any model/guide pair whose per-datapoint sites lie under one plate over the B
datapoints of a minibatch, one pass with K particles (:func:`~pyrovae.inference.traces.traces`)
gives, for every particle k and datapoint i,

    log w_ki = log p(x_i | z_ki) + log p(z_ki) - log q(z_ki | x_i),   z_ki ~ q(. | x_i)

computed from the traces' *unsummed* ``log_prob`` of each site, reduced over every
dimension but the particle and data dimensions (:func:`reduce_to_chains`). Pyro's
``Importance`` and ``vectorized_importance_weights`` sum over the data plate and so give
one weight for the whole batch, which is not what log p(x_i) needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask

from pyrovae.data.batches import Batch
from pyrovae.errors import PyrovaeError
from pyrovae.inference.sites import (
    DATA_PLATE,
    PARTICLE_PLATE,
    data_frame,
    plate_dim,
    sample_sites,
    subsample_scale,
)
from pyrovae.inference.traces import traces


@dataclass
class LogWeights:
    """Per-particle, per-datapoint log densities, each of shape ``(K, B)``.

    Attributes
    ----------
    log_likelihood
        Sum over observed model sites: log p(x_i | z_ki) (a ``pyro.factor`` in the model
        counts here, as do discrete sites pinned by enumeration).
    log_prior
        Sum over latent model sites: log p(z_ki).
    log_guide
        Sum over unobserved guide sites: log q(z_ki | x_i). Observed guide sites (a
        ``pyro.factor`` there is an auxiliary loss) are left out.
    data_scale
        ``full_size / size`` of a subsampled data plate (1 when not subsampled): how much
        one minibatch stands for.
    reparameterized
        Whether every guide site was drawn with ``rsample``, so that gradients of the log
        weights with respect to the guide's parameters are pathwise.
    log_pinned
        Sum over guide sites pinned to one value by enumeration: log q(y_i | ...), used
        for the enumerated ELBO (zero when nothing is pinned).
    """

    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_guide: torch.Tensor
    data_scale: float = 1.0
    reparameterized: bool = True
    log_pinned: torch.Tensor | float = 0.0

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x_i, z_ki) - log q(z_ki | x_i)."""
        return self.log_likelihood + self.log_prior - self.log_guide

    @property
    def kl(self) -> torch.Tensor:
        """Monte Carlo estimate of KL(q(z|x_i) || p(z)), one value per particle."""
        return self.log_guide - self.log_prior

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> LogWeights:
        """The same weights with ``fn`` applied to each ``(K, B)`` tensor."""
        pinned = self.log_pinned
        return LogWeights(
            fn(self.log_likelihood),
            fn(self.log_prior),
            fn(self.log_guide),
            self.data_scale,
            self.reparameterized,
            fn(pinned) if isinstance(pinned, torch.Tensor) else pinned,
        )


def latent_scale(site: dict, plate: str = DATA_PLATE) -> float | torch.Tensor:
    """A site's scale without the data plate's subsampling part: its KL weight, say."""
    return site["scale"] / subsample_scale(data_frame(site, plate))


def per_datapoint_log_prob(
    site: dict, num_particles: int, batch: int, scaled: bool = False, plate: str = DATA_PLATE
) -> torch.Tensor:
    """The log-density of one site, reduced to shape ``(K, B)``.

    Unscaled by default (a pure density). With ``scaled`` the site's scale is applied,
    except the part that comes from subsampling the data plate, which belongs outside
    any per-datapoint nonlinearity (see :class:`LogWeights`).
    """
    lp = site["fn"].log_prob(site["value"])
    scale = latent_scale(site, plate) if scaled else 1.0
    lp = scale_and_mask(lp, scale=scale, mask=site["mask"])
    return reduce_to_chains(lp, site, num_particles, batch, plate)


def reduce_to_chains(
    lp: torch.Tensor, site: dict, num_particles: int, batch: int, plate: str = DATA_PLATE
) -> torch.Tensor:
    """Sum a tensor with a site's batch shape over all but the particle and data dims."""
    data_dim = data_frame(site, plate).dim
    particle_dim = plate_dim(site, PARTICLE_PLATE)
    keep = [data_dim] + ([particle_dim] if particle_dim is not None else [])
    ndim = max([lp.dim()] + [-d for d in keep])
    lp = lp.reshape((1,) * (ndim - lp.dim()) + tuple(lp.shape))
    other = [d for d in range(ndim) if d - ndim not in keep]
    if other:
        lp = lp.sum(other, keepdim=True)
    k = lp.shape[particle_dim] if particle_dim is not None else 1
    if lp.shape[data_dim] not in (1, batch) or k not in (1, num_particles):
        raise PyrovaeError(
            f"site {site['name']!r} has batch shape {tuple(lp.shape)}, which does not "
            f"hold {num_particles} particles of {batch} datapoints"
        )
    # The particle plate sits left of the data plate, so a reshape keeps the order.
    return lp.reshape(k, lp.shape[data_dim]).expand(num_particles, batch)


def log_weights_of(
    model_trace,
    guide_trace,
    num_particles: int,
    batch: int | torch.Tensor,
    scaled: bool = False,
    plate: str = DATA_PLATE,
) -> LogWeights:
    """Reduce a model and a guide trace to per-particle, per-datapoint log densities.

    ``batch`` is the number of datapoints (or a tensor whose first axis counts them).
    """
    size = batch if isinstance(batch, int) else batch.shape[0]
    terms: dict[str, Any] = {"obs": 0.0, "latent": 0.0, "guide": 0.0, "pinned": 0.0}
    data_scale = 1.0
    reparameterized = True
    roles = (
        (model_trace, True, "obs"),
        (model_trace, False, "latent"),
        (guide_trace, False, "guide"),
    )
    for trace, observed, key in roles:
        for site in sample_sites(trace, observed):
            if key == "guide":
                reparameterized = reparameterized and bool(site["fn"].has_rsample)
            data_scale = subsample_scale(data_frame(site, plate))
            lp = per_datapoint_log_prob(site, num_particles, size, scaled, plate)
            terms[key] = terms[key] + lp
    for site in sample_sites(guide_trace, observed=True):
        if site["infer"].get("_pinned"):
            terms["pinned"] = terms["pinned"] + per_datapoint_log_prob(
                site, num_particles, size, False, plate
            )
    ref = next((t for t in terms.values() if isinstance(t, torch.Tensor)), None)
    shape = (num_particles, size)

    def full(t: Any) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            return t.expand(shape)
        return torch.zeros(shape, device=ref.device if ref is not None else None)

    return LogWeights(
        full(terms["obs"]),
        full(terms["latent"]),
        full(terms["guide"]),
        data_scale=data_scale,
        reparameterized=reparameterized,
        log_pinned=full(terms["pinned"]),
    )


def trace_log_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    plate_nesting: int | None = None,
    scaled: bool = False,
    plate: str = DATA_PLATE,
    **kwargs: Any,
) -> LogWeights:
    """Run the guide and the model against it, K particles at once, for one minibatch.

    Parameters
    ----------
    model, guide
        Pyro programs called as ``model(*args, **kwargs)``; the first tensor argument
        counts the datapoints.
    num_particles
        K, the number of draws from the guide per datapoint. With K > 1 the model and
        guide run under an extra ``pyro.plate("particles", K)`` left of their own
        plates, so they must broadcast over a leading batch dimension, as
        ``Trace_ELBO(vectorize_particles=True)`` also requires
        (:class:`~pyrovae.inference.particles.Program` replicates the datapoints
        instead for programs that do not).
    plate_nesting
        Depth of the program's plates (found by tracing once if not given).
    scaled
        Apply the sites' scales (from ``poutine.scale``, used for KL weighting) inside
        the log weights; the data plate's subsampling scale is reported separately as
        ``data_scale``.
    plate
        The name of the per-datapoint plate.
    """
    model_trace, guide_trace = traces(
        model, guide, *args, num_particles=num_particles, plate_nesting=plate_nesting, **kwargs
    )
    size = len(Batch(args, kwargs))
    return log_weights_of(model_trace, guide_trace, num_particles, size, scaled, plate)
