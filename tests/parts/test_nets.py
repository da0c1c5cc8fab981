import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.parts.nets import ACTIVATIONS, MLP, NETS


@pytest.mark.parametrize("name", sorted(NETS))
def test_nets_map_flat_inputs_with_any_leading_dims(name):
    encoder, decoder = NETS[name](784, 8, 16, 2 * 784, hidden=(32,), image_shape=(1, 28, 28))
    for lead in [(5,), (3, 5)]:
        assert encoder(torch.rand(*lead, 784)).shape == (*lead, 16)
        assert decoder(torch.randn(*lead, 8)).shape == (*lead, 2 * 784)


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_reach_every_parameter(name):
    encoder, decoder = NETS[name](784, 4, 8, 784, hidden=(16,), image_shape=(1, 28, 28))
    decoder(encoder(torch.rand(3, 784))[..., :4]).sum().backward()
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
