"""The VAE: a Pyro model p(z) p(x|z) and a Pyro guide q(z|x) over shared networks.

Reading guide::

    model(x):  with plate("data"):  z ~ prior();  x ~ likelihood(decoder(z))   [observed]
    guide(x):  with plate("data"):  z ~ posterior(encoder(x))

A conditional VAE (``num_classes``) is the same program with the label y appended, one-hot,
to each network's input: ``decoder([z, y])``, ``encoder([x, y])``.

A hierarchical VAE (``z_dim=(d_1, ..., d_L)``, Burda et al. 2016) has L stochastic layers,
z_1 next to x; the sites are named ``z1 .. zL`` and the programs loop over the layers::

    model(x):  with plate("data"):  zL ~ prior();  z_l ~ down_l(z_{l+1}) for l = L-1..1;
                                    x ~ likelihood(decoder(z1))            [observed]
    guide(x):  with plate("data"):  z1 ~ posterior(encoder(x));  z_{l+1} ~ up_l(z_l)

The variants in :mod:`pyrovae.models.variants` (M2 in :mod:`pyrovae.models.semisupervised`,
the cluster VAE in :mod:`pyrovae.models.clusters`) are subclasses that fill in three hooks, all
called inside the data plate: ``_model_label`` (y in the model), ``_guide_label`` (y in
the guide) and ``_top_prior`` (the distribution of the top latent site).

Everything that varies between VAEs lives in one of four swappable parts, each picked by
name from its registry or passed as a module: the prior (``priors.PRIORS``), the
likelihood (``likelihoods.LIKELIHOODS``), the approximate posterior family
(``guides.GUIDES``) and the encoder/decoder networks (``nets.NETS``). The model and the
guide themselves never look at which parts they hold.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.params.param_store import param_with_module_name
from torch import nn

from pyrovae._util import caller_level, lookup
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.programs import params_are_known
from pyrovae.models.protocol import Model
from pyrovae.parts.distributions import ObservedEntries, mean_of
from pyrovae.parts.guides import GUIDES, GuideFamily
from pyrovae.parts.layers import GaussianLayer
from pyrovae.parts.likelihoods import LIKELIHOODS, Likelihood
from pyrovae.parts.nets import INITS, NETS, Networks
from pyrovae.parts.priors import CODE_PRIORS, PRIORS, Prior

_instance_ids = itertools.count()


def _build(part: str | nn.Module, registry: dict, kind: str, *args: Any, **kwargs: Any):
    """A registry name becomes ``registry[name](*args, **kwargs)``; a module is kept as is."""
    if isinstance(part, nn.Module):
        return part
    return lookup(registry, part, kind)(*args, **kwargs)


def _name_of(part: str | nn.Module, registry: dict) -> str:
    """The registry name of a part, so a saved VAE can be rebuilt by name."""
    if isinstance(part, str):
        return part
    for key, cls in registry.items():
        if type(part) is cls:
            return key
    return type(part).__name__


#: Constructor arguments renamed in 0.2, old name to new: ``guide`` was also the name of
#: the Pyro program, ``vae.guide``.
RENAMED = {"guide": "posterior", "guide_kwargs": "posterior_kwargs"}


def _renamed(arguments: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with the values of ``given`` under old names moved to the new names."""
    for old, value in given.items():
        new = RENAMED.get(old)
        if new is None:
            raise TypeError(f"VAE() got an unexpected keyword argument {old!r}")
        warnings.warn(
            f"VAE({old}=...) is now VAE({new}=...)", DeprecationWarning, stacklevel=caller_level()
        )
        arguments[new] = value
    return arguments


def _check_classes(num_classes: int | None, nets: Networks, prior: Prior) -> int | None:
    """``num_classes`` of a conditional VAE (None: unconditional), or a one-line error."""
    if not num_classes:
        return None
    if int(num_classes) < 2:
        raise PyrovaeError(
            "a conditional VAE needs at least 2 classes, got ", Param("num_classes", num_classes)
        )
    if not nets.flat_inputs:
        raise PyrovaeError(
            "a conditional VAE appends the label to the encoder's input, which these "
            "networks do not take; use ",
            Param("net", "mlp"),
        )
    if prior.reads_encoder:
        raise PyrovaeError(
            f"the {type(prior).__name__}'s pseudo-inputs carry no label, so it does not "
            "apply to a conditional VAE; pick another prior"
        )
    return int(num_classes)


