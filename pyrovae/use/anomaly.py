"""Anomaly scores of a trained model: one registry, higher means more anomalous.

Every score is a function of a trained model/guide pair and the data, giving one value
per datapoint, shape ``(N,)``, in nats, the higher the less like the training data:

* ``nll``: -log p(x), by importance sampling with K draws from q(z|x);
* ``elbo``: -ELBO(x) = -E_q[log p(x, z) - log q(z|x)], K draws averaged;
* ``reconstruction``: -E_q[log p(x|z)] (An & Cho, 2015), K draws averaged;
* ``complexity``: -log p(x) - L(x), L(x) the length of x compressed as PNG (Serrà et
  al., 2020); images only;
* ``llr``: L(x) - L_{>k}(x), the bound with the k bottom latent layers drawn from the
  model's prior (Havtorn et al., 2021); models with two latent layers or more;
* ``likelihood-ratio``: -log p(x) + log p0(x), p0 a background model trained on
  perturbed inputs (Ren et al., 2019); needs the background model.

:data:`SCORES` holds them, each an :class:`AnomalyScore` that says what it needs, so
that :func:`anomaly_score` (and the command line, ``pyrovae score --method``) refuses
in one line a score that does not apply. Data with missing entries (NaN, or the
masking convention of :mod:`pyrovae.data.masks`) are scored on their observed entries
by every score but ``complexity``, which compresses whole images and refuses them. The
scores are explained, with when to use which, in ``docs/howto/anomaly_detection.md``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from pyro import poutine

from pyrovae._util import lookup
from pyrovae.data.batches import Batch, Data, Indexable, as_data
from pyrovae.data.masks import as_masked
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.logweights import log_weights_of, per_datapoint_log_prob
from pyrovae.inference.marginal import check_counts, estimate, log_marginal_likelihood
from pyrovae.inference.particles import Program
from pyrovae.inference.passes import Passes, chunks
from pyrovae.inference.rng import rng_state, set_rng_state
from pyrovae.inference.sites import sample_sites
from pyrovae.inference.traces import probe, traces, vectorize
from pyrovae.models.protocol import contract_of

#: Bytes of a PNG file around its compressed pixels: the 8-byte signature, the IHDR
#: chunk (25 bytes) and the IEND chunk (12), plus 12 bytes of framing per IDAT chunk.
#: :func:`png_length` counts the IDAT chunks' contents only.
PNG_CONTAINER_BYTES = 8 + 25 + 12


@dataclass(frozen=True)
class ScoreInputs:
    """What every score is computed from.

    Attributes
    ----------
    model, guide
        The trained Pyro programs.
    data
        The datapoints as the programs take them; data with missing entries follow the
        masking convention (``x`` zero-filled, ``mask`` True where observed).
    num_samples
        K: importance samples per datapoint (or draws averaged, for ``elbo`` and
        ``reconstruction``).
    batch_size
        Datapoints per pass.
    image_shape
        ``(channels, height, width)`` of one input, or None when the data are no images.
    layers
        The latent sites, the one next to x first (empty unless the score needs them).
    background
        The background model's ``(model, guide)``, or None.
    """

    model: Callable
    guide: Callable
    data: Data
    num_samples: int = 1000
    batch_size: int = 100
    image_shape: tuple[int, ...] | None = None
    layers: tuple[str, ...] = ()
    background: tuple[Callable, Callable] | None = None


@dataclass(frozen=True)
class AnomalyScore:
    """An entry of :data:`SCORES`: the function, what it is, and what it needs.

    Attributes
    ----------
    fn
        ``fn(inputs, **options)``: the scores, shape ``(N,)``, in nats.
    description
        One line, for the command line's help.
    needs_image
        The inputs must be images with values in [0, 1] (an ``image_shape``).
    needs_layers
        The model must have at least two latent sites (a hierarchical VAE).
    needs_background
        A background model must be given.
    observed_only
        Data with missing entries are scored on their observed entries; False: they
        are refused.
    options
        The keyword options ``fn`` takes beyond the inputs.
    """

    fn: Callable[..., torch.Tensor]
    description: str
    needs_image: bool = False
    needs_layers: bool = False
    needs_background: bool = False
    observed_only: bool = True
    options: tuple[str, ...] = ()


def nll(s: ScoreInputs) -> torch.Tensor:
    """-log p(x) by importance sampling with the guide as proposal.

    -log p(x) ~ -log (1/K) sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)

    (:func:`~pyrovae.inference.marginal.log_marginal_likelihood`): the score of any
    density model, but one that ranks inputs by how easy they are to encode as much as
    by how unusual they are (Nalisnick et al., 2019): a blank or simple image gets a
    high p(x) under a model of any images.
    """
    result = log_marginal_likelihood(
        s.model, s.guide, s.data, num_samples=s.num_samples, batch_size=s.batch_size
    )
    return -result.per_datapoint


@torch.no_grad()
def _averaged_terms(s: ScoreInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The ELBO and E_q log p(x|z) of each datapoint, averaged over K draws z_k ~ q(z|x).

    Discrete latent sites are drawn too, not summed out.
    """

    def run(program: Program, chunk: int) -> Callable[[Batch], tuple[torch.Tensor, ...]]:
        def one_pass(batch: Batch) -> tuple[torch.Tensor, ...]:
            elbo: Any = 0.0
            log_likelihood: Any = 0.0
            for ks in chunks(s.num_samples, chunk):
                weights = program.log_weights(batch, ks.stop - ks.start, None)
                elbo = elbo + weights.log_weight.sum(0)
                log_likelihood = log_likelihood + weights.log_likelihood.sum(0)
            return elbo / s.num_samples, log_likelihood / s.num_samples

        return one_pass

    passes = Passes(s.batch_size)
    (elbo, log_likelihood), _ = estimate(
        s.model, s.guide, s.data, ((), {}), passes, run, discrete="sample"
    )
    return elbo, log_likelihood


