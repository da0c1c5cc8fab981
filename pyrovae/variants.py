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
    """The VAE a config describes: ``VARIANTS[config["variant"]](**the rest)``."""
    return lookup(VARIANTS, config.pop("variant", "vae"), "VAE variant")(**config)
