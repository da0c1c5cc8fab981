"""Plain torch networks for the encoder and the decoder: no Pyro inside.

A network maps a flat input of shape ``(..., in_dim)`` to a flat output of shape
``(..., out_dim)``; any number of leading batch dimensions is allowed, so the same
network serves a minibatch ``(B, D)`` and a vectorised set of particles ``(K, B, D)``.
What the output *means* (the parameters of q(z|x) or of p(x|z)) is decided by the guide
family and the likelihood, never by the network.

``NETS`` is the registry of encoder/decoder pairs: a name maps to the :class:`Networks`
that builds both from the dimensions the VAE works out. ``CLASSIFIERS`` is the registry
of the networks of a classifier q(y | x) (the semi-supervised VAE's), ``INITS`` of the
ways weights start, ``ACTIVATIONS`` of the nonlinearities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pyrovae._util import lookup
from pyrovae.errors import Param, PyrovaeError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


class MLP(nn.Module):
    """A fully connected network ``in_dim -> hidden... -> out_dim``.

    Parameters
    ----------
    in_dim, out_dim
        Sizes of the input and output vectors.
    hidden
        Sizes of the hidden layers, e.g. ``(400,)``.
    activation
        Name of the nonlinearity between layers (a key of ``ACTIVATIONS``).
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: Sequence[int] = (400,), activation: str = "relu"
    ) -> None:
        super().__init__()
        act = lookup(ACTIVATIONS, activation, "activation")
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), act()]
            in_dim = width
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _check_image_shape(image_shape: Sequence[int] | None, x_dim: int) -> tuple[int, int, int]:
    if image_shape is None or len(image_shape) != 3:
        raise PyrovaeError(
            "the conv network needs image_shape=(channels, height, width); "
            "pass it to VAE(...) or use ",
            Param("net", "mlp"),
        )
    c, h, w = (int(s) for s in image_shape)
    if c * h * w != x_dim or h % 4 or w % 4:
        raise PyrovaeError(
            f"the conv network needs height and width divisible by 4 and "
            f"channels*height*width == x_dim; got image_shape={tuple(image_shape)}, x_dim={x_dim}"
        )
    return c, h, w


