"""Training objectives by name, and KL weighting.

``LOSSES`` maps a name to a constructor
``f(num_particles=1, free_bits=0.0, free_bits_per_unit=False) -> ELBO``:
``trace`` (:class:`~pyrovae.inference.trace_elbo.Trace_ELBO`), ``meanfield`` (Pyro's
``TraceMeanField_ELBO``: analytic KL where torch knows it) and ``iwae``
(:class:`~pyrovae.inference.iwae.IWAE_ELBO`); with free bits, the first two become
:class:`~pyrovae.inference.iwae.FreeBits_ELBO`. Any Pyro ELBO instance can be handed to
:func:`pyrovae.fit` directly; the registry is what the command line and the comparison
scripts use. Each objective lives in its own module over the traces of
:mod:`pyrovae.inference.traces`.

KL weighting (``beta``, linear KL warm-up) is applied by :class:`LatentScale`, a Pyro
messenger that multiplies the log-density of every latent site, in the model and in the
guide, by one number; with any of the ELBOs above that scales exactly the KL term
E_q[log q(z|x) - log p(z)] and leaves the reconstruction term alone.
"""

from __future__ import annotations

from collections.abc import Callable

from pyro.infer import ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.iwae import IWAE_ELBO, FreeBits_ELBO
from pyrovae.inference.trace_elbo import Trace_ELBO


class LatentScale(Messenger):
    """Multiply the log-density of every latent (unobserved) sample site by ``scale``.

    Wrapping both the model and the guide, ``LatentScale(beta)`` turns the ELBO
    E[log p(x|z)] - KL into E[log p(x|z)] - beta * KL. ``scale`` is a plain attribute,
    so a training loop can change it between steps (KL warm-up).
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.scale


def _particles(num_particles: int) -> dict:
    if num_particles < 1:
        raise PyrovaeError(Param("num_particles"), f" must be at least 1, got {num_particles}")
    return {"num_particles": num_particles, "vectorize_particles": num_particles > 1}


def _refuse_unused_per_unit(free_bits: float, free_bits_per_unit: bool) -> None:
    if free_bits_per_unit and not free_bits:
        raise PyrovaeError(
            Param("free_bits_per_unit", True),
            " shares out free bits, but ",
            Param("free_bits"),
            " is 0; set a number of nats",
        )


def trace(
    num_particles: int = 1, free_bits: float = 0.0, free_bits_per_unit: bool = False
) -> ELBO:
    """:class:`Trace_ELBO`: the Monte Carlo ELBO with reparameterised gradients.

    With ``free_bits`` > 0, :class:`FreeBits_ELBO` with Monte Carlo KL terms, clamped per
    latent site or, with ``free_bits_per_unit``, per unit.
    """
    _refuse_unused_per_unit(free_bits, free_bits_per_unit)
    if free_bits:
        k = _particles(num_particles)["num_particles"]
        return FreeBits_ELBO(free_bits, k, per_unit=free_bits_per_unit)
    return Trace_ELBO(**_particles(num_particles))


def meanfield(
    num_particles: int = 1, free_bits: float = 0.0, free_bits_per_unit: bool = False
) -> ELBO:
    """``TraceMeanField_ELBO``: analytic KL(q || p) where Pyro knows it, Monte Carlo else.

    With ``free_bits`` > 0, :class:`FreeBits_ELBO` with analytic KL terms where known.
    """
    _refuse_unused_per_unit(free_bits, free_bits_per_unit)
    if free_bits:
        k = _particles(num_particles)["num_particles"]
        return FreeBits_ELBO(free_bits, k, analytic_kl=True, per_unit=free_bits_per_unit)
    return TraceMeanField_ELBO(**_particles(num_particles))


def iwae(num_particles: int = 5, free_bits: float = 0.0, free_bits_per_unit: bool = False) -> ELBO:
    """:class:`IWAE_ELBO`: the importance-weighted bound L_K, K = ``num_particles``."""
    _particles(num_particles)
    if free_bits or free_bits_per_unit:
        raise PyrovaeError(
            "free bits clamp the ELBO's KL term, which the iwae bound does not have; use ",
            Param("loss", "trace"),
            " or 'meanfield' with ",
            Param("free_bits"),
        )
    return IWAE_ELBO(num_particles=num_particles)


LOSSES: dict[str, Callable[..., ELBO]] = {"trace": trace, "meanfield": meanfield, "iwae": iwae}


def get_loss(
    name: str,
    num_particles: int | None = None,
    free_bits: float = 0.0,
    free_bits_per_unit: bool = False,
) -> ELBO:
    """The ELBO called ``name`` (a key of ``LOSSES``).

    ``num_particles=None`` takes the objective's own default (1 for the ELBOs, 5 for
    ``iwae``). ``free_bits_per_unit`` shares ``free_bits`` out over each latent site's
    units (see :class:`FreeBits_ELBO`).
    """
    if not free_bits >= 0:
        raise PyrovaeError(Param("free_bits"), f" must be >= 0 nats, got {free_bits}")
    particles = {} if num_particles is None else {"num_particles": num_particles}
    constructor = lookup(LOSSES, name, "loss")
    return constructor(free_bits=free_bits, free_bits_per_unit=free_bits_per_unit, **particles)
