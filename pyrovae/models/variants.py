"""The built-in VAEs by name: the plain, conditional and hierarchical VAE and its variants.

A run folder's ``config.json`` records ``"variant"`` in its model settings (``"vae"`` for
the plain :class:`~pyrovae.models.vae.VAE`); :func:`build_vae` rebuilds the right class
from them.
"""

from __future__ import annotations

from typing import Any

from pyrovae._util import lookup
from pyrovae.models.clusters import ClusterVAE
from pyrovae.models.semisupervised import SemiSupervisedVAE
from pyrovae.models.vae import VAE

VARIANTS: dict[str, type[VAE]] = {
    "vae": VAE,
    "semi-supervised": SemiSupervisedVAE,
    "clusters": ClusterVAE,
}


def build_vae(**config: Any) -> VAE:
    """The VAE a config describes: ``VARIANTS[config["variant"]].from_config(the rest)``.

    Meant for a run's ``config.json`` (a VAE's ``config``), upgraded to the current
    format (:func:`pyrovae.rundir.config.upgrade`); to build a VAE from a few settings,
    call the class itself.
    """
    return lookup(VARIANTS, config.get("variant", "vae"), "VAE variant").from_config(config)
