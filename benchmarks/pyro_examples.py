"""Pyro's own VAE examples, unmodified, trained and evaluated through pyrovae.

Three examples from the pyro-ppl/pyro repository are imported at run time from a
checkout given with ``--pyro-examples`` (the ``examples/`` folder); none of their code is
copied here and none of their files is edited:

* ``vae/ss_vae_M2.py`` -- the semi-supervised VAE (M2) ``SSVAE``, built as its ``main()``
  builds it (``config_enum="parallel"``, the guide wrapped in
  ``config_enumerate(..., "parallel", expand=True)``, ``TraceEnum_ELBO(max_plate_nesting=1)``,
  Adam with their default ``lr=0.00042, betas=(0.9, 0.999)``, no auxiliary loss: their
  default). Labelled ``(xs, ys)`` and unlabelled ``(xs,)`` minibatches are interleaved as
  in their ``run_inference_for_epoch`` and handed to ``pyrovae.fit`` as one re-iterable.
  Reported: validation and test accuracy of their ``ss_vae.classifier``, and log p(x) of
  held-out (unlabelled) test images with y summed out.
* ``cvae/cvae.py`` -- the conditional VAE ``CVAE(200, 500, 500, baseline_net)`` with a
  ``baseline.BaselineNet(500, 500)``; inputs/outputs are made by their ``mnist.MaskImages``
  transform, one sample dict per image. The baseline is trained for ``--baseline-epochs``
  epochs (plain PyTorch Adam, lr 1e-3, batch 128, their ``MaskedBCELoss``) as their
  ``baseline.train`` does, without its early stopping; 0 leaves it untrained. The CVAE is
  trained by ``pyrovae.fit`` on the tuple ``(inputs, outputs)`` (``model(xs, ys)``) with
  pyrovae's default loss. Reported: log p(ys | xs) of held-out images (the masked-out
  quadrants given the visible ones).
* ``scanvi/scanvi.py`` -- ``SCANVI`` on the mock data of
  ``pyro.contrib.examples.scanvi_data.get_data(dataset="mock")`` (200 cells, 17 genes, 100
  labelled; the real PBMC data set needs a download, through scvi-tools, and is not used),
  their ``MultiStepLR`` (Adam, lr 0.005, gamma 0.2, milestones ``[--scanvi-milestone]``:
  20 as theirs, 2 in ``--quick``, so that the rate changes within the run; their 60
  epochs) and ``TraceEnum_ELBO(strict_enumeration_warning=False)``, batches of 20 and
  their ``scale_factor = 1 / (batch_size * num_genes)``.
  ``--scanvi-heldout`` unlabelled cells are held out; the rest is served by their
  ``BatchDataLoader``, its batches converted as their training loop converts them (labels
  one-hot as float; an unlabelled batch is passed as ``(x,)``, i.e. ``y=None``).
  Reported: the learning rate per epoch and log p(x) (y summed out) of the held-out cells
  and of all cells.

Data: no downloads. MNIST is pyrovae's bundled sample (8,000 training and 2,000 test
images, grey levels in [0, 1], as their ``MNISTCached`` and ``CVAEMNIST`` give them).

Stubs: where a module that an example imports at the top but that this run never uses is
not installed, an empty stand-in is put in ``sys.modules`` while the example is imported
(and removed afterwards): ``visdom`` (ss_vae_M2.py, for plots) and ``scipy``
(``scanvi_data.py``, only for the PBMC data). Nothing is installed.

Independent check: for each of the first ``--n-eval`` evaluated datapoints, log p is also
estimated by Pyro's own ``pyro.infer.Importance(model, guide, num_samples=K)`` on a batch
of that one datapoint (so the batch weight is the datapoint's weight), with the networks
in ``eval()`` mode and no likelihood scaling (scANVI's ``scale_factor`` is set to 1.0 for
that estimate and restored after), taking ``get_log_normalizer()``. This shares no code
with pyrovae. Importance samples the discrete y from the guide where pyrovae sums it
exactly; both estimators agree in expectation of p, and as K grows in log p. The script
prints the mean difference of the per-datapoint estimates (pyrovae - Importance) with its
standard error and says whether it lies within 3 standard errors or within
``--tolerance`` nats. Where the guide is a poor proposal (median ESS near 1, as for
scANVI after a short run on the mock data), both log p estimates rest on their largest
weight and differ by more than their noise suggests; the script therefore also compares
the ELBO that each reports for the same datapoints (pyrovae's ``.elbo``, the mean of
Importance's log weights), which both estimate without bias whatever the ESS. Where y
is enumerated, pyrovae is also run with ``discrete="sample"`` on the compared datapoints:
then it is the same estimator as Importance, and the two should agree in distribution.

    python benchmarks/pyro_examples.py --pyro-examples /path/to/pyro/examples
    python benchmarks/pyro_examples.py --pyro-examples /path/to/pyro/examples --quick
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import pyro
import pyro.optim
import torch
import torch.nn as nn
from pyro.infer import Importance, TraceEnum_ELBO, config_enumerate

import pyrovae

RESULTS = Path(__file__).resolve().parent / "results" / "pyro_examples.json"


# --------------------------------------------------------------------------- helpers


def machine() -> str:
    """The CPU model (lscpu), or platform.processor() where lscpu is not available."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def stubbed(*names: str):
    """Empty stand-ins for the named modules that are not installed, during the block."""
    missing = {n for n in names if importlib.util.find_spec(n.split(".")[0]) is None}
    added = []
    for name in names:
        if name not in missing or name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.__doc__ = "stand-in put here by benchmarks/pyro_examples.py"
        if name == "visdom":
            module.Visdom = type("Visdom", (), {})
        sys.modules[name] = module
        added.append(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    try:
        yield added
    finally:
        for name in added:
            sys.modules.pop(name, None)


def import_example(folder: Path, module: str, stubs: tuple[str, ...] = ()):
    """Import ``module`` from ``folder`` as their scripts do (the folder on sys.path)."""
    if not folder.is_dir():
        raise SystemExit(f"no such folder: {folder} (give --pyro-examples pyro/examples)")
    sys.path.insert(0, str(folder))
    with stubbed(*stubs) as added:
        mod = importlib.import_module(module)
    if added:
        print(f"  (stand-ins for {', '.join(added)}, not installed, while importing {module})")
    return mod


def set_eval(*modules: nn.Module) -> None:
    for m in modules:
        m.eval()


@torch.no_grad()
def importance_log_p(model, guide, args: tuple, num_samples: int) -> tuple[float, ...]:
    """Pyro's Importance on one datapoint: log normaliser, effective sample size, and the
    mean log weight (an estimate of the ELBO)."""
    posterior = Importance(model, guide, num_samples=num_samples).run(*args)
    mean_log_weight = torch.stack(posterior.log_weights).mean()
    return (
        float(posterior.get_log_normalizer()),
        float(posterior.get_ESS()),
        float(mean_log_weight),
    )


def independent(model, guide, rows: list[tuple], num_samples: int, seed: int) -> dict:
    """The independent estimate for each datapoint (each a tuple of batch-of-one args)."""
    pyro.set_rng_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one datapoint at a time: thread start-up would dominate
    start = time.perf_counter()
    try:
        est = [importance_log_p(model, guide, args, num_samples) for args in rows]
    finally:
        torch.set_num_threads(threads)
    return {
        "per_datapoint": [e[0] for e in est],
        "ess": [e[1] for e in est],
        "elbo": [e[2] for e in est],
        "seconds": time.perf_counter() - start,
    }


def mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std() / math.sqrt(t.numel())) if t.numel() > 1 else float("nan")
    return float(t.mean()), se


