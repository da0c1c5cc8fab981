"""The model contract: every built-in model through fit, a run folder, a rebuild, log p(x)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pyrovae
from pyrovae.models.protocol import DECLARATIONS, Contract, Model, contract_of
from pyrovae.models.variants import build_vae

X_DIM = 16


def _x(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(
        torch.full((n, X_DIM), 0.3), generator=torch.Generator().manual_seed(seed)
    )


def _y(n: int = 24) -> torch.Tensor:
    return torch.arange(n) % 3


SMALL = {"x_dim": X_DIM, "z_dim": 3, "hidden": (8,)}
#: Every built-in model: how to build it, its training data, its held-out data.
MODELS = {
    "vae": (lambda: pyrovae.VAE(**SMALL), lambda: _x(), lambda: _x(12, 1)),
    "conditional": (
        lambda: pyrovae.VAE(**SMALL, num_classes=3),
        lambda: (_x(), _y()),
        lambda: (_x(12, 1), _y(12)),
    ),
    "hierarchical": (
        lambda: pyrovae.VAE(**{**SMALL, "z_dim": (3, 2)}),
        lambda: _x(),
        lambda: _x(12, 1),
    ),
    "m2": (
        lambda: pyrovae.SemiSupervisedVAE(**SMALL, num_classes=3, classifier="mlp"),
        lambda: [(_x(),), (_x(6, 2), _y(6))],
        lambda: _x(12, 1),
    ),
    "clusters": (
        lambda: pyrovae.ClusterVAE(**SMALL, clusters=3),
        lambda: _x(),
        lambda: _x(12, 1),
    ),
    "vq": (
        lambda: pyrovae.VAE(**SMALL, posterior="vq", posterior_kwargs={"codes": 4, "code_dim": 1}),
        lambda: _x(),
        lambda: _x(12, 1),
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_built_in_model_keeps_the_contract(name, tmp_path):
    build, train, heldout = MODELS[name]
    model = build()
    contract = contract_of(model)
    assert isinstance(contract, Contract) and contract.owner is model
    assert contract.config == model.config and contract.check_data is not None
    run = tmp_path / name
    history = pyrovae.fit(
        model, train(), validation=heldout(), epochs=1, progress=False, run_dir=run
    )
    assert history["epoch"] == [1] and torch.isfinite(torch.tensor(history["val_elbo"])).all()
    # Saved, and rebuilt from the folder's config alone
    loaded = pyrovae.load(run)
    assert type(loaded) is type(model)
    assert type(build_vae(**model.config)) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # log p(x) of the rebuilt model, on the held-out data the folder kept
    data = pyrovae.load_run(run).heldout
    torch.manual_seed(0)
    est = pyrovae.log_marginal_likelihood(loaded.model, loaded.guide, data, num_samples=4)
    assert est.per_datapoint.shape == (12,) and torch.isfinite(est.per_datapoint).all()


def test_what_each_built_in_model_declares():
    declared = {
        name: {d: getattr(contract_of(build()), d) for d in DECLARATIONS[:4]}
        for name, (build, _, _) in MODELS.items()
    }
    assert all(d["mixed_precision_safe"] for d in declared.values())
    assert declared["m2"]["discrete_latent"] == "y"
    assert declared["clusters"] == {
        "mixed_precision_safe": True,
        "enumerates_in_model": True,
        "discrete_latent": "c",
        "default_epochs": 40,
    }
    assert declared["vae"]["default_epochs"] == 20 and not declared["vae"]["enumerates_in_model"]


def test_a_users_model_declares_what_it_has_and_gets_the_defaults():
    class Plain(nn.Module):
        def model(self, x):
            pass

        def guide(self, x):
            pass

        def check_data(self, x):
            raise pyrovae.PyrovaeError("no")

    contract = contract_of(Plain())
    assert contract.check_data is not None and contract.end_of_epoch is None
    assert (contract.mixed_precision_safe, contract.default_epochs) == (False, 20)
    pair = contract_of((Plain().model, Plain().guide))
    assert pair.owner is None and pair.check_data is None
    with pytest.raises(pyrovae.PyrovaeError, match="model and guide methods"):
        contract_of(nn.Linear(1, 1))


def test_a_typo_of_a_declaration_is_not_silent():
    with pytest.warns(UserWarning, match="end_of_epoc looks like a typo of .*end_of_epoch"):

        class Typo(Model):
            def end_of_epoc(self, epoch, data):
                pass

    class User(nn.Module):
        discrete_latents = "y"

        def model(self):
            pass

        def guide(self):
            pass

    with pytest.warns(UserWarning, match="discrete_latents looks like a typo"):
        contract_of(User())


def test_a_class_declares_before_there_is_a_model():
    from pyrovae.models.protocol import declared

    assert declared(pyrovae.ClusterVAE, "default_epochs") == 40
    assert declared(pyrovae.SemiSupervisedVAE, "discrete_latent") == "y"
    assert declared(nn.Linear, "default_epochs") == 20  # the contract's default
    with pytest.raises(KeyError, match="no declaration"):
        declared(pyrovae.VAE, "epochs")
