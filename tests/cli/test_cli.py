import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pyrovae.cli import main

TINY = ["--epochs", "1", "--z-dim", "4", "--hidden", "16", "--no-progress"]


def test_train_end_to_end(tmp_path, tiny_npz, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_npz),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--z-dim",
                "4",
                "--hidden",
                "32,16",
                "--batch-size",
                "64",
                "--no-progress",
            ]
        )
        == 0
    )
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "checkpoint.pt",
        "history.json",
        "reconstructions.png",
        "samples.png",
    } <= names
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2] and len(history["val_elbo"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden"] == [32, 16] and config["train"]["batch_size"] == 64
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_python_dash_m_and_console_script(tmp_path, tiny_npz):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyrovae",
            "train",
            "--dataset",
            str(tiny_npz),
            "--out",
            str(out),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "checkpoint.pt").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "pyrovae", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for flag in (
        "--dataset",
        "--data-dir",
        "--z-dim",
        "--hidden",
        "--epochs",
        "--batch-size",
        "--lr",
        "--binarize",
        "--seed",
        "--device",
        "--out",
    ):
        assert flag in help_text


def _one_line_error(capsys, code, expected_code, match):
    err = capsys.readouterr().err.strip()
    assert code == expected_code
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and match in err, err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--prior", "cauchy"], "invalid choice: 'cauchy'"),
        (["--binarize", "maybe"], "invalid choice: 'maybe'"),
        (["--epochs", "-3"], "expected an integer >= 0"),
        (["--batch-size", "0"], "expected a positive integer"),
        (["--hidden", "4x4"], "comma-separated"),
        (["--lr", "fast"], "expected a positive number"),
    ],
)
def test_bad_options_are_one_line_usage_errors(tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "r"), *args])
    _one_line_error(capsys, exit_info.value.code, 2, match)
    assert not (tmp_path / "r").exists()


def _write(path, array):
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize(
    ("make", "extra", "match"),
    [
        (lambda p: str(p / "missing.npy"), [], "does not exist"),
        (lambda p: _write(p / "nan.npy", np.full((20, 784), np.nan)), [], "NaN"),
        (
            lambda p: _write(p / "big.npy", np.full((20, 784), 3.0)),
            ["--binarize", "none"],
            "needs binary data",
        ),
        (lambda p: _write(p / "big.npy", np.full((20, 784), 3.0)), [], r"values in [0, 1]"),
        (
            lambda p: _write(p / "grey.npy", np.full((20, 784), 0.5)),
            ["--binarize", "none"],
            "needs binary data",
        ),
        (lambda p: "sample", ["--device", "cuda:7"], "CUDA"),
        (
            lambda p: "sample",
            ["--free-bits-per-unit"],
            "--free-bits-per-unit shares out free bits, but --free-bits is 0",
        ),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, monkeypatch, make, extra, match):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "r"
    code = main(["train", "--dataset", make(tmp_path), "--out", str(out), *TINY, *extra])
    _one_line_error(capsys, code, 1, match)
    assert not out.exists()


def test_an_existing_run_is_not_overwritten(tmp_path, tiny_npz, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_text("precious")
    code = main(["train", "--dataset", str(tiny_npz), "--out", str(out), *TINY])
    _one_line_error(capsys, code, 1, "--force")
    assert (out / "checkpoint.pt").read_text() == "precious"
    assert main(["train", "--dataset", str(tiny_npz), "--out", str(out), "--force", *TINY]) == 0


def test_evaluate_writes_reproducible_metrics(run_dir, capsys):
    args = ["evaluate", str(run_dir), "--num-samples", "20", "--device", "cpu"]
    assert main(args) == 0
    first = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_elbo", "test_nll", "test_nll_stderr", "num_samples"):
        assert key in first
    assert first["num_samples"] == 20 and first["n_test"] == 60
    assert 0 < first["test_nll"] <= first["test_elbo"]  # positive nats, NLL <= -ELBO
    assert first["test_nll_bits_per_dim"] == pytest.approx(first["test_nll"] / (784 * np.log(2)))
    out = capsys.readouterr().out
    assert "NLL (IS, K=20)" in out and "bits/dim" in out
    assert main(args) == 0
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["test_nll"] == first["test_nll"]


def test_evaluate_with_ais_reports_both(run_dir, capsys):
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--num-samples",
                "10",
                "--estimator",
                "ais",
                "--ais-chains",
                "2",
                "--ais-steps",
                "3",
            ]
        )
        == 0
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["estimator"] == "ais" and "test_nll_is" in metrics
    assert "NLL (AIS, 2 chains x 3 steps)" in capsys.readouterr().out


