"""Models: compositions of parts, each with its own ``model`` and ``guide``.

``protocol``
    The model contract: what ``fit``, the estimators and the command line may ask of a
    model, and the base class :class:`~pyrovae.models.protocol.Model` with its defaults.
``vae``
    The VAE: plain, conditional (``num_classes``) and hierarchical (several ``z_dim``).
``semisupervised``
    M2, the semi-supervised VAE.
``clusters``, ``clustering``
    The VAE with a discrete cluster latent; k-means and matched accuracy.
``variants``
    The built-in VAEs by name (``VARIANTS``), rebuilt from a run's config.
``user``
    A user's own model class, imported by path.
"""
