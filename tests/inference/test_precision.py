"""Training precision: the setting, what auto picks, and float32 densities under bfloat16."""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

import pyrovae
from pyrovae.cli import main
from pyrovae.errors import PyrovaeError
from pyrovae.inference import precision as P
from pyrovae.models.protocol import contract_of

CPU = torch.device("cpu")
#: A small VAE on the CPU; the dataset path follows.
SMALL = ["--z-dim", "4", "--hidden", "16", "--no-progress", "--device", "cpu", "--dataset"]


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags."""

    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(P.platform, "machine", lambda: "x86_64")

    return set_flags


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("avx2", "avx512f"), "float32"),
        (("avx512f", "avx512_bf16"), "bfloat16"),
        (("amx_tile", "amx_bf16"), "bfloat16"),
        ((), "float32"),
    ],
)
def test_auto_picks_bfloat16_only_where_the_cpu_multiplies_it_natively(cpu_flags, flags, expected):
    cpu_flags(*flags)
    assert P.resolve_precision("auto", CPU) == expected
    assert P.resolve_precision("float32", CPU) == "float32"
    assert P.resolve_precision("bfloat16", CPU) == "bfloat16"


def test_unknown_precision_is_one_line():
    with pytest.raises(PyrovaeError, match="unknown precision='half'; choose one of: auto"):
        P.resolve_precision("half", CPU)


class HalfNet(nn.Module):
    """A user's program whose network output goes straight into the distributions."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 4)
        self.dec = nn.Linear(2, 6)
        self.seen: list[torch.dtype] = []

    def model(self, x):
        pyro.module("halfnet", self)
        with pyro.plate("rows", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            loc = self.dec(z)
            self.seen.append(loc.dtype)
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("halfnet", self)
        with pyro.plate("rows", x.shape[0]):
            loc, raw = self.enc(x).split(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw)).to_event(1))


def test_mixed_precision_runs_networks_in_bfloat16_and_every_site_in_float32():
    net, x = HalfNet(), torch.randn(5, 6)
    guide = P.mixed_precision(net.guide, CPU)
    model = P.mixed_precision(net.model, CPU)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert net.seen == [torch.bfloat16]  # the network ran in bfloat16 ...
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and site["name"] in ("x", "z"):  # ... sites in float32
                assert site["value"].dtype == torch.float32
                assert site["fn"].log_prob(site["value"]).dtype == torch.float32
                assert site["fn"].base_dist.loc.dtype == torch.float32


def test_full_precision_sites_keeps_float32_distributions_as_they_are():
    d = dist.Normal(torch.zeros(3), 1.0).to_event(1)
    assert P._to_float32(d) is d
    half = dist.Normal(torch.zeros(3, dtype=torch.bfloat16), 1.0).to_event(1)
    cast = P._to_float32(half)
    assert cast.base_dist.loc.dtype == torch.float32 and half.base_dist.loc.dtype == torch.bfloat16


def _train(precision: str, **kwargs):
    pyro.clear_param_store()
    torch.manual_seed(0)
    net = HalfNet()
    x = torch.randn(64, 6)
    history = pyrovae.fit(
        (net.model, net.guide),
        x,
        epochs=3,
        batch_size=16,
        progress=False,
        binarize="none",
        precision=precision,
        validation=x[:16],
        **kwargs,
    )
    return net, history


def test_bfloat16_training_of_a_user_program_tracks_float32():
    _, full = _train("float32")
    net, mixed = _train("bfloat16")
    assert torch.bfloat16 in net.seen
    assert all(math.isfinite(v) for v in mixed["train_elbo"] + mixed["val_elbo"])
    # Same seed, same draws: only the networks' rounding differs.
    for a, b in zip(full["train_elbo"], mixed["train_elbo"], strict=True):
        assert a == pytest.approx(b, rel=0.02)


def test_validation_runs_in_float32_under_bfloat16_training():
    net, _ = _train("bfloat16")
    # 3 epochs of 4 steps ran the decoder in bfloat16; each epoch's validation (and the
    # probes that find the data plate) in float32.
    assert net.seen.count(torch.bfloat16) == 12
    assert net.seen.count(torch.float32) >= 3
    full, _ = _train("float32")
    assert torch.bfloat16 not in full.seen


