"""Anomaly detection with pyrovae's scores against scikit-learn's detectors, side by side.

Three tasks, every figure ROC-AUC and average precision (AP), mean +- sd over seeds:

``tables``
    ADBench's protocol on tables scikit-learn ships (offline): breast cancer (malignant
    rows are the anomalies), wine (class 0), digits (the zeros) and iris (setosa), the
    anomalous class downsampled to 5 % of the rows; a seeded 60/40 split; every detector
    is fitted on the (contaminated) training rows without labels and scores the test
    rows. pyrovae: a Gaussian VAE on standardised columns trained with the table
    defaults (early stopping on 10 % of the training rows), then every applicable score.
    Against IsolationForest, LOF (novelty), the distance to the k-th nearest training
    row, and PyOD's VAE when PyOD is installed.
``one-class``
    Ruff et al. (2018) on the bundled MNIST sample: trained on one digit (its ~800
    training images), the 2,000 test images scored, the other nine digits anomalous;
    all ten digits, against IsolationForest on the same pixels.
``held-out``
    Trained on the digits 0-8 of the sample, the 9s among the test images are the
    anomalies (the README's example): every score, including the hierarchical VAE's
    ``llr`` and ``likelihood-ratio`` against a background model trained on perturbed
    images (Ren et al., 2019), over seeds.

    python benchmarks/anomaly.py --out benchmarks/results/anomaly.json
    python benchmarks/anomaly.py --seeds 1 --epochs 1 --num-samples 5 --limit 300  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import torch

import pyrovae
from pyrovae.use.anomaly import anomaly_score, perturb

IMAGE_SCORES = ("nll", "elbo", "reconstruction", "complexity")
TABLE_SCORES = ("nll", "elbo", "reconstruction")


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = re.search(r"model name\s*:\s*(.*)", info)
    bf16 = ", avx512_bf16" if "avx512_bf16" in info else ""
    return f"{name.group(1) if name else platform.processor()}, {os.cpu_count()} cores{bf16}"


def metrics(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision of anomaly scores (higher: more anomalous)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


# ---------------------------------------------------------------- baselines


def baselines(
    train: np.ndarray, test: np.ndarray, seed: int, pyod: bool = True
) -> dict[str, np.ndarray]:
    """Anomaly scores (higher: more anomalous) of scikit-learn's detectors, and PyOD's VAE
    (tables only: on 7,200 images it would take longer than everything else)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

    out = {
        "IsolationForest": -IsolationForest(random_state=seed).fit(train).score_samples(test),
        "LOF": -LocalOutlierFactor(novelty=True).fit(train).score_samples(test),
    }
    k = min(5, len(train) - 1)
    out["kNN distance"] = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)[0][:, -1]
    if not pyod:
        return out
    try:
        from pyod.models.vae import VAE as PyODVAE
    except ImportError:
        return out
    torch.manual_seed(seed)
    detector = PyODVAE(random_state=seed, verbose=0, device="cpu")
    out["PyOD VAE"] = detector.fit(train).decision_function(test)
    return out


# ---------------------------------------------------------------- pyrovae models