def test_evaluate_bad_input(tmp_path, run_dir, capsys):
    code = main(["evaluate", str(tmp_path / "nothing")])
    _one_line_error(capsys, code, 1, "does not exist")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(run_dir), "--num-samples", "0"])
    _one_line_error(capsys, exit_info.value.code, 2, "expected a positive integer")
    (run_dir / "checkpoint.pt").write_bytes(b"broken")
    code = main(["evaluate", str(run_dir)])
    _one_line_error(capsys, code, 1, "unreadable or corrupt")


# Every registry name, from the command line: each row trains one epoch on the tiny data
# and evaluates to a finite NLL. Together the rows use every prior, likelihood, guide and
# loss at least once.
SPREAD = [
    ("standard", "bernoulli", "diagonal", "trace", []),
    ("diagonal", "continuous-bernoulli", "lowrank", "meanfield", []),
    ("mog", "gaussian", "iaf", "iwae", ["--num-particles", "3"]),
    ("vamp", "bernoulli", "iaf", "iwae", ["--num-particles", "5"]),
    ("flow", "laplace", "diagonal", "trace", ["--beta", "0.5", "--kl-warmup", "1"]),
    ("vamp", "discretized-logistic", "diagonal", "trace", ["--free-bits", "0.1"]),
    ("diagonal", "categorical", "diagonal", "meanfield", ["--hidden", "8"]),
    ("mog", "poisson", "lowrank", "trace", []),
    ("flow", "negative-binomial", "iaf", "meanfield", ["--free-bits", "0.5"]),
    ("standard", "student-t", "diagonal", "trace", []),
    ("standard", "continuous-bernoulli", "vq", "iwae", ["--guide-arg", "codes=16"]),
    ("codebook", "bernoulli", "vq", "trace", ["--guide-arg", "codes=16"]),
    ("autoregressive", "bernoulli", "vq", "trace", ["--guide-arg", "codes=16"]),
    (
        "standard",
        "columns",
        "diagonal",
        "trace",
        ["--likelihood-arg", "spec=student-t:0-391,laplace:392-783"],
    ),
]