def test_amp_is_a_deprecated_alias():
    with pytest.warns(FutureWarning, match="amp is deprecated; pass precision='bfloat16'") as w:
        net, _ = _train("auto", amp=True)
    assert w[0].filename == __file__  # the warning points at the caller
    assert torch.bfloat16 in net.seen
    with pytest.raises(PyrovaeError, match="not both"):
        _train("float32", amp=True)


def _config(run) -> dict:
    return json.loads((run / "config.json").read_text())


def test_cli_records_the_resolved_precision_and_keeps_it_on_resume(
    tmp_path, tiny_npz, cpu_flags, capsys
):
    cpu_flags("avx512_bf16")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *SMALL, str(tiny_npz)]) == 0
    assert _config(run)["train"]["precision"] == "bfloat16"
    cpu_flags()  # the same run resumed on a CPU without native bfloat16 keeps its choice
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert _config(run)["train"]["precision"] == "bfloat16"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--precision", "float32"]) == 1
    assert "--precision does not apply with --resume" in capsys.readouterr().err


def test_cli_amp_flag_warns_and_means_bfloat16(tmp_path, tiny_npz, capsys):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--epochs", "1", *SMALL, str(tiny_npz)]
    assert main([*args, "--amp"]) == 0
    assert "--amp is deprecated; use --precision bfloat16" in capsys.readouterr().err
    assert _config(run)["train"]["precision"] == "bfloat16"
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), "--amp", "--precision", "float32"]) == 1
    assert "drop one of --amp and --precision float32" in capsys.readouterr().err
    assert not other.exists()


def test_cli_resumes_a_run_written_before_precision_existed(tmp_path, tiny_npz):
    run = tmp_path / "run"
    args = [*SMALL, str(tiny_npz), "--precision", "float32"]
    assert main(["train", "--out", str(run), "--epochs", "1", *args]) == 0
    config = _config(run)  # as pyrovae wrote it before the config had a format version
    del config["train"]["precision"], config["format_version"], config["files"]
    config["train"]["amp"] = False
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert _config(run)["train"]["precision"] == "float32"


def test_auto_trains_only_programs_that_say_they_are_safe_in_bfloat16(cpu_flags):
    # Native bfloat16 here: a user's (model, guide) pair builds its distributions in its
    # own code, so auto keeps it in float32; a VAE (or anything declaring itself safe)
    # gets bfloat16.
    cpu_flags("avx512_bf16")
    net, _ = _train("auto")
    assert torch.bfloat16 not in net.seen
    assert P.resolve_precision("auto", CPU, safe=False) == "float32"
    assert contract_of(pyrovae.VAE(z_dim=2, hidden=(4,))).mixed_precision_safe
    assert not contract_of((net.model, net.guide)).mixed_precision_safe

    class Safe(HalfNet):
        mixed_precision_safe = True

    pyro.clear_param_store()
    safe = Safe()
    pyrovae.fit(safe, torch.randn(32, 6), epochs=1, batch_size=16, binarize="none", progress=False)
    assert torch.bfloat16 in safe.seen


def test_cli_auto_keeps_a_user_model_in_float32(tmp_path, cpu_flags):
    cpu_flags("avx512_bf16")
    model = tmp_path / "net.py"
    model.write_text(
        "import pyro, torch, pyro.distributions as dist\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.enc = torch.nn.Linear(784, 4)\n"
        "    def model(self, x):\n"
        "        pyro.module('net', self)\n"
        "        with pyro.plate('d', x.shape[0]):\n"
        "            z = pyro.sample('z', dist.Normal(torch.zeros(2), 1.).to_event(1))\n"
        "            pyro.sample('x', dist.Bernoulli(logits=z.sum(-1, keepdim=True)"
        ".expand(-1, 784)).to_event(1), obs=x)\n"
        "    def guide(self, x):\n"
        "        pyro.module('net', self)\n"
        "        with pyro.plate('d', x.shape[0]):\n"
        "            loc, s = self.enc(x).split(2, -1)\n"
        "            pyro.sample('z', dist.Normal(loc, s.exp()).to_event(1))\n"
    )
    data = tmp_path / "arrays.npz"
    np.savez(data, x=(np.random.default_rng(0).random((40, 784)) < 0.3).astype("float32"))
    run = tmp_path / "run"
    args = ["train", "--model", f"{model}:Net", "--dataset", str(data), "--epochs", "1"]
    assert main([*args, "--out", str(run), "--no-progress"]) == 0
    assert _config(run)["train"]["precision"] == "float32"