def elbo(s: ScoreInputs) -> torch.Tensor:
    """-ELBO(x) = -(1/K) sum_k [log p(x, z_k) - log q(z_k | x)],  z_k ~ q(z | x).

    An upper bound on -log p(x) (in expectation), cheaper to make precise than ``nll``:
    the average of K draws converges at the rate 1/sqrt(K) whatever the guide.
    """
    return -_averaged_terms(s)[0]


def reconstruction(s: ScoreInputs) -> torch.Tensor:
    """An & Cho's (2015) reconstruction probability, as a negative log-likelihood.

    -(1/L) sum_l log p(x | z_l),  z_l ~ q(z | x)  (L = K draws)

    The ELBO without its KL term: how well the decoder reproduces x from its own code,
    however unusual that code is under the prior.
    """
    return -_averaged_terms(s)[1]


def png_length(image: np.ndarray) -> int:
    """Bytes of the compressed pixels of one 8-bit image saved as PNG by Pillow.

    ``image``: ``uint8`` of shape ``(height, width)`` (grey), or ``(height, width, 3)``
    or ``(..., 4)`` (RGB, RGBA). Saved at the highest compression level (9); the
    length is that of the IDAT chunks' contents (the zlib stream of the filtered
    pixels), without the PNG container (:data:`PNG_CONTAINER_BYTES` and 12 bytes per
    IDAT chunk), which is the same for every image of one size.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=9)
    png = buffer.getvalue()
    total, at = 0, 8  # after the signature, chunks: length, type, data, CRC
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        if png[at + 4 : at + 8] == b"IDAT":
            total += length
        at += 12 + length
    return total


def _as_images(x: torch.Tensor, image_shape: tuple[int, ...]) -> np.ndarray:
    """Inputs in [0, 1] as 8-bit images for Pillow: ``(N, H, W)`` or ``(N, H, W, C)``."""
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != 3 or shape[0] not in (1, 3, 4) or math.prod(shape) != x[0].numel():
        raise PyrovaeError(
            "the complexity score encodes each input as a grey, RGB or RGBA image, "
            f"(channels, height, width); an image shape {shape} does not fit inputs "
            f"of {x[0].numel()} values"
        )
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise PyrovaeError(
            "the complexity score encodes inputs in [0, 1] as 8-bit images; these range "
            f"over [{low:.3g}, {high:.3g}]"
        )
    pixels = (x.detach().double() * 255).round().to(torch.uint8).cpu()
    pixels = pixels.reshape(-1, *shape).permute(0, 2, 3, 1).numpy()
    return pixels[..., 0] if shape[0] == 1 else pixels


def compressed_length(x: torch.Tensor, image_shape: tuple[int, ...]) -> torch.Tensor:
    """L(x): each input's PNG length (:func:`png_length`) in nats, bytes * 8 * ln 2."""
    images = _as_images(x, image_shape)
    lengths = [png_length(image) for image in images]
    return torch.tensor(lengths, dtype=x.dtype, device=x.device) * (8 * math.log(2))


