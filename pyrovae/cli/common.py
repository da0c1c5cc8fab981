"""What the command groups share: the parser, argument types, run folders, output files."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pyrovae.errors import PyrovaeError

EXIT_USAGE = 2
EXIT_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what is wrong and where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(convert: Callable[[str], Any], low: float, strict: bool, what: str):
    """An argparse type: ``convert(text)``, which must be > low (strict) or >= low."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_int = _number(int, 0, True, "a positive integer")
_nonnegative_int = _number(int, 0, False, "an integer >= 0")
_positive_float = _number(float, 0, True, "a positive number")
_nonnegative_float = _number(float, 0, False, "a number >= 0")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 400 or 512,256; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive integers, got {text!r}")
    return sizes


def _key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as an int, a float, true/false, or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value: Any = raw
    for convert in (int, float):
        try:
            value = convert(raw)
            break
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key, value


def _choice(registry: dict) -> dict[str, Any]:
    """argparse keywords for a name looked up in ``registry``."""
    return {"choices": sorted(registry), "metavar": "{" + ",".join(sorted(registry)) + "}"}


def _init_distributed(device: str) -> int:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); the rank."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    dist = torch.distributed
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank()


def _barrier() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _add_run_data(p: argparse.ArgumentParser) -> None:
    """RUN_DIR and the options that pick which held-out data to use with it."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by pyrovae train")
    p.add_argument(
        "--dataset",
        help="held-out data to use (default: the run's own dataset and split); "
        "a dataset name or a .npy/.npz/.csv path, binarised as in training (impute fills "
        "every row of a table with missing entries)",
    )
    p.add_argument("--data-dir", help="folder with the torchvision files (no download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def _load_run(args: argparse.Namespace, vae_only: bool = True):
    """The run's model and config, and its held-out data, binarised as in training."""
    from pyrovae.rundir.folder import load_run

    run = load_run(args.run_dir, args.dataset, args.data_dir, args.device)
    if vae_only:
        _need_vae(run.vae, args)
    return run.vae, run.config, run.data, run.heldout


def _need_vae(model: Any, args: argparse.Namespace) -> None:
    """One-line error for commands that use a pyrovae VAE's encoder and decoder."""
    from pyrovae.models.vae import VAE

    if not isinstance(model, VAE):
        raise PyrovaeError(
            f"pyrovae {args.command} uses the encoder and decoder of a pyrovae VAE; "
            f"{args.run_dir} holds your own model ({type(model).__name__}): use evaluate, "
            "score or report, or pyrovae.load in Python"
        )


def _save_png(fig, out: str) -> None:
    from pyrovae.rundir.files import atomic_write, check_output

    path = check_output(out, (".png",))
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    print(f"wrote {path}")


def _save_array(array, out: str) -> None:
    from pyrovae.rundir.files import write_array

    write_array(out, array)
    print(f"wrote {out} {tuple(array.shape)}")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by pyrovae train")
    p.add_argument("--data-dir", help="folder with the torchvision files (no download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
