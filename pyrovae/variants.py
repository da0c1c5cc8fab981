"""The built-in VAEs, by name: the plain/conditional/hierarchical VAE and its variants.

A run folder's ``config.json`` records ``"variant"`` in its model settings (absent for
the plain :class:`~pyrovae.VAE`); :func:`build_vae` rebuilds the right class from them.
"""

from __future__ import annotations

from typing import Any

from pyrovae.clusters import ClusterVAE
from pyrovae.registry import lookup
from pyrovae.semisupervised import SemiSupervisedVAE
from pyrovae.vae import VAE

VARIANTS: dict[str, type[VAE]] = {
    "vae": VAE,
    "semi-supervised": SemiSupervisedVAE,
    "clusters": ClusterVAE,
}


def build_vae(**config: Any) -> VAE:
    """The VAE a saved config describes: ``VARIANTS[config["variant"]].from_config(the rest)``.

    Meant for a run's ``config.json`` (a VAE's ``config``): a key missing from it means
    what runs written before that argument existed did (see each class's
    ``from_config``), not the class's default. To build a VAE from a few settings, call
    the class itself.
    """
    return lookup(VARIANTS, config.pop("variant", "vae"), "VAE variant").from_config(config)