def complexity(s: ScoreInputs) -> torch.Tensor:
    """Serrà et al.'s (2020) score corrected for input complexity.

    S(x) = -log p(x) - L(x)

    with L(x) the length of x compressed by a real lossless compressor, in nats: here
    PNG at maximum compression of the 8-bit image round(255 x)
    (:func:`compressed_length`). L(x) measures how simple x is for a generic image
    model; subtracting it leaves how much worse the trained model does than that, which
    no longer rewards simple inputs. Leaving out the PNG container shifts every score
    of one image size alike, and so changes no ranking.
    """
    x = torch.cat([batch.first for batch in s.data.passes(s.batch_size)])
    length = compressed_length(x, s.image_shape)  # first: refuses inputs outside [0, 1]
    return nll(s) - length


def _prior_below(program: Program, hidden: tuple[str, ...]) -> Callable[[Batch, int], Any]:
    """``run(batch, k)``: ``(K, B)`` log weights with the ``hidden`` sites drawn from p.

    The guide runs with the ``hidden`` sites blocked, so they are left out of its
    trace; the model, replayed against that trace, draws them from its own
    conditional prior. Their log-density then cancels against the proposal's, and
    log w = log p(x | z) + log p(z_visible) - log q(z_visible | x).
    """

    def run(batch: Batch, k: int) -> torch.Tensor:
        args, kwargs = program.call(batch)
        model = vectorize(program.model, k, program.nesting)
        # The block inside the particle plate: the hidden sites still get K draws.
        guide = poutine.block(vectorize(program.guide, k, program.nesting), hide=list(hidden))
        model_trace, guide_trace = traces(model, guide, *args, **kwargs)
        size = len(batch)
        weights = log_weights_of(model_trace, guide_trace, k, size, plate=program.plate)
        drawn = [
            per_datapoint_log_prob(model_trace.nodes[name], k, size, plate=program.plate)
            for name in hidden
        ]
        return weights.log_weight - sum(drawn)

    return run