def fit_table_vae(train: np.ndarray, seed: int, epochs: int | None) -> pyrovae.VAE:
    """A Gaussian VAE with the table defaults: a budget of steps, early stopping on 10 %."""
    from pyrovae.rundir.defaults import DATA_DEFAULTS

    defaults = DATA_DEFAULTS["table"]
    x = torch.as_tensor(train, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(2, len(x) // 10)
    val, fit_x = x[order[:n_val]], x[order[n_val:]]
    pyro.clear_param_store()
    torch.manual_seed(seed)
    vae = pyrovae.VAE(x_dim=x.shape[1], z_dim=2, hidden=(64,), likelihood="gaussian")
    batch = 64
    pyrovae.fit(
        vae,
        fit_x,
        validation=val,
        epochs=epochs or defaults.epochs(len(fit_x), batch),
        batch_size=batch,
        binarize="none",
        seed=seed,
        progress=False,
        early_stopping=defaults.patience(len(fit_x), batch) if epochs is None else None,
        precision=defaults.training["precision"],
    )
    return vae.eval()


def fit_image_vae(x: torch.Tensor, seed: int, epochs: int, **kwargs) -> pyrovae.VAE:
    """The default VAE (Bernoulli, dynamically binarised) on images in [0, 1]."""
    pyro.clear_param_store()
    torch.manual_seed(seed)
    vae = pyrovae.VAE(image_shape=(1, 28, 28), **kwargs)
    pyrovae.fit(vae, x, epochs=epochs, seed=seed, progress=False)
    return vae.eval()


def scores_of(vae, x, methods, k: int, **kwargs) -> dict[str, np.ndarray]:
    out = {}
    for method in methods:
        pyro.set_rng_seed(0)
        out[method] = anomaly_score(vae, x, method, num_samples=k, **kwargs).cpu().numpy()
    return out


# ---------------------------------------------------------------- tasks


def table_data(name: str):
    from sklearn import datasets

    loaders = {
        "breast cancer": (datasets.load_breast_cancer, lambda y: y == 0),
        "wine": (datasets.load_wine, lambda y: y == 0),
        "digits": (datasets.load_digits, lambda y: y == 0),
        "iris": (datasets.load_iris, lambda y: y == 0),
    }
    loader, anomalous = loaders[name]
    data = loader()
    return data.data.astype(np.float64), anomalous(data.target)


def table_split(x, is_anomaly, seed: int, rate: float = 0.05):
    """Anomalies downsampled to ``rate`` of the rows, a stratified 60/40 split, columns
    standardised with the training rows' statistics."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    normal, anomalous = np.flatnonzero(~is_anomaly), np.flatnonzero(is_anomaly)
    n_anom = max(2, round(rate * len(normal) / (1 - rate)))
    keep = np.concatenate([normal, rng.choice(anomalous, n_anom, replace=False)])
    xk, yk = x[keep], is_anomaly[keep].astype(int)
    tr, te, ytr, yte = train_test_split(xk, yk, test_size=0.4, stratify=yk, random_state=seed)
    mean, std = tr.mean(0), tr.std(0)
    std[std == 0] = 1.0
    return (tr - mean) / std, (te - mean) / std, yte


def run_tables(args) -> dict:
    results = {}
    for name in ("breast cancer", "wine", "digits", "iris"):
        x, is_anomaly = table_data(name)
        per_seed: dict[str, list[tuple[float, float]]] = {}
        for seed in range(args.seeds):
            train, test, labels = table_split(x, is_anomaly, seed)
            found = baselines(train, test, seed)
            vae = fit_table_vae(train, seed, args.table_epochs)
            xt = torch.as_tensor(test, dtype=torch.float32)
            found.update(
                {
                    f"pyrovae {m}": s
                    for m, s in scores_of(vae, xt, TABLE_SCORES, args.num_samples).items()
                }
            )
            for method, s in found.items():
                per_seed.setdefault(method, []).append(metrics(labels, s))
        results[name] = summary(per_seed)
        print_block(f"tables: {name}", results[name])
    results["mean"] = {
        m: {
            "auc": float(np.mean([results[t][m]["auc"] for t in results])),
            "ap": float(np.mean([results[t][m]["ap"] for t in results])),
        }
        for m in results["breast cancer"]
    }
    print_block("tables: mean over the four", results["mean"])
    return results


def binarised(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


def run_one_class(args, data) -> dict:
    from sklearn.ensemble import IsolationForest

    test = binarised(data.test[: args.limit], 1)
    test_labels = data.test_labels[: args.limit].numpy()
    digits = {}
    for digit in range(10):
        train = data.train[: args.limit][data.train_labels[: args.limit] == digit]
        vae = fit_image_vae(train, 0, args.epochs)
        found = {
            f"pyrovae {m}": s
            for m, s in scores_of(vae, test, IMAGE_SCORES, args.num_samples).items()
        }
        forest = IsolationForest(random_state=0).fit(binarised(train, 2).numpy())
        found["IsolationForest"] = -forest.score_samples(test.numpy())
        labels = (test_labels != digit).astype(int)
        digits[digit] = {
            m: dict(zip(("auc", "ap"), metrics(labels, s), strict=True)) for m, s in found.items()
        }
        print(
            f"one-class, digit {digit}: "
            + ", ".join(f"{m} {v['auc']:.3f}" for m, v in digits[digit].items()),
            flush=True,
        )
    methods = digits[0].keys()
    mean = {
        m: {
            "auc": float(np.mean([digits[d][m]["auc"] for d in digits])),
            "ap": float(np.mean([digits[d][m]["ap"] for d in digits])),
        }
        for m in methods
    }
    print_block("one-class MNIST: mean over the ten digits", mean)
    return {"digits": digits, "mean": mean}


def run_held_out(args, data) -> dict:
    train = data.train[: args.limit][data.train_labels[: args.limit] != 9]
    test = binarised(data.test[: args.limit], 1)
    labels = (data.test_labels[: args.limit] == 9).numpy().astype(int)
    per_seed: dict[str, list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        vae = fit_image_vae(train, seed, args.epochs)
        found = {
            f"pyrovae {m}": s
            for m, s in scores_of(vae, test, IMAGE_SCORES, args.num_samples).items()
        }
        deep = fit_image_vae(train, seed, args.epochs, z_dim=(32, 16))
        found["pyrovae llr (z 32,16)"] = scores_of(deep, test, ("llr",), args.num_samples)["llr"]
        noisy = perturb(train, 0.2, torch.Generator().manual_seed(seed))
        background = fit_image_vae(noisy, seed, args.epochs)
        found["pyrovae likelihood-ratio"] = scores_of(
            vae, test, ("likelihood-ratio",), args.num_samples, background=background
        )["likelihood-ratio"]
        found.update(baselines(binarised(train, 2).numpy(), test.numpy(), seed, pyod=False))
        for method, s in found.items():
            per_seed.setdefault(method, []).append(metrics(labels, s))
    result = summary(per_seed)
    print_block("held-out digit: trained on 0-8, the 9s anomalous", result)
    return result


def summary(per_seed: dict[str, list[tuple[float, float]]]) -> dict:
    out = {}
    for method, values in per_seed.items():
        auc, ap = np.array(values).T
        out[method] = {
            "auc": float(auc.mean()),
            "auc_sd": float(auc.std()),
            "ap": float(ap.mean()),
            "ap_sd": float(ap.std()),
            "seeds": len(values),
        }
    return out


def print_block(title: str, result: dict) -> None:
    print(f"\n{title}\n  {'detector':28s} ROC-AUC           AP")
    for method, v in sorted(result.items(), key=lambda kv: -kv[1]["auc"]):
        auc = f"{v['auc']:.3f}" + (f" +- {v['auc_sd']:.3f}" if "auc_sd" in v else "")
        ap = f"{v['ap']:.3f}" + (f" +- {v['ap_sd']:.3f}" if "ap_sd" in v else "")
        print(f"  {method:28s} {auc:17s} {ap}")
    print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="tables,one-class,held-out")
    p.add_argument("--seeds", type=int, default=5, help="tables and held-out (default 5)")
    p.add_argument("--epochs", type=int, default=30, help="image VAEs' epochs (default 30)")
    p.add_argument("--table-epochs", type=int, default=None, help="default: table budget")
    p.add_argument("--num-samples", type=int, default=200, help="K of every score")
    p.add_argument("--limit", type=int, default=None, help="images of each split (smoke)")
    p.add_argument("--out", default=None, help="also write the figures to this .json")
    args = p.parse_args()
    tasks = args.tasks.split(",")
    print(f"machine: {machine()}; torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    data = pyrovae.load_dataset("sample")
    results = {"args": vars(args), "machine": machine()}
    runners = {
        "tables": lambda: run_tables(args),
        "one-class": lambda: run_one_class(args, data),
        "held-out": lambda: run_held_out(args, data),
    }
    for task in tasks:
        results[task] = runners[task]()
    results["seconds"] = time.perf_counter() - start
    print(f"{results['seconds']:.0f} s in all")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
