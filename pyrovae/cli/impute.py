"""``pyrovae impute``: fill hidden pixels of images, or the missing entries of a table."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pyrovae.cli.common import _add_run_data, _load_run, _positive_int, _save_array, _save_png
from pyrovae.errors import PyrovaeError


def _add_impute(p: argparse.ArgumentParser) -> None:
    from pyrovae.data.masks import MASKS

    _add_run_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="the file to write: the filled data (.npy; for a table with missing entries, "
        ".npy or .csv, same rows in the same order)",
    )
    p.add_argument(
        "--mask",
        help=f"images: which pixels to hide and fill: {', '.join(MASKS)}, or a .npy file of "
        "booleans shaped like the data (default bottom-half); not for a --dataset with "
        "missing entries (NaN, empty cells), which are what gets filled",
    )
    p.add_argument(
        "--num-samples",
        type=_positive_int,
        default=100,
        help="importance samples per datapoint (default 100)",
    )
    p.add_argument(
        "--multiple",
        type=_positive_int,
        metavar="M",
        help="tables: write M draws from p(x_missing | x_observed) instead of its mean "
        "(multiple imputation): a .npy of shape (M, N, D), or M files OUT_1.csv ...",
    )
    p.add_argument("--figure", help="also write a PNG of inputs, masked inputs and fills")
    p.add_argument("--seed", type=int, default=0, help="default 0")


def _read_table(path: str):
    """A table with NaN for missing entries (.csv or .npy), and its header."""
    from pyrovae.data.tables import check_table, read_csv

    if path.endswith(".csv"):
        return read_csv(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PyrovaeError(f"cannot read {path}: {err}") from None
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise PyrovaeError(f"{path}: expected a numeric table of shape (N, D)")
    values = values.astype(np.float64)
    check_table(values, path)
    return values, None


def _is_table_with_missing(dataset: str | None) -> bool:
    if dataset is None or not dataset.endswith((".csv", ".npy")) or not Path(dataset).is_file():
        return False
    return dataset.endswith(".csv") or bool(np.isnan(_read_table(dataset)[0]).any())


def _impute_table(args: argparse.Namespace) -> None:
    """Fill the missing entries of a whole table, in the run's units, rows in order."""
    import torch

    from pyrovae.data.devices import resolve_device
    from pyrovae.data.tables import Standardizer
    from pyrovae.inference.imputation import impute
    from pyrovae.models.protocol import contract_of
    from pyrovae.rundir.files import write_table
    from pyrovae.rundir.folder import load, read_config

    if args.mask or args.figure:
        raise PyrovaeError(
            "--mask and --figure are for images; the missing entries of a table are filled"
        )
    if Path(args.out).suffix not in (".csv", ".npy"):
        raise PyrovaeError(f"--out {args.out} must end in .csv or .npy")
    config = read_config(args.run_dir)
    dev = resolve_device(args.device)
    model = load(args.run_dir, device=dev)
    values, header = _read_table(args.dataset)
    x = torch.from_numpy(values)
    stats = config["data"]["standardizer"]
    scaler = Standardizer.from_config(stats) if stats else None
    xs = (scaler.forward(x.float()) if scaler is not None else x).float()
    check = contract_of(model).check_data
    if check is not None:
        check(torch.nan_to_num(xs, nan=0.0))
    filled = impute(
        model.model,
        model.guide,
        xs.to(dev),
        num_samples=args.num_samples,
        multiple=args.multiple,
        seed=args.seed,
    ).cpu()
    out = (scaler.inverse(filled) if scaler is not None else filled).double()
    out = torch.where(torch.isnan(x), out, x).numpy()  # observed entries exactly as given
    path = Path(args.out)
    if args.multiple and path.suffix == ".csv":
        for m, table in enumerate(out, 1):
            write_table(path.with_name(f"{path.stem}_{m}.csv"), table, header)
        print(
            f"wrote {args.multiple} tables {path.stem}_1.csv ... {path.stem}_{args.multiple}.csv"
        )
        return
    write_table(path, out, header)
    print(f"wrote {path} {tuple(out.shape)}: {int(np.isnan(values).sum())} entries filled")


def _impute(args: argparse.Namespace) -> None:
    import pyro
    import torch

    from pyrovae.data.masks import MASKS
    from pyrovae.use import plots
    from pyrovae.use.applications import impute

    if _is_table_with_missing(args.dataset):
        _impute_table(args)
        return
    if args.multiple:
        raise PyrovaeError("--multiple is for a --dataset with missing entries (NaN, empty cells)")
    args.mask = args.mask or "bottom-half"
    vae, _, data, x = _load_run(args)
    if getattr(vae, "num_classes", None):
        raise PyrovaeError(
            "impute fills pixels through a VAE without classes; this run has them "
            "(--conditional or --labels), which impute does not support yet"
        )
    if args.mask in MASKS:
        if vae.image_shape is None:
            raise PyrovaeError(f"--mask {args.mask} needs image data; pass a .npy mask")
        missing = MASKS[args.mask](tuple(x.shape), vae.image_shape)
    else:
        try:
            missing = torch.from_numpy(np.load(args.mask, allow_pickle=False)).bool()
        except (OSError, ValueError) as err:
            raise PyrovaeError(f"cannot read --mask {args.mask}: {err}") from None
        if missing.shape != x.shape:
            raise PyrovaeError(
                f"--mask has shape {tuple(missing.shape)}; the data {tuple(x.shape)}"
            )
    missing = missing.to(x.device)
    pyro.set_rng_seed(args.seed)
    fill = data.train.mean(0).to(x.device) if data is not None else 0.5
    filled = impute(vae, x, missing, num_samples=args.num_samples, fill=fill)
    _save_array(filled.cpu().numpy(), args.out)
    if args.figure:
        n = min(8, x.shape[0])
        rows = torch.cat([x[:n], torch.where(missing[:n], 0.5, x[:n]), filled[:n]])
        fig = plots.image_rows(
            rows,
            vae.image_shape,
            n,
            "inputs / missing pixels in grey / imputed (mean of p(x_miss | x_obs))",
        )
        _save_png(fig, args.figure)
