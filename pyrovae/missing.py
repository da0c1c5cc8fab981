"""Missing values: training on what is observed (MIWAE), and imputing what is not.

The masking convention, which pyrovae's :class:`~pyrovae.VAE` follows and a user's own
program can follow too: the data reach ``model`` and ``guide`` as ``x`` with the missing
entries set to zero and a boolean ``mask`` (True where an entry is observed), as
keyword arguments ``model(x=..., mask=...)``; the model scores only the observed
entries,

    log p(x_obs | z) = sum_d mask_d log p(x_d | z),

which :class:`ObservedEntries` does for every likelihood of the catalogue (each
factorises over entries). The ELBO and the IWAE bound of such a model are then the
MIWAE bounds of Mattei & Frellsen (2019), and :func:`log_marginal_likelihood` estimates
log p(x_obs).

:func:`impute` fills the missing entries by self-normalised importance sampling with
the guide as proposal: with z_k ~ q(z | x_filled) and w_k proportional to
p(x_obs, z_k) / q(z_k | x_filled),

    E[x_mis | x_obs] ~ sum_k w_k E[x_mis | z_k],

and multiple imputation draws z_k by its weight, then x_mis ~ p(x_mis | z_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape

from pyrovae.batches import Batch, as_data
from pyrovae.errors import PyrovaeError

#: How ``fit`` treats NaNs in the data: refuse them, or train on the observed entries.
MISSING = ("error", "mask")


def entry_log_prob(px: Any, x: torch.Tensor) -> torch.Tensor:
    """log p(x_d | z) for every entry d, for likelihoods that factorise over entries."""
    if hasattr(px, "pixel_log_prob"):
        return px.pixel_log_prob(x)
    if hasattr(px, "base_dist") and getattr(px, "reinterpreted_batch_ndims", 0) == 1:
        return px.base_dist.log_prob(x)
    raise PyrovaeError(
        f"missing values need a likelihood that factorises over entries; {type(px).__name__} "
        "does not say how"
    )


class ObservedEntries(TorchDistribution):
    """A likelihood over x that scores the observed entries only.

    Parameters
    ----------
    base
        The likelihood p(x | z), factorising over the last axis.
    mask
        True (or 1) where an entry is observed; broadcasts against the base's shape.
    """

    arg_constraints: dict = {}

    def __init__(self, base: Any, mask: torch.Tensor) -> None:
        self.base, self.mask = base, mask
        batch_shape = broadcast_shape(tuple(base.batch_shape), tuple(mask.shape[:-1]))
        super().__init__(torch.Size(batch_shape), base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (entry_log_prob(self.base, value) * self.mask).sum(-1)

    def sample(self, sample_shape: tuple = ()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    def expand(self, batch_shape, _instance=None):
        return ObservedEntries(self.base.expand(batch_shape), self.mask)


def split_missing(batch: Batch) -> Batch:
    """NaNs in the first tensor become zeros and a ``mask`` keyword (True: observed)."""
    x = batch.first
    mask = torch.isfinite(x)
    filled = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    out = batch.with_first(filled)
    if "mask" in out.kwargs:
        raise PyrovaeError("the data already have a 'mask' argument; missing='mask' adds one")
    return Batch(out.args, {**out.kwargs, "mask": mask})


def as_masked(data: Any, name: str = "data") -> Any:
    """Data with NaNs as a zero-filled first tensor and a mask, as the convention says.

    A lone tensor ``x`` becomes ``{"x": filled, "mask": mask}`` (so ``model(x=, mask=)``);
    a tuple or dict keeps its arguments and gains ``mask``. Rows with no observed entry
    are refused: they carry no information.
    """
    if isinstance(data, torch.Tensor):
        data = {"x": data}
    elif hasattr(data, "__array__") and not isinstance(data, tuple | dict):
        data = {"x": torch.as_tensor(data, dtype=torch.get_default_dtype())}
    loaded = as_data(data, name, allow_nan=True)
    loaded = loaded.map(split_missing)
    first = loaded.first_batch() if not hasattr(loaded, "batch") else loaded.batch
    mask = first.kwargs["mask"]
    if mask.dim() > 1:
        empty = ~mask.reshape(mask.shape[0], -1).any(-1)
        if bool(empty.any()):
            rows = empty.nonzero().flatten()[:5].tolist()
            raise PyrovaeError(
                f"{name}: {int(empty.sum())} rows are missing everywhere (rows {rows}...); "
                "drop them: they carry no information"
            )
    return loaded


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
    """Fill the missing entries (NaNs) of ``data`` from the model, observed entries kept.

    Parameters
    ----------
    model, guide
        A program following the masking convention (see the module docstring), such as
        ``vae.model`` and ``vae.guide`` of a :class:`~pyrovae.VAE`; it must broadcast
        over a leading particle dimension.
    data
        A tensor ``(N, D)`` with NaN where an entry is missing.
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

    Returns
    -------
    torch.Tensor
        ``data`` with every NaN replaced, observed entries unchanged bit for bit.
    """
    from pyrovae.marginal import Program, log_weights_of, traces
    from pyrovae.programs import evaluating

    if not isinstance(data, torch.Tensor):
        data = torch.as_tensor(data, dtype=torch.get_default_dtype())
    if seed is not None:
        torch.manual_seed(seed)
    masked = as_masked(data)
    out = []
    with evaluating(model, guide):
        program = Program(model, guide, masked, discrete="sample")
        for batch in masked.passes(batch_size):
            args, kwargs = program.call(batch)
            model_trace, guide_trace = traces(
                model,
                guide,
                *args,
                num_particles=num_samples,
                plate_nesting=program.nesting,
                **kwargs,
            )
            if site not in model_trace.nodes:
                raise PyrovaeError(f"the model has no sample site {site!r} observing the data")
            lw = log_weights_of(
                model_trace, guide_trace, num_samples, len(batch), plate=program.plate
            ).log_weight
            px = model_trace.nodes[site]["fn"]
            x, mask = batch.first, batch.kwargs["mask"]
            if multiple is None:
                w = lw.softmax(0)
                fill = (w[..., None] * px.mean.expand(num_samples, *x.shape)).sum(0)
            else:
                picks = torch.multinomial(lw.T.softmax(-1), multiple, replacement=True).T
                draws = px.sample().expand(num_samples, *x.shape)
                fill = draws.gather(0, picks[..., None].expand(multiple, *x.shape))
            out.append(torch.where(mask, x, fill))
    return torch.cat(out, dim=-2)


def rmse(truth: torch.Tensor, filled: torch.Tensor, missing: torch.Tensor) -> float:
    """Root mean squared error over the entries that were missing."""
    diff = (truth - filled)[missing]
    return math.sqrt(float((diff**2).mean())) if diff.numel() else math.nan
