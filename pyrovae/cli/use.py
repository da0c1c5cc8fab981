"""Using a trained run: ``pyrovae sample``, ``interpolate``, ``encode``, ``score``,
``classify`` (M2) and ``cluster`` (a cluster VAE)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyrovae.cli.common import (
    _add_report,
    _add_run_data,
    _choice,
    _load_run,
    _need_vae,
    _number,
    _positive_int,
    _save_array,
    _save_png,
)
from pyrovae.errors import PyrovaeError


def _add_sample(p: argparse.ArgumentParser) -> None:
    _add_report(p)
    p.add_argument("--n", type=_positive_int, default=64, help="how many samples (default 64)")
    p.add_argument(
        "--out",
        required=True,
        help="a .png: a grid of the samples (images; molecules drawn by RDKit for a SMILES "
        "run); a .npy: the samples themselves, the mean of p(x|z) in the data's units, shape "
        "(n, channels, height, width) for images and (n, columns) for tables; a .smi or .txt: "
        "a sequence run's samples, one per line",
    )
    p.add_argument(
        "--temperature",
        type=_number(float, 0, True, "a positive number"),
        default=None,
        help="a sequence run: divide each step's logits by this (below 1: safer, less "
        "diverse samples; default: the run's, 1 unless set)",
    )
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="K",
        help="a run with classes (--conditional or --labels): draw class K only (default: "
        "the classes in turn, one per column of the grid)",
    )


def _sample(args: argparse.Namespace) -> None:
    from pyrovae.data.devices import resolve_device
    from pyrovae.data.tables import Standardizer
    from pyrovae.rundir.folder import load, read_config
    from pyrovae.use import plots

    vae = load(args.run_dir, device=resolve_device(args.device))
    _need_vae(vae, args)
    vocabulary = read_config(args.run_dir)["data"].get("vocabulary")
    if vocabulary is not None:
        _sample_sequences(vae, vocabulary, args)
        return
    if args.temperature is not None:
        raise PyrovaeError("--temperature applies to a run on sequences only")
    if Path(args.out).suffix.lower() not in (".png", ".npy"):
        raise PyrovaeError(f"--out {args.out} must end in .png (a grid) or .npy (the samples)")
    classes = vae.num_classes
    if args.label is not None and not (classes and 0 <= args.label < classes):
        raise PyrovaeError(
            f"--label {args.label}: this run's VAE is conditional on classes 0..{classes - 1}"
            if classes
            else f"--label applies to a run with classes (--conditional or --labels); "
            f"{args.run_dir} is not one"
        )
    if Path(args.out).suffix.lower() == ".png":
        _save_png(plots.prior_samples(vae, args.n, seed=args.seed, y=args.label), args.out)
        return
    samples = plots.seeded_samples(vae, args.n, args.seed, y=args.label).cpu()
    stats = read_config(args.run_dir)["data"]["standardizer"]
    if stats:  # back to the units of the table the run was trained on
        samples = Standardizer.from_config(stats).inverse(samples)
    shape = tuple(vae.image_shape) if vae.image_shape else (vae.x_dim,)
    _save_array(samples.reshape(args.n, *shape).numpy(), args.out)


def _sample_sequences(vae, vocabulary: dict, args: argparse.Namespace) -> None:
    """A sequence run's samples, one per line, or drawn as molecules (a SMILES run)."""
    import pyro

    from pyrovae.data.sequences import Vocabulary
    from pyrovae.use.sequences import sample_sequences

    vocab = Vocabulary.from_config(vocabulary)
    if args.label is not None:
        raise PyrovaeError("--label applies to a run with classes; this run is on sequences")
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".smi", ".txt", ".png"):
        raise PyrovaeError(
            f"--out {args.out}: a run on sequences writes .smi or .txt (one per line), or "
            ".png (a SMILES run's molecules)"
        )
    pyro.set_rng_seed(args.seed)
    texts = sample_sequences(vae, args.n, vocab, temperature=args.temperature)
    _write_texts(texts, args.out, vocab)


def _write_texts(texts: list[str], out: str, vocab, per_row: int = 8) -> None:
    """Texts one per line (.smi, .txt), or a grid of the valid molecules among them (.png)."""
    from pyrovae.rundir.files import atomic_write, check_output

    if Path(out).suffix.lower() == ".png":
        if not vocab.molecules:
            raise PyrovaeError(f"--out {out}: only a run on SMILES draws its samples; use .txt")
        from pyrovae.use.molecules import draw_grid

        path = check_output(out, (".png",))
        atomic_write(path, lambda f: draw_grid(texts, f, per_row=per_row))
    else:
        path = check_output(out, (".smi", ".txt"))
        atomic_write(path, lambda f: f.write("".join(t + "\n" for t in texts).encode()))
    print(f"wrote {path} ({len(texts)} sequences)")


def _add_interpolate(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="the PNG file to write; a sequence run: a .txt or .smi file, the decodes of "
        "each path one per line, a blank line between paths (or a .png of molecules)",
    )
    p.add_argument(
        "--steps",
        type=_number(int, 1, True, "an integer >= 2"),
        default=10,
        help="images per row (default 10)",
    )
    p.add_argument(
        "--pairs",
        type=_positive_int,
        default=4,
        help="how many pairs of held-out inputs, one row each (default 4)",
    )


