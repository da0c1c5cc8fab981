"""``Trace_ELBO``: Pyro's Monte Carlo ELBO, with a lean path for reparameterised programs.

Also the one place an objective learns how deep a program's plates go
(:func:`program_nesting`), kept on the ELBO as Pyro keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.util import check_model_guide_match

from pyrovae.inference.sites import sample_sites
from pyrovae.inference.traces import max_plate_nesting, traces


def program_nesting(
    elbo: ELBO, model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> int:
    """How deep the program's own plates go, found once by a probe and kept on ``elbo``.

    ``elbo.max_plate_nesting`` is kept as Pyro keeps it: one more than the program's
    plates when the ELBO vectorises its particles. The probe leaves the caller's random
    stream and the modules' BatchNorm statistics as they were (Pyro's own guess draws
    from the stream).
    """
    extra = 1 if getattr(elbo, "vectorize_particles", False) and elbo.num_particles > 1 else 0
    if elbo.max_plate_nesting == float("inf"):
        elbo.max_plate_nesting = max_plate_nesting(model, guide, *args, **kwargs) + extra
    return int(elbo.max_plate_nesting) - extra


def _reparameterized(guide_trace) -> bool:
    """Whether every latent site of the guide is drawn with ``rsample``."""
    return all(site["fn"].has_rsample for site in sample_sites(guide_trace, observed=False))


def _log_prob_sum(trace) -> torch.Tensor:
    """Sum of the scaled, masked log-densities of the trace's sample sites (Pyro's sum)."""
    terms = [
        scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"]).sum()
        for site in sample_sites(trace)
    ]
    return sum(terms[1:], terms[0]) if terms else torch.zeros(())


class Trace_ELBO(pyro.infer.Trace_ELBO):  # noqa: N801 - Pyro's name
    """Pyro's ``Trace_ELBO``, with a lean path for reparameterised programs.

    When every latent site of the guide is drawn with ``rsample`` (as in a VAE), the
    ELBO needs no score-function terms, and :meth:`differentiable_loss` computes Pyro's
    estimator directly: the scaled, masked log-densities of the model's sample sites
    minus the guide's, summed, over the number of particles. Pyro's per-site ``.item()``
    calls (one host sync each), NaN warnings and surrogate bookkeeping are left out; the
    tests check that both give the same loss and gradients. Any other program goes
    through Pyro's own implementation unchanged (and is remembered, so that it is not
    traced twice on later steps). With Pyro's validation enabled, the model and guide
    are checked against each other on the first call.
    """

    _checked = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The (model, guide) pairs found unfit for the lean path: Pyro's own from then on.
        self._pyro_only: set[tuple[Callable, Callable]] = set()

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        pair = (model, guide)
        if pair in self._pyro_only or (self.num_particles > 1 and not self.vectorize_particles):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        nesting = (
            program_nesting(self, model, guide, args, kwargs) if self.num_particles > 1 else 0
        )
        model_trace, guide_trace = traces(
            model, guide, *args, num_particles=self.num_particles, plate_nesting=nesting, **kwargs
        )
        if not _reparameterized(guide_trace):  # remembered: not traced twice again
            self._pyro_only.add(pair)
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if is_validation_enabled() and not self._checked:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            self._checked = True
        loss = _log_prob_sum(guide_trace) - _log_prob_sum(model_trace)
        return loss / self.num_particles if self.num_particles > 1 else loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach())