@pytest.mark.parametrize(("prior", "likelihood", "guide", "loss", "extra"), SPREAD)
def test_every_registry_name_trains_and_evaluates(
    tmp_path, tiny_npz, prior, likelihood, guide, loss, extra
):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        str(tiny_npz),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--z-dim",
        "4",
        "--hidden",
        "32",
        "--no-progress",
        "--prior",
        prior,
        "--likelihood",
        likelihood,
        "--guide",
        guide,
        "--loss",
        loss,
        *extra,
    ]
    assert main(args) == 0
    assert main(["evaluate", str(out), "--num-samples", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test_nll"]) and np.isfinite(metrics["test_elbo"])
    assert metrics["test_nll"] <= metrics["test_elbo"] + 1e-3


def test_spread_covers_every_registry_name():
    from pyrovae.inference.objectives import LOSSES
    from pyrovae.parts.guides import GUIDES
    from pyrovae.parts.likelihoods import LIKELIHOODS
    from pyrovae.parts.priors import CODE_PRIORS, PRIORS

    # The likelihoods of sequences train on sequence files: test_sequence_commands.py.
    vectors = {name for name, cls in LIKELIHOODS.items() if not cls.models_sequences}
    for column, names in enumerate(({*PRIORS, *CODE_PRIORS}, vectors, GUIDES, LOSSES)):
        assert {row[column] for row in SPREAD} == set(names)


def test_part_arguments_reach_the_parts(tmp_path, tiny_npz):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        str(tiny_npz),
        "--out",
        str(out),
        *TINY,
        "--prior",
        "mog",
        "--prior-arg",
        "num_components=3",
        "--likelihood",
        "gaussian",
        "--likelihood-arg",
        "scale=decoder",
        "--guide",
        "lowrank",
        "--guide-arg",
        "rank=2",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["prior_kwargs"] == {"num_components": 3}
    assert config["model"]["likelihood_kwargs"] == {"scale": "decoder"}
    assert config["data"]["binarize"] == "none"  # auto: what a Gaussian models
    import pyrovae

    vae = pyrovae.load(out)
    assert vae.prior.logits.shape == (3,) and vae.likelihood.channels == 2


def test_bad_part_arguments(tmp_path, tiny_npz, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            str(tiny_npz),
            "--out",
            str(out),
            *TINY,
            "--prior-arg",
            "colour=blue",
        ]
    )
    _one_line_error(capsys, code, 1, "unexpected keyword argument 'colour'")
    code = main(
        [
            "train",
            "--dataset",
            str(tiny_npz),
            "--out",
            str(out),
            *TINY,
            "--loss",
            "iwae",
            "--free-bits",
            "1",
        ]
    )
    _one_line_error(capsys, code, 1, "free bits")
    assert not out.exists()


def test_evaluate_with_a_memory_budget(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "20", "--memory-budget", "2MB"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["num_samples"] == 20
    code = main(["evaluate", str(run_dir), "--memory-budget", "plenty"])
    _one_line_error(capsys, code, 1, "cannot read memory size")


def test_sample_interpolate_encode_score_impute_report(run_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["sample", str(run_dir), "--n", "9", "--out", str(out / "s.png")]) == 0
    assert (
        main(
            [
                "interpolate",
                str(run_dir),
                "--out",
                str(out / "i.png"),
                "--steps",
                "5",
                "--pairs",
                "2",
            ]
        )
        == 0
    )
    assert main(["encode", str(run_dir), "--out", str(out / "z.npy")]) == 0
    assert main(["encode", str(run_dir), "--out", str(out / "ztr.npy"), "--split", "train"]) == 0
    assert main(["score", str(run_dir), "--out", str(out / "s.npy"), "--num-samples", "5"]) == 0
    assert (
        main(
            [
                "impute",
                str(run_dir),
                "--out",
                str(out / "f.npy"),
                "--num-samples",
                "5",
                "--figure",
                str(out / "f.png"),
            ]
        )
        == 0
    )
    assert main(["report", str(run_dir)]) == 0
    for png in ("s.png", "i.png", "f.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert np.load(out / "z.npy").shape == (60, 4) and np.load(out / "ztr.npy").shape == (240, 4)
    scores = np.load(out / "s.npy")
    assert scores.shape == (60,) and np.isfinite(scores).all() and (scores > 0).all()
    filled = np.load(out / "f.npy")
    assert filled.shape == (60, 784) and np.isfinite(filled).all()
    assert (run_dir / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["sample", "{run}", "--out", "{tmp}/x.jpg"], "must end in .png"),
        (["encode", "{run}", "--out", "{tmp}/no/such/z.npy"], "does not exist"),
        (
            ["impute", "{run}", "--out", "{tmp}/f.npy", "--mask", "{tmp}/none.npy"],
            "cannot read --mask",
        ),
    ],
)
def test_using_a_run_bad_input(run_dir, tmp_path, capsys, args, match):
    args = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    _one_line_error(capsys, main(args), 1, match)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, tiny_npz, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(tiny_npz), "--out", str(out), *TINY, "--tensorboard"])
    _one_line_error(capsys, code, 1, "pip install tensorboard")
    assert not out.exists()


def test_tensorboard_logs_every_epoch(tmp_path, tiny_npz, monkeypatch):
    import sys
    import types

    logged = []

    class Writer:
        def __init__(self, log_dir):
            logged.append(("dir", log_dir))

        def add_scalar(self, key, value, step):
            logged.append((key, step))

        def flush(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tiny_npz),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--z-dim",
                "4",
                "--hidden",
                "16",
                "--no-progress",
                "--tensorboard",
            ]
        )
        == 0
    )
    assert logged[0] == ("dir", str(out / "tensorboard"))
    assert ("train_elbo", 1) in logged and ("val_elbo", 2) in logged


def test_sample_writes_the_images_themselves_as_npy(run_dir, tmp_path, capsys):
    out = tmp_path / "samples.npy"
    assert main(["sample", str(run_dir), "--out", str(out), "--n", "5", "--seed", "3"]) == 0
    images = np.load(out)
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    again = tmp_path / "again.npy"
    assert main(["sample", str(run_dir), "--out", str(again), "--n", "5", "--seed", "3"]) == 0
    assert np.array_equal(images, np.load(again))  # seeded
    capsys.readouterr()
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "s.jpg")]) == 1
    assert "must end in .png (a grid) or .npy (the samples)" in capsys.readouterr().err


