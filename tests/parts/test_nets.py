import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.parts.nets import ACTIVATIONS, MLP, NETS

VOCAB = 9  # the sequence networks' vocabulary: 4 special tokens and 5 others


def _data(name, *lead):
    """Inputs the networks read: images, or token sequences padded after their EOS."""
    if name != "gru":
        return torch.rand(*lead, 784)
    lengths = torch.randint(0, 783, lead)
    x = torch.randint(4, VOCAB, (*lead, 784))
    x[torch.arange(784) > lengths[..., None]] = 0
    x.scatter_(-1, lengths[..., None], 2)
    return x


def _build(name, *args, **kwargs):
    vocab = {"vocab_size": VOCAB} if name == "gru" else {}
    return NETS[name](*args, image_shape=(1, 28, 28), **vocab, **kwargs)


@pytest.mark.parametrize("name", sorted(NETS))
def test_nets_map_flat_inputs_with_any_leading_dims(name):
    encoder, decoder = _build(name, 784, 8, 16, 2 * 784, hidden=(32,))
    for lead in [(5,), (3, 5)]:
        assert encoder(_data(name, *lead)).shape == (*lead, 16)
        assert decoder(torch.randn(*lead, 8)).shape == (*lead, 2 * 784)


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_reach_every_parameter(name):
    encoder, decoder = _build(name, 784, 4, 8, 784, hidden=(16,))
    decoder(encoder(_data(name, 3))[..., :4]).sum().backward()
    for module in (encoder, decoder):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_layers_and_activation(activation):
    net = MLP(10, 3, (7, 5), activation)
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(10, 7), (7, 5), (5, 3)]


def test_conv_needs_image_shape():
    with pytest.raises(PyrovaeError, match="image_shape"):
        NETS["conv"](784, 8, 16, 784, image_shape=None)
    with pytest.raises(PyrovaeError, match="divisible by 4"):
        NETS["conv"](30 * 30, 8, 16, 900, image_shape=(1, 30, 30))


def test_unknown_activation_lists_choices():
    with pytest.raises(PyrovaeError, match="choose one of: elu, gelu, relu"):
        MLP(3, 3, (3,), "swish")


def test_gru_encoder_reads_each_sequence_over_its_own_length():
    encoder, _ = _build("gru", 12, 2, 4, 8, hidden=(6,))
    x = torch.tensor([[5, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    longer = torch.cat([x[:, :3], torch.zeros(1, 20, dtype=torch.long)], 1)
    assert torch.allclose(encoder(x), encoder(longer), atol=1e-6)  # padding never enters


def test_sequence_and_vector_networks_refuse_the_other_kind_of_data():
    with pytest.raises(PyrovaeError, match="net='gru'"):
        NETS["mlp"](12, 2, 4, 8, vocab_size=VOCAB)
    with pytest.raises(PyrovaeError, match="net='mlp'"):
        NETS["gru"](12, 2, 4, 8)