def _prior(
    prior: str | Prior, posterior: GuideFamily, z_dims: tuple[int, ...], kwargs: dict
) -> Prior:
    """The prior asked for, or one the guide family is made for (``vq``)."""
    if not posterior.brings_prior:
        if isinstance(prior, str) and prior in CODE_PRIORS and prior not in PRIORS:
            raise PyrovaeError(
                f"the {prior} prior is a prior over the codes of a vector-quantised latent: "
                "use it with ",
                Param("posterior", "vq"),
            )
        chosen = _build(prior, PRIORS, "prior", z_dims[-1], **kwargs)
        if len(z_dims) > 1 and chosen.reads_encoder:
            raise PyrovaeError(
                f"the {type(chosen).__name__} mixes q(z_1 | u) at pseudo-inputs, which does "
                "not apply to the top layer of a hierarchical VAE (",
                Param("z_dim"),
                " with several sizes); pick another prior",
            )
        return chosen
    family = _name_of(posterior, GUIDES)
    if isinstance(prior, nn.Module) or prior not in ("standard", *CODE_PRIORS):
        raise PyrovaeError(
            f"the {family} guide brings its own prior over its codes, so ",
            Param("prior", prior),
            f" does not apply with it; leave it out, or choose one of: {', '.join(CODE_PRIORS)}",
        )
    if len(z_dims) > 1:
        raise PyrovaeError(
            f"the {family} guide's prior is over the latent the encoder gives, which in a "
            "hierarchical VAE (",
            Param("z_dim"),
            " with several sizes) is not the top layer; give one size",
        )
    return posterior.implied_prior(None if prior == "standard" else prior, **kwargs)