def paired(ours: list[float], theirs: list[float], tolerance: float) -> dict:
    """Mean of the per-datapoint differences, its standard error, and the verdict."""
    diff = [a - b for a, b in zip(ours, theirs, strict=True)]
    d_mean, d_se = mean_se(diff)
    within_3se = bool(abs(d_mean) <= 3 * d_se) if d_se == d_se else False
    within_tol = bool(abs(d_mean) <= tolerance)
    return {
        "n": len(diff),
        "pyrovae_mean": mean_se(ours)[0],
        "importance_mean": mean_se(theirs)[0],
        "diff_mean": d_mean,
        "diff_se": d_se,
        "max_abs_diff": max(abs(d) for d in diff),
        "within_3se": within_3se,
        "within_tolerance": within_tol,
        "tolerance": tolerance,
        "agree": within_3se or within_tol,
        "pyrovae_per_datapoint": list(ours),
        "importance_per_datapoint": list(theirs),
    }


def compare(name: str, ours: dict, n: int, theirs: dict, tolerance: float) -> dict:
    """pyrovae's per-datapoint log p (and ELBO) against the independent estimates on the
    same first ``n`` datapoints."""
    out = paired(ours["per_datapoint"][:n], theirs["per_datapoint"], tolerance)
    ess = float(torch.tensor(theirs["ess"]).median())
    print(
        f"  [{name}] over {out['n']} datapoints: pyrovae mean log p {out['pyrovae_mean']:.3f}, "
        f"Importance (Pyro) {out['importance_mean']:.3f} (median ESS {ess:.1f}); "
        f"difference {out['diff_mean']:+.4f} +- {out['diff_se']:.4f} "
        f"(within 3 SE: {out['within_3se']}; within {tolerance} nats: "
        f"{out['within_tolerance']}) -> {'AGREE' if out['agree'] else 'DISAGREE'}"
    )
    out.update(importance_ess=theirs["ess"], importance_seconds=theirs["seconds"])
    if ours.get("elbo") is not None:
        # both are unbiased for the ELBO whatever the ESS: a check that does not rest on
        # the guide being a good proposal (pyrovae sums y, Importance samples it)
        e = paired(ours["elbo"][:n], theirs["elbo"], tolerance)
        print(
            f"  [{name}, ELBO = mean log weight] pyrovae {e['pyrovae_mean']:.3f}, "
            f"Importance {e['importance_mean']:.3f}; difference {e['diff_mean']:+.4f} +- "
            f"{e['diff_se']:.4f} -> {'AGREE' if e['agree'] else 'DISAGREE'}"
        )
        out["elbo"] = e
    return out


