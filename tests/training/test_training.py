import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn

import pyrovae
from pyrovae import VAE, PyrovaeError
from pyrovae.training import resolve_device


def test_elbo_goes_up_on_the_sample(sample):
    vae = VAE(z_dim=10, hidden=(64,))
    history = pyrovae.fit(
        vae,
        sample.train[:2000],
        epochs=4,
        batch_size=100,
        lr=3e-3,
        progress=False,
        validation=sample.test[:500],
    )
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["train_elbo"][-1] > history["train_elbo"][0] + 20
    assert history["val_elbo"][-1] > history["val_elbo"][0] + 10
    for a, b, c in zip(
        history["val_elbo"], history["val_log_likelihood"], history["val_kl"], strict=True
    ):
        assert a == pytest.approx(b - c, abs=1e-3)
        assert c > 0


def test_fit_accepts_any_pyro_elbo(sample):
    vae = VAE(z_dim=4, hidden=(32,))
    history = pyrovae.fit(
        vae,
        sample.train[:256],
        epochs=1,
        batch_size=64,
        loss=TraceMeanField_ELBO(),
        progress=False,
    )
    assert history["steps"] == [4]


def test_same_seed_same_result(sample):
    def run():
        pyro.clear_param_store()
        vae = VAE(z_dim=4, hidden=(16,))
        torch.manual_seed(0)
        vae.load_state_dict(VAE(z_dim=4, hidden=(16,)).state_dict())
        h = pyrovae.fit(vae, sample.train[:300], epochs=2, batch_size=50, progress=False, seed=3)
        return h["train_elbo"], vae.state_dict()

    (h1, s1), (h2, s2) = run(), run()
    assert h1 == h2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


class HandWritten(nn.Module):
    """A user's own VAE in raw Pyro: pyro.param for a prior scale, pyro.module for nets."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(784, 2 * 3)
        self.dec = nn.Linear(3, 784)

    def model(self, x):
        pyro.module("dec", self.dec)
        s = pyro.param("prior_scale", torch.ones(3), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), s).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("enc", self.enc)
        with pyro.plate("data", x.shape[0]):
            loc, raw = self.enc(x).split(3, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


def test_a_user_written_model_and_guide_train_through_fit(sample):
    user = HandWritten()
    before = user.dec.weight.detach().clone()
    history = pyrovae.fit(
        (user.model, user.guide),
        sample.train[:1000],
        epochs=3,
        batch_size=100,
        lr=1e-2,
        progress=False,
        validation=sample.test[:200],
    )
    assert history["train_elbo"][-1] > history["train_elbo"][0]
    assert not torch.equal(before, user.dec.weight)
    assert not torch.equal(pyro.param("prior_scale").detach(), torch.ones(3))
    assert len(history["val_elbo"]) == 3


def test_callback_sees_each_epoch_and_can_stop(sample):
    seen = []

    def callback(state):
        seen.append((state.epoch, len(state.history["epoch"])))
        return state.epoch < 2

    history = pyrovae.fit(
        VAE(z_dim=2, hidden=(8,)),
        sample.train[:64],
        epochs=5,
        batch_size=32,
        progress=False,
        callback=callback,
    )
    assert seen == [(1, 1), (2, 2)] and history["epoch"] == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -1}, "epochs must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"binarize": "sometimes"}, "unknown binarization 'sometimes'"),
        ({"loss": "nope"}, "unknown loss"),
        ({"device": "tpu9"}, "unknown device"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        pyrovae.fit(VAE(z_dim=2, hidden=(4,)), torch.rand(8, 784), progress=False, **kwargs)


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        (torch.full((4, 784), float("nan")), {}, "NaN or infinite"),
        (torch.full((4, 784), 2.0), {}, r"values in \[0, 1\]"),
        (torch.full((4, 784), 0.5), {"binarize": "none"}, "needs binary data"),
        (torch.zeros(0, 784), {}, "empty"),
        (torch.zeros(4, 28, 28), {}, r"shape \(N, 784\)"),
        ("not data", {}, "tensor, array, tuple, dict, Dataset or iterable"),
    ],
)
def test_bad_data_are_refused_before_training(data, kwargs, match):
    with pytest.raises(PyrovaeError, match=match):
        pyrovae.fit(VAE(z_dim=2, hidden=(4,)), data, progress=False, **kwargs)


def test_fit_needs_a_model_and_guide():
    with pytest.raises(PyrovaeError, match="model and guide"):
        pyrovae.fit(object(), torch.rand(4, 784), progress=False)


def test_cuda_asked_for_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PyrovaeError, match="no usable GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_fast_svi_matches_pyros_svi(sample):
    """One fused optimiser over all parameters takes the same steps as Pyro's SVI."""
    from pyro.infer import SVI

    from pyrovae.training import FastSVI

    x = torch.bernoulli(sample.train[:64])
    results = []
    for cls in (SVI, FastSVI):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(z_dim=3, hidden=(16,))
        svi = cls(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), pyrovae.Trace_ELBO())
        pyro.set_rng_seed(1)
        losses = [svi.step(x) for _ in range(5)]
        results.append((losses, [p.detach().clone() for p in vae.parameters()]))
    (l1, p1), (l2, p2) = results
    assert l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(p1, p2, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_fast_svi_finds_parameters_created_later():
    from pyrovae.training import FastSVI

    def model(x):
        a = pyro.param("a", torch.tensor(0.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(a, 1.0), obs=x)
            if "b" in pyro.get_param_store() or len(x) > 3:
                b = pyro.param("b", torch.tensor(0.0))
                pyro.sample("y", dist.Normal(b, 1.0), obs=x)

    def guide(x):
        pass

    svi = FastSVI(model, guide, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO())
    svi.step(torch.ones(2))
    svi.step(torch.ones(5))
    svi.step(torch.ones(5))
    assert float(pyro.param("a").detach()) > 0 and float(pyro.param("b").detach()) > 0


def test_mixed_precision_runs_networks_in_bfloat16_and_densities_in_float32(sample):
    vae = VAE(z_dim=4, hidden=(32,))
    x = torch.bernoulli(sample.train[:8])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vae.decoder(torch.zeros(2, 4)).dtype == torch.bfloat16
        assert vae.decode(torch.zeros(2, 4)).base_dist.logits.dtype == torch.float32
        assert vae.encode(x).base_dist.loc.dtype == torch.float32
    history = pyrovae.fit(
        vae,
        sample.train[:256],
        epochs=2,
        batch_size=64,
        lr=3e-3,
        progress=False,
        precision="bfloat16",
        validation=sample.test[:64],
    )
    assert all(math.isfinite(v) for v in history["train_elbo"] + history["val_elbo"])


def test_callback_can_stop_in_the_middle_of_an_epoch(sample):
    seen = []

    def callback(state):
        seen.append((state.epoch, state.step))
        return not (state.epoch == 1 and state.step == 2)

    history = pyrovae.fit(
        VAE(z_dim=2, hidden=(8,)),
        sample.train[:256],
        epochs=3,
        batch_size=32,
        progress=False,
        callback=callback,
        checkpoint_every=2,
    )
    assert seen == [(0, 2), (0, 4), (0, 6), (1, 0), (1, 2)] and history["epoch"] == [1]