def _sequence_kwargs(
    likelihood: str | nn.Module, vocab_size: int | None, hidden: Sequence[int]
) -> dict[str, int]:
    """``vocab_size`` for a likelihood of token sequences named from the registry, and
    ``hidden[0]`` as the size of its GRU (as the encoder's); a one-line error where
    sequences meet a likelihood of vectors."""
    if vocab_size is None or isinstance(likelihood, nn.Module):
        return {}
    cls = lookup(LIKELIHOODS, likelihood, "likelihood")
    if not cls.models_sequences:
        raise PyrovaeError(
            f"the {likelihood} likelihood models vectors of numbers, not token sequences; use ",
            Param("likelihood", "autoregressive"),
        )
    return {"vocab_size": vocab_size, "hidden_size": int(hidden[0])}


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the networks' outputs are cast to: x's, or the default for token ids."""
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _layer_sizes(z_dim: int | Sequence[int]) -> tuple[int, ...]:
    """The sizes of the stochastic layers, bottom (z_1) first; an int is one layer."""
    try:
        sizes = (
            (operator.index(z_dim),)
            if not isinstance(z_dim, Sequence)
            else tuple(operator.index(d) for d in z_dim)
        )
    except TypeError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise PyrovaeError(
            Param("z_dim"),
            " must be positive: a size, or a list of sizes (one per stochastic "
            f"layer, z_1 first); got {z_dim!r}",
        )
    return sizes


class VAE(Model):
    """A variational autoencoder written as a Pyro model and guide.

    Parameters
    ----------
    x_dim
        Size of one flattened observation (784 for 28x28 images).
    z_dim
        Size of the latent vector z; or a sequence ``(d_1, ..., d_L)`` of sizes, one per
        stochastic layer, z_1 (next to x) first, for a hierarchical VAE (see Notes). A
        one-element sequence is the same as its int.
    hidden
        Hidden layer sizes of the encoder; the decoder uses them reversed. In a
        hierarchical VAE every network between two stochastic layers has one hidden
        layer of size ``hidden[-1]``.
    prior
        A key of ``PRIORS`` or a :class:`~pyrovae.parts.priors.Prior` module. A guide
        family that fixes its prior (``"vq"``: uniform over its codebook) takes none:
        leave the default.
    likelihood
        A key of ``LIKELIHOODS`` or a :class:`~pyrovae.parts.likelihoods.Likelihood`
        module.
    posterior
        A key of ``GUIDES`` or a :class:`~pyrovae.parts.guides.GuideFamily` module: the
        family of q(z|x) (``guide`` before 0.2, a name it shared with the program
        :meth:`guide`; the old name still works, with a warning).
    net
        A key of ``NETS``: which encoder/decoder networks to build.
    activation
        Nonlinearity of the networks (a key of ``nets.ACTIVATIONS``).
    image_shape
        ``(channels, height, width)`` of one observation; needed by the conv networks
        and by the figures.
    prior_kwargs, likelihood_kwargs, posterior_kwargs
        Extra constructor arguments for parts given by name (``posterior_kwargs`` was
        ``guide_kwargs``).
    init
        How the networks' weights start (a key of ``nets.INITS``: ``"default"`` or
        ``"orthogonal"``).
    num_classes
        Make the VAE conditional on a class label y in ``0 .. num_classes - 1``:
        p(x | z, y) p(z) and q(z | x, y), the label given to both networks as a one-hot
        vector appended to their input (Sohn et al., 2015). The programs then take the
        labels: ``model(x, y)``, ``guide(x, y)``; train on ``(x, y)`` tuples or
        ``{"x": x, "y": y}``. The networks must be ``"mlp"``; the VampPrior, whose
        pseudo-inputs carry no label, does not apply.
    vocab_size
        For token sequences (``x_dim`` is then their padded length L): the size of the
        vocabulary, given to the ``"gru"`` networks and to a likelihood that models
        sequences (``"autoregressive"``); see :mod:`pyrovae.data.sequences`.
    name
        Prefix under which the parameters are registered in Pyro's parameter store;
        unique per instance by default, so two VAEs in one process never share
        parameters by accident.

    Notes
    -----
    ``model`` and ``guide`` follow the package-wide convention: every per-datapoint
    site lies under ``pyro.plate("data", batch_size)``. That is all that
    :func:`pyrovae.fit` and :func:`pyrovae.log_marginal_likelihood` rely on.

    **Hierarchical VAE** (Burda et al., 2016). With ``z_dim=(d_1, ..., d_L)`` and L > 1
    the model and guide are

    ::

        p(x, z_1..z_L) = p(z_L) * prod_{l=1}^{L-1} p(z_l | z_{l+1}) * p(x | z_1)
        p(z_l | z_{l+1}) = N(z_l; mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2)        (down[l-1])

        q(z_1..z_L | x) = q(z_1 | x) * prod_{l=1}^{L-1} q(z_{l+1} | z_l)
        q(z_{l+1} | z_l) = N(z_{l+1}; m_l(z_l), diag s_l(z_l)^2)                 (up[l-1])

    where p(z_L) is the chosen prior over d_L units, p(x | z_1) the likelihood of the
    decoder's output, q(z_1 | x) the chosen guide family over d_1 units from the encoder,
    and each mean/scale pair is a :class:`~pyrovae.parts.layers.GaussianLayer` (an MLP with one
    hidden layer of ``hidden[-1]`` units; softplus scales): ``down[l-1]`` in the model,
    ``up[l-1]`` in the guide (bottom-up inference). The sites are ``"z1" .. "zL"``, all
    under the data plate. ``z_dim`` is then the bottom layer's size d_1 (what
    :meth:`encode` and :meth:`decode` work with, and the figures use) and ``z_dims`` all
    of them; ``config["z_dim"]`` records the list. The VampPrior (its components live in
    z_1's space, not z_L's) does not apply.
    """

    #: Its networks' outputs are cast back to float32 before any distribution is built,
    #: so ``precision="auto"`` may train it in bfloat16 (see :mod:`pyrovae.inference.precision`).
    mixed_precision_safe = True

    #: The discrete latent site that training sums out with ``TraceEnum_ELBO`` (None: no
    #: such site; "y" for M2, "c" for the cluster VAE). Other ELBOs would sample it.
    discrete_latent: str | None = None

    def __init__(
        self,
        x_dim: int = 784,
        z_dim: int | Sequence[int] = 50,
        hidden: Sequence[int] = (400,),
        prior: str | Prior = "standard",
        likelihood: str | Likelihood = "bernoulli",
        posterior: str | GuideFamily = "diagonal",
        net: str = "mlp",
        activation: str = "relu",
        image_shape: Sequence[int] | None = None,
        prior_kwargs: dict[str, Any] | None = None,
        likelihood_kwargs: dict[str, Any] | None = None,
        posterior_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        init: str = "default",
        num_classes: int | None = None,
        vocab_size: int | None = None,
        **renamed: Any,
    ) -> None:
        super().__init__()
        given = _renamed({"posterior": posterior, "posterior_kwargs": posterior_kwargs}, renamed)
        posterior, posterior_kwargs = given["posterior"], given["posterior_kwargs"] or {}
        z_dims = _layer_sizes(z_dim)
        if x_dim < 1 or not hidden or any(h < 1 for h in hidden):
            raise PyrovaeError(
                f"x_dim, z_dim and hidden sizes must be positive; got x_dim={x_dim}, "
                f"z_dim={z_dim}, hidden={tuple(hidden)}"
            )
        # z_dim: the bottom layer's size (what encode/decode and the figures use).
        self.x_dim, self.z_dim, self.z_dims = int(x_dim), z_dims[0], z_dims
        #: The latent sites, bottom first: "z" for one layer, "z1", "z2", ... for several.
        self.sites = ("z",) if len(z_dims) == 1 else tuple(f"z{i + 1}" for i in range(len(z_dims)))
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.name = name if name is not None else f"vae{next(_instance_ids)}"
        self.posterior = _build(posterior, GUIDES, "guide", z_dims[0], **posterior_kwargs)
        self.prior = _prior(prior, self.posterior, z_dims, prior_kwargs or {})
        self.vocab_size = int(vocab_size) if vocab_size is not None else None
        self.likelihood = _build(
            likelihood,
            LIKELIHOODS,
            "likelihood",
            x_dim,
            **{
                **_sequence_kwargs(likelihood, self.vocab_size, hidden),
                **(likelihood_kwargs or {}),
            },
        )
        nets = lookup(NETS, net, "net")
        self.num_classes = _check_classes(num_classes, nets, self.prior)
        if nets.reads_tokens and self.prior.reads_encoder:
            raise PyrovaeError(
                f"the {type(self.prior).__name__}'s pseudo-inputs are vectors of numbers, "
                f"which the {net} encoder (of token ids) cannot read; pick another prior"
            )
        self._build_networks(nets, tuple(hidden), activation, init)
        self.prior.attach(self._gaussian_posterior, self.x_dim)
        self._pyro_params: list[tuple[str, nn.Parameter]] | None = None
        # What it takes to rebuild this VAE (see pyrovae.rundir). A part given as a module
        # is recorded by its registry name; add its class to the registry to reload.
        self.config = {
            "variant": "vae",
            "x_dim": self.x_dim,
            "z_dim": self.z_dim if len(z_dims) == 1 else list(z_dims),
            "hidden": [int(h) for h in hidden],
            "prior": getattr(self.prior, "name", None) or _name_of(prior, PRIORS),
            "likelihood": _name_of(likelihood, LIKELIHOODS),
            "posterior": _name_of(posterior, GUIDES),
            "net": net,
            "activation": activation,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "prior_kwargs": dict(prior_kwargs or {}),
            "likelihood_kwargs": dict(likelihood_kwargs or {}),
            "posterior_kwargs": dict(posterior_kwargs),
            "init": init,
            "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
        }

    def _build_networks(
        self, nets: Networks, hidden: tuple[int, ...], activation: str, init: str
    ) -> None:
        """The encoder, the decoder and, between stochastic layers, the conditionals."""
        labels = self.num_classes or 0
        self.encoder, self.decoder = nets.build(
            self.x_dim + labels,
            self.z_dims[0] + labels,
            self.posterior.param_dim,
            self.likelihood.param_dim,
            hidden=hidden,
            activation=activation,
            image_shape=self.image_shape,
            vocab_size=self.vocab_size,
        )
        init_weights = lookup(INITS, init, "init")
        # Between stochastic layers l and l+1 (empty for one layer: no new parameters):
        # down[l] gives p(z_l | z_{l+1}), up[l] gives q(z_{l+1} | z_l).
        width = int(hidden[-1])
        pairs = list(zip(self.z_dims[:-1], self.z_dims[1:], strict=True))
        self.down = nn.ModuleList(GaussianLayer(hi, lo, width, activation) for lo, hi in pairs)
        self.up = nn.ModuleList(GaussianLayer(lo, hi, width, activation) for lo, hi in pairs)
        for module in (self.encoder, self.decoder, self.down, self.up):
            init_weights(module)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        """The VAE that ``config`` (its ``self.config``) describes.

        A run folder's config is upgraded to the current format first
        (:func:`pyrovae.rundir.config.upgrade`), so every key is there.
        """
        return cls(**{k: v for k, v in config.items() if k != "variant"})

    # ----------------------------------------------------------------- Pyro programs
    def model(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_samples: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The generative model p(x, z) = p(z) p(x|z) (p(z) p(x|z, y) when conditional).

        Hierarchical: p(z_L) prod_l p(z_l | z_{l+1}) p(x | z_1), drawn from the top.

        Parameters
        ----------
        x
            Observations of shape ``(batch, x_dim)``; ``None`` to generate.
        y
            Class labels, shape ``(batch,)``: only for a conditional VAE
            (``num_classes``), where they are required.
        num_samples
            How many datapoints to generate when ``x`` is ``None``.
        mask
            True where an entry of ``x`` is observed (missing ones set to zero): the
            likelihood then scores the observed entries only (MIWAE; see
            :mod:`pyrovae.data.masks`).

        Returns
        -------
        torch.Tensor
            ``x`` (observed or sampled).
        """
        self._register()
        size = next((t.shape[0] for t in (x, y) if t is not None), num_samples)
        if size is None:
            raise PyrovaeError("model() needs data x or num_samples to generate")
        with pyro.plate("data", size):
            y = self._model_label(y)
            z = pyro.sample(self.sites[-1], self._top_prior())
            for site, layer in zip(self.sites[-2::-1], reversed(self.down), strict=True):
                z = pyro.sample(site, layer(z))
            px = self.decode(z, y)
            return pyro.sample("x", px if mask is None else ObservedEntries(px, mask), obs=x)

    def guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_samples: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The approximate posterior q(z|x) given by the encoder (q(z|x, y): conditional).

        Hierarchical: q(z_1 | x) prod_l q(z_{l+1} | z_l), bottom-up; returns z_1.

        ``num_samples`` is accepted (and ignored) so that model and guide share a
        signature, as Pyro's inference algorithms call both with the same arguments.
        With missing entries the encoder sees ``x`` zero-filled.
        """
        self._register()
        with pyro.plate("data", x.shape[0]):
            y = self._guide_label(x, y)
            params = self._posterior_params(x, y)
            z1 = z = pyro.sample(self.sites[0], self.posterior(params))
            if self.training:
                for name, value in self.posterior.training_factors(params).items():
                    pyro.factor(name, value, has_rsample=True)
            for site, layer in zip(self.sites[1:], self.up, strict=True):
                z = pyro.sample(site, layer(z))
            return z1

    # Hooks of the variants (models.semisupervised, models.clusters); inside the plate.
    def _model_label(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The label in the model: given as an input (conditional VAE) or absent."""
        return y

    def _guide_label(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        """The label in the guide: as given."""
        return y

    def _top_prior(self) -> dist.Distribution:
        """p(z_L), the distribution of the top latent site."""
        return self.prior()

    def _register(self) -> None:
        """Register every parameter with Pyro, as ``pyro.module(self.name, self)`` does.

        The list of (name, parameter) pairs is computed once, not on every call: walking
        the module tree took about 1 ms of every training step. Inside a training step
        whose optimiser already holds them (:func:`pyrovae.inference.programs.params_known`)
        they
        are not announced again.
        """
        if self._pyro_params is not None and params_are_known():
            return
        if self._pyro_params is None:
            self._pyro_params = [
                (param_with_module_name(self.name, n), p)
                for n, p in self.named_parameters()
                if p.requires_grad
            ]
        for full_name, p in self._pyro_params:
            pyro.param(full_name, p)

    def _apply(self, fn, *args: Any, **kwargs: Any):
        self._pyro_params = None  # .to(), .double(), ... may swap the parameter objects
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ conveniences
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """q(z|x) (q(z|x, y) when conditional) with batch shape ``x.shape[:-1]``.

        In a hierarchical VAE, q(z_1 | x): the bottom layer's posterior.

        The encoder's output is cast back to the dtype of ``x``: under mixed precision
        (``torch.autocast``) the network runs in half precision, the density in full.
        """
        return self.posterior(self._posterior_params(x, y))

    def _posterior_params(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The encoder's output for the guide family, in the dtype of ``x``."""
        return self.encoder(self._labelled(x, y)).to(_float_dtype(x))

    def _labelled(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``t`` with the one-hot label appended (conditional VAE); ``t`` itself otherwise."""
        if self.num_classes is None:
            if y is not None:
                raise PyrovaeError(
                    "this VAE is not conditional, so it takes no labels y: give it x "
                    "alone, or build VAE(num_classes=K) to condition on them"
                )
            return t
        if y is None:
            raise PyrovaeError(
                f"this VAE is conditional on {self.num_classes} classes: pass the labels y "
                "with x (data as (x, y) or {'x': x, 'y': y})"
            )
        onehot = F.one_hot(y.long(), self.num_classes).to(t.dtype)
        # Broadcast: an enumerated y is (K, 1, ...) against t's (B, ...), z's (N, B, ...).
        batch = torch.broadcast_shapes(t.shape[:-1], onehot.shape[:-1])
        return torch.cat([t.expand(*batch, t.shape[-1]), onehot.expand(*batch, -1)], -1)

    def _gaussian_posterior(self, x: torch.Tensor) -> dist.Distribution:
        """The Gaussian part of q(z|x) (see ``GuideFamily.gaussian``), for the prior."""
        return self.posterior.gaussian(self.encoder(x).to(_float_dtype(x)))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x|z) (p(x|z, y) when conditional), batch shape ``z.shape[:-1]``, z's dtype.

        In a hierarchical VAE ``z`` is z_1, the bottom layer.
        """
        return self.likelihood(self.decoder(self._labelled(z, y)).to(z.dtype))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of p(x|z) at the posterior mean of z (an average of draws for a flow)."""
        return self.decode(mean_of(self.encode(x, y)), y).mean

    @torch.no_grad()
    def sample(
        self, num_samples: int, mean: bool = True, y: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Draw ``num_samples`` observations: z from the prior, then p(x|z).

        With ``mean=True`` the mean of p(x|z) is returned (smooth images), otherwise a
        draw from it. A conditional VAE draws class ``y`` (an int, or one label per
        sample); by default the classes in turn, 0, 1, ..., so that every class shows.
        A hierarchical VAE draws the whole chain z_L, ..., z_1 from the top.
        """
        z = self.prior().sample((num_samples,))
        for layer in reversed(self.down):
            z = layer(z).sample()
        if self.num_classes is not None:
            if y is None:
                y = torch.arange(num_samples, device=z.device) % self.num_classes
            y = torch.as_tensor(y, device=z.device).long().expand(num_samples)
            if bool((y < 0).any()) or bool((y >= self.num_classes).any()):
                raise PyrovaeError(
                    "labels ", Param("y"), f" must lie in 0..{self.num_classes - 1}"
                )
        px = self.decode(z, y)
        return px.mean if mean else px.sample()

    def check_data(self, x: torch.Tensor) -> None:
        """Raise :class:`~pyrovae.errors.PyrovaeError` unless ``x`` fits this VAE."""
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise PyrovaeError(
                f"the VAE expects data of shape (N, {self.x_dim}) but got {tuple(x.shape)}; "
                "flatten each datapoint or set ",
                Param("x_dim"),
                " to match",
            )
        self.likelihood.check_support(x)