def compare_sampled(name: str, model, guide, data, theirs: dict, args) -> dict:
    """pyrovae with the enumerated y sampled from the guide (``discrete="sample"``), the
    very estimator that Importance is, on the same datapoints."""
    ml = pyrovae.log_marginal_likelihood(
        model,
        guide,
        data,
        num_samples=args.num_samples,
        batch_size=args.eval_batch_size,
        discrete="sample",
    )
    n = len(theirs["per_datapoint"])
    return compare(f"{name}, y sampled by both", summary(ml), n, theirs, args.tolerance)


def summary(ml) -> dict:
    """The figures of a pyrovae MarginalLikelihood."""
    per = ml.per_datapoint.detach().cpu()
    ess = ml.ess.detach().cpu()
    return {
        "n": per.numel(),
        "mean": float(ml.mean),
        "stderr": float(ml.stderr),
        "ess_median": float(ess.median()),
        "enumerated": int(getattr(ml, "enumerated", 1)),
        "per_datapoint": per.tolist(),
        "elbo": None if getattr(ml, "elbo", None) is None else ml.elbo.detach().cpu().tolist(),
    }


def history_dict(history) -> dict:
    return {k: [float(v) for v in vals] for k, vals in dict(history).items() if vals}


def on_device_of(module: nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors moved to where ``fit`` left the module (only the CPU has been tried)."""
    device = next(module.parameters()).device
    return tuple(t.to(device) for t in tensors)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def pyrovae_log_p(what: str, model, guide, data, args) -> dict:
    """pyrovae's per-datapoint estimate on ``data``, summarised and printed."""
    ml, seconds = timed(
        pyrovae.log_marginal_likelihood,
        model,
        guide,
        data,
        num_samples=args.num_samples,
        batch_size=args.eval_batch_size,
    )
    s = {**summary(ml), "num_samples": args.num_samples, "seconds": seconds}
    print(
        f"  pyrovae {what}, {s['n']} datapoints, K={args.num_samples}: "
        f"{s['mean']:.3f} +- {s['stderr']:.3f} (median ESS {s['ess_median']:.1f}, "
        f"{seconds:.1f} s)"
    )
    return s


# --------------------------------------------------------------------------- SS-VAE M2


class InterleavedBatches:
    """Labelled ``(xs, ys)`` and unlabelled ``(xs,)`` minibatches in the order of their
    ``run_inference_for_epoch``: batch i is labelled when ``i % periodic == 1`` while
    labelled batches remain. Re-iterable; each pass reshuffles (their loaders shuffle)."""

    def __init__(self, sup: tuple, unsup: torch.Tensor, batch_size: int, periodic: int):
        ds = torch.utils.data
        self.sup = ds.DataLoader(ds.TensorDataset(*sup), batch_size=batch_size, shuffle=True)
        self.unsup = ds.DataLoader(ds.TensorDataset(unsup), batch_size=batch_size, shuffle=True)
        self.periodic = periodic

    def __len__(self) -> int:
        return len(self.sup) + len(self.unsup)

    def __iter__(self):
        sup_iter, unsup_iter = iter(self.sup), iter(self.unsup)
        ctr_sup = 0
        for i in range(len(self)):
            if i % self.periodic == 1 and ctr_sup < len(self.sup):
                xs, ys = next(sup_iter)
                ctr_sup += 1
                yield (xs, ys)
            else:
                (xs,) = next(unsup_iter)
                yield (xs,)


def accuracy(classifier, xs: torch.Tensor, ys: torch.Tensor) -> float:
    with torch.no_grad():
        pred = classifier(xs)
    return float((pred.argmax(-1) == ys.argmax(-1)).float().mean())


def run_ssvae(args, data, out: dict) -> None:
    print("\n== SS-VAE M2 (examples/vae/ss_vae_M2.py) ==")
    m2 = import_example(args.pyro_examples / "vae", "ss_vae_M2", stubs=("visdom",))
    cached = importlib.import_module("utils.mnist_cached")

    n_train = args.limit or data.train.shape[0]
    x_all = data.train[:n_train].float()
    y_all = cached.fn_y_mnist(data.train_labels[:n_train], use_cuda=False)
    pyro.set_rng_seed(args.seed)  # their split shuffles with numpy
    x_sup, y_sup, x_unsup, _, x_valid, y_valid = cached.split_sup_unsup_valid(
        x_all, y_all, sup_num=args.sup_num, validation_num=args.validation_num
    )
    x_test = data.test.float()
    y_test = cached.fn_y_mnist(data.test_labels, use_cuda=False)
    n_fit = x_sup.shape[0] + x_unsup.shape[0]
    periodic = int(n_fit / (1.0 * args.sup_num))
    batches = InterleavedBatches((x_sup, y_sup), x_unsup, args.ss_batch_size, periodic)
    print(
        f"  {x_sup.shape[0]} labelled + {x_unsup.shape[0]} unlabelled training images, "
        f"{x_valid.shape[0]} validation, {x_test.shape[0]} test; {len(batches)} batches "
        f"of {args.ss_batch_size} per epoch, every {periodic}th labelled"
    )

    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    ss_vae = m2.SSVAE(z_dim=50, hidden_layers=[500], config_enum="parallel")
    guide = config_enumerate(ss_vae.guide, "parallel", expand=True)
    elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
    optim = pyro.optim.Adam({"lr": args.ss_lr, "betas": (0.9, 0.999)})
    history, fit_s = timed(
        pyrovae.fit,
        (ss_vae.model, guide),
        batches,
        epochs=args.epochs,
        lr=args.ss_lr,
        loss=elbo,
        optim=optim,
        binarize="none",
        device=args.device,
        seed=args.seed,
        progress=False,
    )
    hist = history_dict(history)
    print(
        f"  trained {args.epochs} epochs in {fit_s:.1f} s; train ELBO per epoch "
        f"{[round(v, 2) for v in hist.get('train_elbo', [])]}"
    )

    ss_vae.eval()
    x_valid, y_valid, x_test, y_test = on_device_of(ss_vae, x_valid, y_valid, x_test, y_test)
    val_acc = accuracy(ss_vae.classifier, x_valid, y_valid)
    test_acc = accuracy(ss_vae.classifier, x_test, y_test)
    print(f"  classifier accuracy: validation {val_acc:.4f}, test {test_acc:.4f}")

    x_eval = x_test[: args.n_test]
    s = pyrovae_log_p("log p(x) of unlabelled test images", ss_vae.model, guide, x_eval, args)

    n = min(args.n_eval, x_eval.shape[0])
    ind = independent(
        ss_vae.model,
        ss_vae.guide,
        [(x_eval[i : i + 1],) for i in range(n)],
        args.num_samples,
        args.seed + 1,
    )
    cmp = compare("SS-VAE log p(x)", s, n, ind, args.tolerance)
    cmp["y_sampled"] = compare_sampled(
        "SS-VAE log p(x)", ss_vae.model, guide, x_eval[:n], ind, args
    )
    out["ssvae"] = {
        "labelled": x_sup.shape[0],
        "unlabelled": x_unsup.shape[0],
        "fit_seconds": fit_s,
        "history": hist,
        "validation_accuracy": val_acc,
        "test_accuracy": test_acc,
        "log_p_x": s,
        "comparison": cmp,
    }


# --------------------------------------------------------------------------- CVAE


def masked(mnist_mod, images: torch.Tensor, quadrants: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, outputs), each (N, 28, 28), by their MaskImages on one sample dict per image."""
    transform = mnist_mod.MaskImages(num_quadrant_inputs=quadrants)
    inputs, outputs = [], []
    for img in images.view(-1, 1, 28, 28):
        sample = transform({"original": img, "digit": torch.tensor(0)})
        inputs.append(sample["input"])
        outputs.append(sample["output"])
    return torch.stack(inputs), torch.stack(outputs)


def train_baseline(baseline_mod, inputs, outputs, epochs: int, seed: int):
    """Their baseline.train without early stopping: Adam 1e-3, batch 128, MaskedBCELoss."""
    torch.manual_seed(seed)
    net = baseline_mod.BaselineNet(500, 500)
    if epochs:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        criterion = baseline_mod.MaskedBCELoss()
        ds = torch.utils.data.TensorDataset(inputs, outputs)
        loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
        net.train()
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                loss = criterion(net(xb), yb) / xb.size(0)
                loss.backward()
                opt.step()
    net.eval()
    return net


def run_cvae(args, data, out: dict) -> None:
    print("\n== CVAE (examples/cvae/cvae.py) ==")
    folder = args.pyro_examples / "cvae"
    cvae_mod = import_example(folder, "cvae")
    baseline_mod = import_example(folder, "baseline")
    mnist_mod = import_example(folder, "mnist")

    n_train = args.limit or data.train.shape[0]
    train_in, train_out = masked(mnist_mod, data.train[:n_train].float(), args.quadrants)
    test_in, test_out = masked(mnist_mod, data.test.float(), args.quadrants)
    print(
        f"  {n_train} training and {test_in.shape[0]} test images, "
        f"{args.quadrants} quadrant(s) as input"
    )

    baseline_net, base_s = timed(
        train_baseline, baseline_mod, train_in, train_out, args.baseline_epochs, args.seed
    )
    with torch.no_grad():
        bce = baseline_mod.MaskedBCELoss()(baseline_net(test_in), test_out) / test_in.size(0)
    print(
        f"  baseline: {args.baseline_epochs} epoch(s) in {base_s:.1f} s, "
        f"test masked BCE {float(bce):.3f} per image"
    )

    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    cvae_net = cvae_mod.CVAE(200, 500, 500, baseline_net)
    n_val = min(args.n_test, test_in.shape[0])
    history, fit_s = timed(
        pyrovae.fit,
        cvae_net,
        (train_in, train_out),
        epochs=args.epochs,
        batch_size=128,
        lr=1e-3,
        binarize="none",
        device=args.device,
        seed=args.seed,
        progress=False,
        validation=(test_in[:n_val], test_out[:n_val]),
    )
    hist = history_dict(history)
    print(
        f"  trained {args.epochs} epochs in {fit_s:.1f} s; train ELBO "
        f"{[round(v, 2) for v in hist.get('train_elbo', [])]}, validation ELBO "
        f"{[round(v, 2) for v in hist.get('val_elbo', [])]}"
    )

    cvae_net.eval()
    xs, ys = on_device_of(cvae_net, test_in[: args.n_test], test_out[: args.n_test])
    s = pyrovae_log_p(
        "log p(ys | xs) of test images", cvae_net.model, cvae_net.guide, (xs, ys), args
    )

    n = min(args.n_eval, xs.shape[0])
    ind = independent(
        cvae_net.model,
        cvae_net.guide,
        [(xs[i : i + 1], ys[i : i + 1]) for i in range(n)],
        args.num_samples,
        args.seed + 1,
    )
    cmp = compare("CVAE log p(ys | xs)", s, n, ind, args.tolerance)
    out["cvae"] = {
        "quadrants": args.quadrants,
        "baseline_epochs": args.baseline_epochs,
        "baseline_seconds": base_s,
        "baseline_test_masked_bce": float(bce),
        "fit_seconds": fit_s,
        "history": hist,
        "log_p_y_given_x": s,
        "comparison": cmp,
    }


# --------------------------------------------------------------------------- scANVI


class ScanviBatches:
    """Their BatchDataLoader's batches as their training loop passes them to svi.step:
    ``(x, y.type_as(x))`` when labelled, ``(x,)`` (y=None) when not. Re-iterable."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield (x,) if y is None else (x, y.type_as(x))


@contextlib.contextmanager
def unscaled(scanvi):
    old = scanvi.scale_factor
    scanvi.scale_factor = 1.0
    try:
        yield
    finally:
        scanvi.scale_factor = old


def run_scanvi(args, out: dict) -> None:
    print("\n== scANVI (examples/scanvi/scanvi.py), mock data ==")
    scanvi_mod = import_example(
        args.pyro_examples / "scanvi", "scanvi", stubs=("scipy", "scipy.sparse")
    )
    pyro.set_rng_seed(args.seed)
    loader, num_genes, l_mean, l_scale, _ = scanvi_mod.get_data(
        dataset="mock", batch_size=args.scanvi_batch_size
    )
    x_all, y_all = loader.data_x, loader.data_y
    unlabelled = torch.where(y_all == -1)[0]
    held = unlabelled[torch.randperm(unlabelled.numel())[: args.scanvi_heldout]]
    keep = torch.ones(x_all.shape[0], dtype=torch.bool)
    keep[held] = False
    train_loader = type(loader)(x_all[keep], y_all[keep], args.scanvi_batch_size)
    x_held = x_all[held]
    print(
        f"  {num_genes} genes; {int(keep.sum())} training cells "
        f"({int((y_all[keep] != -1).sum())} labelled), {held.numel()} held out; "
        f"{len(train_loader)} batches of {args.scanvi_batch_size} per epoch"
    )

    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    scanvi = scanvi_mod.SCANVI(
        num_genes=num_genes,
        num_labels=4,
        l_loc=l_mean,
        l_scale=l_scale,
        scale_factor=1.0 / (args.scanvi_batch_size * num_genes),
    )
    scheduler = pyro.optim.MultiStepLR(
        {
            "optimizer": torch.optim.Adam,
            "optim_args": {"lr": 0.005},
            "milestones": [args.scanvi_milestone],
            "gamma": 0.2,
        }
    )
    guide = config_enumerate(scanvi.guide, "parallel", expand=True)
    history, fit_s = timed(
        pyrovae.fit,
        (scanvi.model, guide),
        ScanviBatches(train_loader),
        epochs=args.scanvi_epochs,
        lr=0.005,
        loss=TraceEnum_ELBO(strict_enumeration_warning=False),
        optim=scheduler,
        binarize="none",
        device=args.device,
        seed=args.seed,
        progress=False,
    )
    hist = history_dict(history)
    print(
        f"  trained {args.scanvi_epochs} epochs in {fit_s:.1f} s; learning rate per epoch "
        f"{hist.get('lr')}; train ELBO {[round(v, 4) for v in hist.get('train_elbo', [])]}"
    )
    theta = float(pyro.get_param_store().get_param("inverse_dispersion").detach().mean())
    print(f"  inverse_dispersion after training: mean {theta:.3f} (initialised at 10)")

    scanvi.eval()
    x_held, x_all = on_device_of(scanvi, x_held, x_all)
    results = {}
    for label, x in (("heldout", x_held), ("all", x_all)):
        results[label] = pyrovae_log_p(f"log p(x) of {label} cells", scanvi.model, guide, x, args)

    n = min(args.n_eval, x_held.shape[0])
    with unscaled(scanvi):
        ind = independent(
            scanvi.model,
            scanvi.guide,
            [(x_held[i : i + 1],) for i in range(n)],
            args.num_samples,
            args.seed + 1,
        )
    cmp = compare("scANVI log p(x), held out", results["heldout"], n, ind, args.tolerance)
    cmp["y_sampled"] = compare_sampled(
        "scANVI log p(x)", scanvi.model, guide, x_held[:n], ind, args
    )
    out["scanvi"] = {
        "num_genes": num_genes,
        "training_cells": int(keep.sum()),
        "heldout_cells": held.numel(),
        "fit_seconds": fit_s,
        "history": hist,
        "inverse_dispersion_mean": theta,
        "log_p_x": results,
        "comparison": cmp,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--pyro-examples",
        type=Path,
        required=True,
        help="the examples/ folder of a pyro-ppl/pyro checkout",
    )
    p.add_argument("--epochs", type=int, default=5, help="epochs for SS-VAE and CVAE")
    p.add_argument("--scanvi-epochs", type=int, default=60, help="60 as theirs")
    p.add_argument(
        "--scanvi-milestone", type=int, default=20, help="epoch at which lr falls by 5x"
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=1000,
        help="K, importance samples per datapoint (both estimators)",
    )
    p.add_argument(
        "--n-test", type=int, default=100, help="held-out images whose log p pyrovae estimates"
    )
    p.add_argument(
        "--n-eval",
        type=int,
        default=20,
        help="of those, how many are also estimated by Pyro's Importance",
    )
    p.add_argument(
        "--eval-batch-size",
        type=int,
        default=25,
        help="datapoints per pass of pyrovae.log_marginal_likelihood",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="nats: a mean difference this small also counts as agreement",
    )
    p.add_argument("--sup-num", type=int, default=1000, help="SS-VAE labelled images")
    p.add_argument(
        "--validation-num",
        type=int,
        default=1000,
        help="SS-VAE validation images (the last of the training images)",
    )
    p.add_argument("--ss-batch-size", type=int, default=200)
    p.add_argument("--ss-lr", type=float, default=0.00042)
    p.add_argument("--quadrants", type=int, default=1, help="CVAE quadrants given as input")
    p.add_argument(
        "--baseline-epochs",
        type=int,
        default=2,
        help="CVAE baseline training epochs (0: untrained)",
    )
    p.add_argument("--scanvi-batch-size", type=int, default=20)
    p.add_argument("--scanvi-heldout", type=int, default=40, help="unlabelled cells held out")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--only", default="ssvae,cvae,scanvi", help="comma-separated examples")
    p.add_argument("--device", default="cpu", help="for pyrovae.fit (only cpu tried so far)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    p.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.scanvi_epochs, args.scanvi_milestone, args.num_samples = 1, 3, 2, 20
        args.n_test, args.n_eval, args.limit = 10, 3, 1000
        args.sup_num, args.validation_num, args.ss_batch_size = 100, 200, 100
        args.baseline_epochs = 1
    args.pyro_examples = args.pyro_examples.resolve()

    print(
        f"machine: {machine()} ({platform.machine()}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}, pyro {pyro.__version__}, device {args.device}"
    )
    print(f"Pyro examples from {args.pyro_examples}")
    out: dict = {
        "machine": machine(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": torch.get_num_threads(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    only = {s.strip() for s in args.only.split(",")}
    data = pyrovae.load_dataset("sample") if only & {"ssvae", "cvae"} else None
    if "ssvae" in only:
        run_ssvae(args, data, out)
    if "cvae" in only:
        run_cvae(args, data, out)
    if "scanvi" in only:
        run_scanvi(args, out)

    print("\n== summary: pyrovae log p against Pyro's Importance, same datapoints ==")
    for name in ("ssvae", "cvae", "scanvi"):
        if name in out:
            c = out[name]["comparison"]
            print(
                f"  {name:7s} pyrovae {c['pyrovae_mean']:10.3f}  Importance "
                f"{c['importance_mean']:10.3f}  diff {c['diff_mean']:+.4f} +- "
                f"{c['diff_se']:.4f}  {'agree' if c['agree'] else 'DISAGREE'}"
            )
            rows = [("ELBO   ", c.get("elbo"))]
            if "y_sampled" in c:
                rows += [("y smpl ", c["y_sampled"]), ("  ELBO ", c["y_sampled"].get("elbo"))]
            if not c["agree"] and c.get("y_sampled", {}).get("agree"):
                print(
                    f"  {'':7s} (y summed exactly: lower-variance weights, so less of the "
                    "downward bias of log-mean-weight at a low ESS; like for like, y sampled "
                    "by both, they agree)"
                )
            for label, e in rows:
                if e is not None:
                    print(
                        f"  {'':7s} {label} {e['pyrovae_mean']:10.3f}  Importance "
                        f"{e['importance_mean']:10.3f}  diff {e['diff_mean']:+.4f} +- "
                        f"{e['diff_se']:.4f}  {'agree' if e['agree'] else 'DISAGREE'}"
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