@torch.no_grad()
def layer_bounds(s: ScoreInputs, hidden: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The K-sample bound L(x) and the bound L_{>k}(x) with the ``hidden`` sites from p.

    Both are log (1/K) sum_k w_k; for L, z ~ q(z | x) and w = p(x, z) / q(z | x); for
    L_{>k}, the guide's draws of the ``hidden`` sites are discarded, the model draws
    them from p(z_hidden | z_rest), and w = p(x | z) p(z_rest) / q(z_rest | x, z'),
    z' the discarded draws (a lower bound on log p(x) too: the proposal of an extended
    space whose reverse model for z' is q(z' | x)). Each chunk of particles draws L's
    first, then L_{>k}'s.
    """

    def run(program: Program, chunk: int) -> Callable[[Batch], tuple[torch.Tensor, ...]]:
        def one_pass(batch: Batch) -> tuple[torch.Tensor, ...]:
            totals: list[Any] = [None, None]
            for ks in chunks(s.num_samples, chunk):
                for i, sites in enumerate(((), hidden)):
                    weights = program.particles(
                        batch, ks.stop - ks.start, _prior_below(program, sites)
                    )
                    part = weights.logsumexp(0)
                    totals[i] = part if totals[i] is None else torch.logaddexp(totals[i], part)
            return tuple(t - math.log(s.num_samples) for t in totals)

        return one_pass

    passes = Passes(s.batch_size)
    (full, partial), _ = estimate(
        s.model, s.guide, s.data, ((), {}), passes, run, discrete="sample"
    )
    return full, partial


def llr(s: ScoreInputs, k: int = 1) -> torch.Tensor:
    """Havtorn et al.'s (2021) likelihood ratio of a hierarchical VAE.

    LLR_{>k}(x) = L(x) - L_{>k}(x)

    L is the K-sample importance-weighted bound (the ELBO for K = 1); L_{>k} the same
    bound with the k bottom latent layers (z_1 .. z_k, next to x) drawn from the
    model's conditional prior p(z_{<=k} | z_{>k}) instead of q:
    log w = log p(x | z) + log p(z_{>k}) - log q(z_{>k} | x) (:func:`layer_bounds`).
    The bottom layers code low-level features that any image shares; L_{>k} asks the
    top, semantic layers alone to explain x, and falls on inputs whose semantics are
    new, so the ratio is high for them.

    Parameters
    ----------
    k
        How many bottom layers come from the prior: 1 to (layers - 1).
    """
    if not isinstance(k, int) or not 1 <= k < len(s.layers):
        raise PyrovaeError(
            f"the llr score draws the k bottom of the model's {len(s.layers)} latent layers "
            f"from the prior, so ",
            Param("k"),
            f" must be 1 to {len(s.layers) - 1}; got {k}",
        )
    full, partial = layer_bounds(s, tuple(s.layers[:k]))
    return full - partial


def likelihood_ratio(s: ScoreInputs) -> torch.Tensor:
    """Ren et al.'s (2019) likelihood ratio against a background model.

    S(x) = -(log p_theta(x) - log p_theta0(x))

    p_theta0 is the same kind of model trained on inputs perturbed by :func:`perturb`:
    it learns the low-level statistics (background) but not the semantics, so the
    ratio cancels what makes simple inputs likely. Both estimates use the same random
    numbers (the generator is rewound in between), so that the background model being
    the model itself gives exactly 0, and the noise of the two estimates partly cancels.
    """
    device = s.data.first_batch().first.device
    state = rng_state(device)
    own = nll(s)
    set_rng_state(state, device)
    model0, guide0 = s.background  # type: ignore[misc]
    return own - nll(replace(s, model=model0, guide=guide0))


def perturb(
    x: torch.Tensor,
    rate: float,
    generator: torch.Generator | None = None,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Ren et al.'s (2019) perturbed inputs, to train a background model on.

    Each entry is replaced, independently with probability ``rate``, by a value drawn
    uniformly from ``[low, high]``: the data's range, [0, 1] for binary and grey-level
    images (binary images so get grey values, which a dynamic binarisation turns into
    random bits). Ren et al. use rates of 0.1 to 0.3.

    Parameters
    ----------
    x
        The inputs, any shape.
    rate
        The probability of replacing each entry, in [0, 1].
    generator
        The random generator to draw from (None: torch's default).
    low, high
        The range of the replacement values.
    """
    if not 0 <= rate <= 1:
        raise PyrovaeError(Param("rate"), f" is a probability, in [0, 1]; got {rate}")
    hit = torch.rand(x.shape, generator=generator, device=x.device) < rate
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(hit, low + (high - low) * noise, x)


#: The anomaly scores by name (``pyrovae score --method``); see :class:`AnomalyScore`.
SCORES: dict[str, AnomalyScore] = {
    "nll": AnomalyScore(nll, "-log p(x), importance sampling with K draws"),
    "elbo": AnomalyScore(elbo, "-ELBO, averaged over K draws from q(z|x)"),
    "reconstruction": AnomalyScore(reconstruction, "-E_q log p(x|z), K draws (An & Cho, 2015)"),
    "complexity": AnomalyScore(
        complexity,
        "-log p(x) minus the PNG length of x, for images (Serra et al., 2020)",
        needs_image=True,
        observed_only=False,
    ),
    "llr": AnomalyScore(
        llr,
        "L(x) - L>k(x), the k bottom layers from the prior, for hierarchical VAEs "
        "(Havtorn et al., 2021)",
        needs_layers=True,
        options=("k",),
    ),
    "likelihood-ratio": AnomalyScore(
        likelihood_ratio,
        "-log p(x) + log p0(x), p0 trained on perturbed inputs (Ren et al., 2019)",
        needs_background=True,
    ),
}


def _model_data(x: Any, method: str, score: AnomalyScore) -> Data:
    """The data as the programs take them: NaNs become the masking convention."""
    values = Batch.of(x).first if isinstance(x, np.ndarray) else x  # torch's float dtype
    if isinstance(values, torch.Tensor) and bool(torch.isnan(values).any()):
        if not score.observed_only:
            raise PyrovaeError(
                f"the {method} score needs complete inputs; x has "
                f"{int(torch.isnan(values).sum())} missing entries (NaN)"
            )
        return as_masked(values, "x")
    data = as_data(values, "x")
    mask = data.batch.kwargs.get("mask") if isinstance(data, Indexable) else None
    if not score.observed_only and isinstance(mask, torch.Tensor) and not bool(mask.all()):
        raise PyrovaeError(
            f"the {method} score needs complete inputs; x has "
            f"{int((~mask.bool()).sum())} missing entries (its mask)"
        )
    return data