class _OnImages(nn.Module):
    """Base of the convolutional networks: flat vectors in and out, images inside."""

    def __init__(self, image_shape: Sequence[int], activation: str) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.act = lookup(ACTIVATIONS, activation, "activation")

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Flat inputs ``(..., C*H*W)`` as a batch of images ``(N, C, H, W)``."""
        return x.reshape(-1, *self.image_shape)


class ConvEncoder(_OnImages):
    """Two stride-2 convolutions and a fully connected head, for small images.

    Takes flat inputs ``(..., C*H*W)`` and returns ``(..., out_dim)``.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        channels: tuple[int, int] = (32, 64),
    ) -> None:
        super().__init__(image_shape, activation)
        c, h, w = self.image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1),
            self.act(),
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1),
            self.act(),
        )
        self.head = MLP(channels[1] * (h // 4) * (w // 4), out_dim, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.images(x))
        return self.head(h.flatten(1)).reshape(*x.shape[:-1], -1)


class ConvClassifier(_OnImages):
    """A small convolutional classifier of flat images: ``(..., C*H*W)`` to logits.

    Dropout on the input pixels, two 5x5 convolutions each followed by 2x2 max-pooling
    (32 and 64 channels), dropout, then a hidden layer of 128 units: the classifier
    q(y | x) of the semi-supervised VAE (:mod:`pyrovae.models.semisupervised`), where a
    hundred labels must generalise. Dropout is active in ``train()`` mode only.

    Parameters
    ----------
    image_shape
        ``(channels, height, width)``, height and width at least 4.
    out_dim
        Number of classes.
    activation
        A key of ``ACTIVATIONS``.
    dropout
        Probability of dropping an input pixel, and a unit before the head (0.5).
    """

    def __init__(
        self, image_shape: Sequence[int], out_dim: int, activation: str = "relu", dropout=0.5
    ) -> None:
        super().__init__(image_shape, activation)
        c, h, w = self.image_shape
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Conv2d(c, 32, 5, padding=2),
            self.act(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            self.act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * (h // 4) * (w // 4), 128),
            self.act(),
            nn.Linear(128, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.images(x)).reshape(*x.shape[:-1], -1)


class ConvDecoder(_OnImages):
    """A fully connected stem and two stride-2 transposed convolutions.

    Returns ``(..., out_channels*H*W)`` laid out channel-major, which is the layout every
    likelihood expects: ``out_channels`` blocks of ``H*W`` parameters.
    """

    def __init__(
        self,
        z_dim: int,
        image_shape: Sequence[int],
        out_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        channels: tuple[int, int] = (64, 32),
    ) -> None:
        super().__init__(image_shape, activation)
        _, h, w = self.image_shape
        if out_dim % (h * w):
            raise PyrovaeError(f"decoder output size {out_dim} is not a multiple of {h}*{w}")
        self.stem_shape = (channels[0], h // 4, w // 4)
        stem = MLP(z_dim, channels[0] * (h // 4) * (w // 4), hidden, activation)
        self.stem = nn.Sequential(stem, self.act())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels[0], channels[1], 4, stride=2, padding=1),
            self.act(),
            nn.ConvTranspose2d(channels[1], out_dim // (h * w), 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z.reshape(-1, z.shape[-1])).reshape(-1, *self.stem_shape)
        return self.deconv(h).reshape(*z.shape[:-1], -1)


class GRUEncoder(nn.Module):
    """A bidirectional GRU over a token sequence, its last states to ``out_dim`` numbers.

    Takes padded token sequences ``(..., L)`` (PAD = 0 after each sequence's end) and
    returns ``(..., out_dim)``: the final states of the forward and backward passes, read
    over each sequence's own length (packed, so padding never enters them), through a
    linear head.

    Parameters
    ----------
    vocab_size
        Tokens in the vocabulary, the special ones included.
    out_dim
        Size of the output: the parameters of q(z | x).
    hidden_size
        Size of each direction's GRU state.
    embedding_dim
        Size of the token embedding.
    """

    def __init__(
        self, vocab_size: int, out_dim: int, hidden_size: int = 256, embedding_dim: int = 64
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.long().reshape(-1, x.shape[-1])
        lengths = (tokens != 0).sum(-1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        _, state = self.gru(packed)
        out = self.head(torch.cat([state[0], state[1]], -1))
        return out.reshape(*x.shape[:-1], -1)


NetBuilder = Callable[..., tuple[nn.Module, nn.Module]]


def build_mlp(
    x_dim: int,
    z_dim: int,
    encoder_out: int,
    decoder_out: int,
    hidden: Sequence[int] = (400,),
    activation: str = "relu",
    image_shape: Sequence[int] | None = None,
    vocab_size: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Encoder ``x_dim -> hidden -> encoder_out`` and decoder ``z_dim -> hidden[::-1] -> out``."""
    _vectors_only("mlp", vocab_size)
    encoder = MLP(x_dim, encoder_out, hidden, activation)
    decoder = MLP(z_dim, decoder_out, tuple(reversed(hidden)), activation)
    return encoder, decoder


def build_conv(
    x_dim: int,
    z_dim: int,
    encoder_out: int,
    decoder_out: int,
    hidden: Sequence[int] = (400,),
    activation: str = "relu",
    image_shape: Sequence[int] | None = None,
    vocab_size: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """A small convolutional encoder and decoder for images (e.g. 1x28x28)."""
    _vectors_only("conv", vocab_size)
    shape = _check_image_shape(image_shape, x_dim)
    encoder = ConvEncoder(shape, encoder_out, hidden, activation)
    decoder = ConvDecoder(z_dim, shape, decoder_out, tuple(reversed(hidden)), activation)
    return encoder, decoder


def build_gru(
    x_dim: int,
    z_dim: int,
    encoder_out: int,
    decoder_out: int,
    hidden: Sequence[int] = (256,),
    activation: str = "relu",
    image_shape: Sequence[int] | None = None,
    vocab_size: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """For token sequences: a bidirectional GRU encoder of ``hidden[0]`` units per
    direction, and a linear decoder from z to the likelihood's context (the recurrent
    network that generates the tokens is the autoregressive likelihood's)."""
    if vocab_size is None:
        raise PyrovaeError(
            "the gru network reads token sequences: train on a sequence dataset (.smi, "
            ".txt, or a CSV column of strings) or use ",
            Param("net", "mlp"),
        )
    if len(hidden) != 1:
        raise PyrovaeError(
            "the gru networks take one size, that of their GRUs; got ",
            Param("hidden", tuple(hidden)),
        )
    encoder = GRUEncoder(vocab_size, encoder_out, int(hidden[0]))
    decoder = MLP(z_dim, decoder_out, (), activation)
    return encoder, decoder


def _vectors_only(net: str, vocab_size: int | None) -> None:
    if vocab_size is not None:
        raise PyrovaeError(
            f"the {net} network reads vectors of numbers, not token sequences; use ",
            Param("net", "gru"),
        )


@dataclass(frozen=True)
class Networks:
    """An encoder/decoder pair, as ``NETS`` names it.

    Attributes
    ----------
    build
        ``build(x_dim, z_dim, encoder_out, decoder_out, hidden, activation, image_shape)``
        returns ``(encoder, decoder)``.
    flat_inputs
        Whether the encoder takes any flat input size, so that a label can be appended
        to x (a conditional VAE); a conv encoder takes images only.
    reads_tokens
        Whether the encoder reads token ids (sequences) rather than numbers, so that it
        cannot encode the VampPrior's real-valued pseudo-inputs.
    """

    build: NetBuilder
    flat_inputs: bool
    reads_tokens: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
        return self.build(*args, **kwargs)


NETS: dict[str, Networks] = {
    "mlp": Networks(build_mlp, flat_inputs=True),
    "conv": Networks(build_conv, flat_inputs=False),
    "gru": Networks(build_gru, flat_inputs=False, reads_tokens=True),
}


def _orthogonal(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.orthogonal_(layer.weight)
        elif isinstance(layer, nn.GRU):
            for name, weight in layer.named_parameters():
                if name.startswith("weight"):
                    nn.init.orthogonal_(weight)


#: How the networks' weights start: torch's default, or orthogonal matrices (as the
#: MIWAE authors initialise theirs; measured better on the breast-cancer table).
INITS: dict[str, Callable[[nn.Module], None]] = {
    "default": lambda module: None,
    "orthogonal": _orthogonal,
}


def _mlp_classifier(
    x_dim: int, classes: int, hidden: tuple[int, ...], activation: str, image_shape: Any
) -> nn.Module:
    return MLP(x_dim, classes, hidden, activation)


def _conv_classifier(
    x_dim: int, classes: int, hidden: tuple[int, ...], activation: str, image_shape: Any
) -> nn.Module:
    shape = tuple(int(s) for s in image_shape or ())
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != x_dim or min(shape[1:]) < 4:
        raise PyrovaeError(
            "the conv classifier needs image_shape=(channels, height, width) of at least "
            f"4x4 pixels matching x_dim={x_dim}; got {image_shape}: use ",
            Param("classifier", "mlp"),
        )
    return ConvClassifier(shape, classes, activation)


#: The networks of q(y | x), by name: ``build(x_dim, K, hidden, activation, image_shape)``.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp_classifier,
    "conv": _conv_classifier,
}