def test_a_conditional_run_trains_evaluates_samples_resumes_and_reports(tmp_path, capsys):
    run = tmp_path / "cond"
    small = ["--z-dim", "4", "--hidden", "16", "--no-progress", "--seed", "1"]
    assert main(["train", "--conditional", "--epochs", "1", "--out", str(run), *small]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["labels"] == "condition" and config["model"]["num_classes"] == 10
    assert main(["evaluate", str(run), "--num-samples", "3"]) == 0
    assert "NLL | y" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["conditional_on"] == "y" and math.isfinite(metrics["test_nll"])
    out = tmp_path / "threes.npy"
    assert main(["sample", str(run), "--label", "3", "--n", "4", "--out", str(out)]) == 0
    assert np.load(out).shape == (4, 1, 28, 28)
    assert main(["encode", str(run), "--out", str(tmp_path / "z.npy")]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    page = (run / "report.html").read_text()
    assert "one class per column" in page
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "10", "--out", str(out)]) == 1
    assert "conditional on classes 0..9" in capsys.readouterr().err
    assert main(["interpolate", str(run), "--out", str(tmp_path / "i.png")]) == 1


def test_conditional_needs_labels_and_label_needs_a_conditional_run(
    tmp_path, tiny_npz, run_dir, capsys
):
    out = tmp_path / "x"
    assert main(["train", "--conditional", "--dataset", str(tiny_npz), "--out", str(out)]) == 1
    assert "no labels to condition on" in capsys.readouterr().err and not out.exists()
    assert main(["sample", str(run_dir), "--label", "1", "--out", str(tmp_path / "s.png")]) == 1
    assert "--label applies to a run with classes" in capsys.readouterr().err