def _interpolate(args: argparse.Namespace) -> None:
    from pyrovae.use import plots

    vae, config, _, x = _load_run(args)
    if getattr(vae, "num_classes", None):
        raise PyrovaeError(
            "interpolate walks between two inputs in z, but a conditional VAE decodes z with "
            "a label too, and the two inputs' labels differ; sample --label K instead"
        )
    pairs = [(2 * i, 2 * i + 1) for i in range(args.pairs)]
    if config["data"].get("vocabulary") is not None:
        _interpolate_sequences(vae, config["data"]["vocabulary"], x, pairs, args)
        return
    _save_png(plots.interpolation(vae, x[: 2 * args.pairs], pairs, args.steps), args.out)


def _interpolate_sequences(vae, vocabulary: dict, x, pairs, args: argparse.Namespace) -> None:
    """Bowman et al.'s homotopies: greedy decodes along the line between two inputs' z."""
    from pyrovae.data.sequences import Vocabulary
    from pyrovae.use.applications import interpolate

    vocab = Vocabulary.from_config(vocabulary)
    if 2 * len(pairs) > x.shape[0]:
        raise PyrovaeError(f"--pairs {len(pairs)} needs {2 * len(pairs)} held-out sequences")
    paths = [vocab.decode(interpolate(vae, x[a], x[b], args.steps)) for a, b in pairs]
    if Path(args.out).suffix.lower() == ".png":
        cells = [t for path in paths for t in path]
        if vocab.molecules:  # an invalid decode as a lone * atom: rows stay paths
            from pyrovae.use.molecules import canonical

            cells = [t if canonical(t) is not None else "*" for t in cells]
        _write_texts(cells, args.out, vocab, args.steps)
        return
    lines = [t for path in paths for t in [*path, ""]][:-1]
    _write_texts(lines, args.out, vocab)


def _add_encode(p: argparse.ArgumentParser) -> None:
    _add_run_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="the .npy file to write: the means of q(z|x), shape (N, z_dim) (of q(z1|x), the "
        "bottom layer, for a hierarchical run)",
    )
    p.add_argument(
        "--split",
        choices=["train", "test"],
        default="test",
        help="which split to encode (default test)",
    )


def _encode(args: argparse.Namespace) -> None:
    from pyrovae.data.binarization import get_binarization
    from pyrovae.use.applications import latent_means

    vae, config, data, x = _load_run(args)
    y = None
    if isinstance(x, dict):  # a conditional VAE's q(z | x, y)
        x, y = x["x"], x["y"]
    if args.split == "train":
        if data is None:
            raise PyrovaeError(
                f"--split train: {args.run_dir} keeps its held-out data only; pass --dataset"
            )
        binarization = get_binarization(config["data"]["binarize"])
        x = binarization.heldout(data.train, config["train"]["seed"]).to(x.device)
        y = data.train_labels.to(x.device) if y is not None else None
    _save_array(latent_means(vae, x, y=y).cpu().numpy(), args.out)


def _add_score(p: argparse.ArgumentParser) -> None:
    from pyrovae.use.anomaly import SCORES

    _add_run_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="the .npy file to write, one score each (nats; higher: more anomalous)",
    )
    p.add_argument(
        "--method",
        default="nll",
        **_choice(SCORES),
        help="the score (default nll): "
        + "; ".join(f"{name}: {score.description}" for name, score in SCORES.items()),
    )
    p.add_argument(
        "--background",
        metavar="RUN0",
        help="likelihood-ratio: a run of the same model trained on perturbed inputs",
    )
    p.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="llr: latent layers, counted from x, drawn from the prior (default 1)",
    )
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1000,
        help="importance samples K (elbo, reconstruction: draws averaged; default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the estimator (default 0)")


def _score(args: argparse.Namespace) -> None:
    import warnings

    import pyro

    from pyrovae.data.devices import resolve_device
    from pyrovae.rundir.folder import load
    from pyrovae.use.anomaly import anomaly_score

    vae, _, _, x = _load_run(args, vae_only=False)
    background = None
    if args.background is not None:
        background = load(args.background, device=resolve_device(args.device))
    options = {"k": args.k} if args.k is not None else {}
    pyro.set_rng_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a poor proposal on unusual data is the point
        scores = anomaly_score(
            vae,
            x,
            args.method,
            num_samples=args.num_samples,
            background=background,
            **options,
        )
    _save_array(scores.cpu().numpy(), args.out)


def _labels_of_datapoints(variant: str, method: str, trained_with: str, what: str):
    """``(add_arguments, command)`` of a command that writes ``vae.<method>(x)`` to .npy.

    ``classify`` (M2) and ``cluster`` (a cluster VAE) both give one integer per held-out
    datapoint from a method of one variant of the VAE (``VARIANTS[variant]``); a run of
    another model is refused.
    """

    def add_arguments(p: argparse.ArgumentParser) -> None:
        _add_run_data(p)
        p.add_argument("--out", required=True, help=f"the .npy file to write: {what}, shape (N,)")

    def command(args: argparse.Namespace) -> None:
        from pyrovae.models.variants import VARIANTS

        vae, _, _, x = _load_run(args)
        if not isinstance(vae, VARIANTS[variant]):
            raise PyrovaeError(
                f"{method} needs a run trained with {trained_with}; {args.run_dir} is not one"
            )
        _save_array(getattr(vae, method)(x).cpu().numpy(), args.out)

    return add_arguments, command


_add_classify, _classify = _labels_of_datapoints(
    "semi-supervised",
    "classify",
    "pyrovae train --labels N",
    "the most probable class under q(y|x) of each held-out datapoint",
)
_add_cluster, _cluster = _labels_of_datapoints(
    "clusters",
    "cluster",
    "pyrovae train --clusters K",
    "the most probable cluster c of each held-out datapoint (under p(c|z) at the mean of q(z|x))",
)