def latent_layers(owner: Any, model: Callable, guide: Callable, data: Data) -> tuple[str, ...]:
    """The latent sites, the one next to x first.

    A VAE's ``sites`` (``("z1", "z2", ...)``); for another program, the model's latent
    sites in the reverse of the order it draws them (it generates from the top down,
    so the last one drawn is next to x).
    """
    sites = getattr(owner, "sites", None)
    if sites is not None:
        return tuple(sites)
    batch = data.first_batch()
    model_trace, _ = probe(model, guide, *batch.args, **batch.kwargs)
    return tuple(reversed([site["name"] for site in sample_sites(model_trace, observed=False)]))


def _check_applies(method: str, score: AnomalyScore, given: dict[str, Any]) -> None:
    """One-line errors for a score that does not apply to what was given."""
    for option in given["options"]:
        if option not in score.options:
            raise PyrovaeError(f"the {method} score takes no option ", Param(option))
    if score.needs_image and given["image_shape"] is None:
        raise PyrovaeError(
            f"the {method} score compresses each input as an image, and these data are no "
            "images (the model has no image_shape; from Python, pass ",
            Param("image_shape"),
            ")",
        )
    if score.needs_background != (given["background"] is not None):
        raise PyrovaeError(
            f"the {method} score "
            + (
                "compares the model with a background model trained on perturbed inputs; "
                "pass one as "
                if score.needs_background
                else "uses no background model; leave out "
            ),
            Param("background"),
        )


@torch.no_grad()
def anomaly_score(
    vae_or_model_guide: Any,
    x: Any,
    method: str = "nll",
    *,
    num_samples: int = 1000,
    batch_size: int = 100,
    background: Any = None,
    image_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> torch.Tensor:
    """Anomaly scores of ``x`` under a trained model: higher means more anomalous.

    Parameters
    ----------
    vae_or_model_guide
        A trained :class:`~pyrovae.models.vae.VAE`, an object with ``model`` and
        ``guide``, or a ``(model, guide)`` pair.
    x
        The datapoints, in any form of :mod:`pyrovae.data.batches`; a tensor with NaN
        at missing entries, or ``{"x": ..., "mask": ...}`` (the masking convention of
        :mod:`pyrovae.data.masks`), is scored on its observed entries.
    method
        A key of :data:`SCORES`.
    num_samples
        K: importance samples per datapoint, or draws averaged (``elbo``,
        ``reconstruction``).
    batch_size
        Datapoints per pass.
    background
        ``likelihood-ratio`` only: the background model (a VAE or a model/guide pair).
    image_shape
        ``complexity``: ``(channels, height, width)`` of one input (default: the
        VAE's own).
    **options
        The score's own options: ``k`` of ``llr``.

    Returns
    -------
    torch.Tensor
        One score per datapoint, shape ``(N,)``, in nats.
    """
    score = lookup(SCORES, method, "anomaly score")
    check_counts(num_samples=num_samples, batch_size=batch_size)
    contract = contract_of(vae_or_model_guide)
    image_shape = image_shape or getattr(contract.owner, "image_shape", None)
    given = {"options": options, "image_shape": image_shape, "background": background}
    _check_applies(method, score, given)
    data = _model_data(x, method, score)
    layers: tuple[str, ...] = ()
    if score.needs_layers:
        layers = latent_layers(contract.owner, contract.model, contract.guide, data)
        if len(layers) < 2:
            raise PyrovaeError(
                f"the {method} score compares latent layers, and this model has one "
                f"({', '.join(layers) or 'none'}); train a hierarchical VAE, with several "
                "sizes in ",
                Param("z_dim"),
            )
    programs = contract_of(background) if background is not None else None
    inputs = ScoreInputs(
        contract.model,
        contract.guide,
        data,
        num_samples,
        batch_size,
        tuple(image_shape) if image_shape is not None else None,
        layers,
        (programs.model, programs.guide) if programs is not None else None,
    )
    return score.fn(inputs, **options)