def test_a_semi_supervised_run_trains_evaluates_classifies_resumes_and_reports(
    tmp_path, tiny_labelled_npz, capsys
):
    run = tmp_path / "m2"
    small = ["--z-dim", "4", "--hidden", "16", "--no-progress", "--seed", "1"]
    small += ["--dataset", str(tiny_labelled_npz)]
    assert main(["train", "--labels", "20", "--epochs", "1", "--out", str(run), *small]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["labels"] == "semi-supervised" and config["data"]["labelled"] == 20
    assert config["model"]["variant"] == "semi-supervised" and config["train"]["loss"] is None
    assert config["model"]["classifier"] == "conv"  # auto: the data are images
    assert main(["evaluate", str(run), "--num-samples", "2"]) == 0
    assert "test_accuracy: " in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and math.isfinite(metrics["test_nll"])
    assert metrics["enumerated"] == 10  # y summed out of log p(x)
    out = tmp_path / "y.npy"
    assert main(["classify", str(run), "--out", str(out)]) == 0
    classes = np.load(out)
    assert classes.shape == (metrics["n_test"],) and set(np.unique(classes)) <= set(range(10))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    assert "one class per column" in (run / "report.html").read_text()
    capsys.readouterr()
    assert main(["cluster", str(run), "--out", str(tmp_path / "c.npy")]) == 1
    assert "cluster needs a run trained with pyrovae train --clusters K" in capsys.readouterr().err
    for bad, message in (
        (["--labels", "15"], "multiple of the 10 classes"),
        (["--labels", "20", "--loss", "iwae"], "--loss does not apply"),
        (["--labels", "20", "--conditional"], "do not combine"),
        (["--classifier", "mlp"], "--classifier applies with --labels only"),
        (["--cluster-weights", "learnt"], "--cluster-weights applies with --clusters only"),
    ):
        assert main(["train", *bad, "--out", str(tmp_path / "bad"), *small]) == 1
        assert message in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_cluster_run_trains_evaluates_clusters_resumes_and_reports(tmp_path, tiny_npz, capsys):
    run = tmp_path / "clusters"
    small = ["--z-dim", "4", "--hidden", "16", "--no-progress", "--seed", "1"]
    args = ["train", "--clusters", "5", "--cluster-weights", "learnt", "--epochs", "1"]
    assert main([*args, "--out", str(run), *small]) == 0
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["clusters"] == 5 and model["learn_weights"] is True
    sized = tmp_path / "sized"  # the cluster VAE's own sizes when none are given
    assert main(["train", "--clusters", "3", "--epochs", "0", "--out", str(sized)]) == 0
    model = json.loads((sized / "config.json").read_text())["model"]
    assert (model["z_dim"], model["hidden"]) == (10, [500, 500, 2000])
    assert model["learn_weights"] is False and model["init_after"] == 20
    longer = tmp_path / "longer"  # and its own number of epochs: past init_after
    args = [
        "train",
        "--clusters",
        "3",
        "--dataset",
        str(tiny_npz),
        "--hidden",
        "8",
        "--z-dim",
        "2",
    ]
    assert main([*args, "--no-progress", "--out", str(longer)]) == 0
    assert json.loads((longer / "config.json").read_text())["train"]["epochs"] == 40
    assert len(json.loads((longer / "history.json").read_text())["epoch"]) == 40
    assert main(["evaluate", str(run), "--num-samples", "2"]) == 0
    assert "test_cluster_accuracy: " in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["test_cluster_accuracy"] <= 1 and "active_units" in metrics
    out = tmp_path / "c.npy"
    assert main(["cluster", str(run), "--out", str(out)]) == 0
    assert set(np.unique(np.load(out))) <= set(range(5))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "samples per cluster" in (run / "report.html").read_text()
    capsys.readouterr()
    assert main(["classify", str(run), "--out", str(tmp_path / "y.npy")]) == 1
    assert "classify needs a run trained with pyrovae train --labels N" in capsys.readouterr().err
    assert main(["train", "--clusters", "5", "--prior", "mog", "--out", str(tmp_path / "b")]) == 1
    assert "--prior does not apply" in capsys.readouterr().err


def test_a_hierarchical_run_trains_evaluates_resumes_reports_and_samples(
    tmp_path, tiny_npz, capsys
):
    run = tmp_path / "hvae"
    args = ["train", "--dataset", str(tiny_npz), *TINY, "--z-dim", "6,3", "--out", str(run)]
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["z_dim"] == [6, 3]
    assert main(["evaluate", str(run), "--num-samples", "3"]) == 0
    assert "latent z2:" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["active_units"]) == {"z1", "z2"} and math.isfinite(metrics["test_nll"])
    assert metrics["latent_units"] == {"z1": 6, "z2": 3}
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    assert main(["report", str(run)]) == 0 and (run / "report.html").exists()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)
    assert main(["encode", str(run), "--out", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (60, 6)  # the means of q(z1 | x)
    # Imputation weighs every layer's z (one implementation for every model)
    assert main(["impute", str(run), "--out", str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (60, 784)


def test_a_vq_run_trains_evaluates_resumes_reports_and_samples(tmp_path, tiny_npz, capsys):
    run = tmp_path / "vq"
    args = ["train", "--dataset", str(tiny_npz), *TINY, "--guide", "vq", "--out", str(run)]
    assert main([*args, "--guide-arg", "codes=8"]) == 0
    model = json.loads((run / "config.json").read_text())["model"]
    assert (model["posterior"], model["prior"], model["posterior_kwargs"]) == (
        "vq",
        "codebook",
        {"codes": 8},
    )
    assert main(["evaluate", str(run), "--num-samples", "3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # A point mass: the ELBO is the estimate, whatever K; KL is log 8 per code.
    assert metrics["test_nll"] == pytest.approx(metrics["test_elbo"], abs=1e-3)
    assert metrics["active_units"]["z"] <= 4 and metrics["kl_per_dim"] == {"z": None}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--estimator", "ais", "--num-samples", "2"]) == 1
    err = capsys.readouterr().err
    assert "discrete; estimate log p(x) by importance sampling" in err
    assert err.strip().count("\n") == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    assert main(["report", str(run)]) == 0 and (run / "report.html").exists()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)
    assert main(["encode", str(run), "--out", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (60, 4)  # the codes, laid end to end
    out = tmp_path / "refused"
    assert main([*args[:-1], str(out), "--prior", "mog"]) == 1
    assert "brings its own prior" in capsys.readouterr().err and not out.exists()


def test_one_z_size_keeps_the_config_an_int_and_vamp_is_refused_for_several(
    tmp_path, tiny_npz, run_dir, capsys
):
    assert json.loads((run_dir / "config.json").read_text())["model"]["z_dim"] == 4
    out = tmp_path / "v"
    args = ["train", "--dataset", str(tiny_npz), *TINY, "--z-dim", "4,2", "--prior", "vamp"]
    assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "VampPrior" in err and err.count("\n") == 1 and not out.exists()
