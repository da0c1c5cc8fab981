"""Parts: the pieces a VAE is composed of, each a module that builds a distribution.

``priors``
    p(z): ``prior()`` returns a distribution over z (``PRIORS``).
``likelihoods``
    p(x|z): the decoder's output to a distribution over x (``LIKELIHOODS``).
``guides``
    Families of q(z|x): the encoder's output to a distribution over z (``GUIDES``).
``nets``
    Plain torch networks, no Pyro inside (``NETS``, ``CLASSIFIERS``, ``INITS``).
``layers``
    The conditional Gaussians between the stochastic layers of a hierarchical VAE.
``autoregressive``
    The distribution over whole token sequences that the ``autoregressive`` likelihood
    and the VQ code prior build, and its GRU.
``distributions``
    The torch distributions the parts build, and the helpers they share.

Each registry is a dict next to its parts; a new part is a class added to it.
"""
