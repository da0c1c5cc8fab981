"""``pyrovae train``'s flags, made into a new run's ``config.json``.

The model part names the built-in VAE's parts and variant (or the user's class); the
data and train parts hold what the run needs to be resumed exactly. Variant flags and
their options are looked up in tables (``VARIANT_FLAGS``, ``VARIANT_OPTIONS``); a
variant's defaults come from its class's signature.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrovae import __version__
from pyrovae.errors import PyrovaeError

VAE_FLAGS: dict[str, Any] = {
    "z_dim": 50,
    "hidden": (400,),
    "prior": "standard",
    "likelihood": "bernoulli",
    "guide": "diagonal",
    "net": "mlp",
    "activation": "relu",
    "init": "default",
    "conditional": False,
    "labels": None,
    "classifier": None,
    "clusters": None,
    "cluster_weights": None,
    "prior_arg": [],
    "likelihood_arg": [],
    "guide_arg": [],
}


def _model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The "model" part of a new run's config: the VAE's settings, or the user's class."""
    given = [k for k in VAE_FLAGS if getattr(args, k) not in (None, [])]
    if args.model:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise PyrovaeError(f"the built-in VAE's flags ({flags}) do not apply to --model")
        from pyrovae.usermodel import import_object

        import_object(args.model)  # fail now, before anything is written
        where, _, name = args.model.rpartition(":")
        source = f"{Path(where).resolve()}:{name}" if where.endswith(".py") else args.model
        return {"kind": "user", "source": source, "kwargs": dict(args.model_arg)}
    if args.model_arg:
        raise PyrovaeError("--model-arg applies to --model only")
    values = {
        k: getattr(args, k) if getattr(args, k) not in (None, []) else d
        for k, d in VAE_FLAGS.items()
    }
    variant = _variant(values)[0]
    values.update(
        {k: v for k, v in _sizes_of(variant.get("variant")).items() if getattr(args, k) is None}
    )
    for option, (flag, setting) in VARIANT_OPTIONS.items():
        if values[option] is not None:
            if not values[flag]:
                name, needs = option.replace("_", "-"), flag.replace("_", "-")
                raise PyrovaeError(f"--{name} applies with --{needs} only")
            variant.update(setting(values[option]))
    return {
        "z_dim": _z_dim(values["z_dim"]),
        "hidden": list(values["hidden"]),
        "prior": values["prior"],
        "likelihood": values["likelihood"],
        "guide": values["guide"],
        "net": values["net"],
        "activation": values["activation"],
        "prior_kwargs": dict(values["prior_arg"]),
        "likelihood_kwargs": dict(values["likelihood_arg"]),
        "guide_kwargs": dict(values["guide_arg"]),
        **({"init": values["init"]} if values["init"] != "default" else {}),
        **variant,
    }


#: The flags that make the built-in VAE a variant: flag -> its value -> (the variant's
#: model settings, how the run uses the dataset's labels). At most one applies.
VARIANT_FLAGS: dict[str, Callable[[Any], tuple[dict[str, Any], dict[str, Any]]]] = {
    "conditional": lambda on: ({}, {"labels": "condition"}),
    "labels": lambda n: (
        {"variant": "semi-supervised", **_defaults("semi-supervised", "classifier")},
        {"labels": "semi-supervised", "labelled": n},
    ),
    "clusters": lambda k: (
        {
            "variant": "clusters",
            "clusters": k,
            **_defaults("clusters", "init_after", "learn_weights"),
        },
        {},
    ),
}


#: Options of one variant: option -> (the variant's flag, its model settings).
VARIANT_OPTIONS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "classifier": ("labels", lambda name: {"classifier": name}),
    "cluster_weights": ("clusters", lambda kind: {"learn_weights": kind == "learnt"}),
}


def _defaults(variant: str | None, *names: str) -> dict[str, Any]:
    """The defaults of a variant class's arguments ``names``, written into a new run's
    config so that it does not read as one written before those arguments existed."""
    import inspect

    from pyrovae.variants import VARIANTS

    params = inspect.signature(VARIANTS[variant or "vae"]).parameters
    return {name: params[name].default for name in names}


def _default_epochs(model: dict[str, Any]) -> int:
    """20, or the variant's own ``default_epochs`` (the cluster VAE's: 40)."""
    from pyrovae.variants import VARIANTS

    variant = VARIANTS.get(model.get("variant", "vae")) if model.get("kind") != "user" else None
    return getattr(variant, "default_epochs", 20)


def _sizes_of(variant: str | None) -> dict[str, Any]:
    """The default ``z_dim`` and ``hidden`` of a variant's class (the cluster VAE's differ)."""
    return _defaults(variant, "z_dim", "hidden")


def _variant(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and data settings of the variant flag given, if any."""
    chosen = [f for f in VARIANT_FLAGS if values.get(f)]
    if len(chosen) > 1:
        raise PyrovaeError(f"--{' and --'.join(chosen)} do not combine; pick one")
    return VARIANT_FLAGS[chosen[0]](values[chosen[0]]) if chosen else ({}, {})


def _z_dim(sizes: int | tuple[int, ...]) -> int | list[int]:
    """--z-dim in the config: one size an int (as before), several a list (hierarchical)."""
    if isinstance(sizes, int):
        return sizes
    return int(sizes[0]) if len(sizes) == 1 else [int(s) for s in sizes]


def _loss_flag(args: argparse.Namespace, model: dict[str, Any]) -> str | None:
    """--loss; unset, trace for the VAE and fit's own choice for the rest.

    A variant with a discrete latent (M2's y, the cluster VAE's c) has it summed out by
    TraceEnum_ELBO, which fit picks for it; the named ELBOs would sample it instead.
    """
    from pyrovae.registry import lookup
    from pyrovae.variants import VARIANTS

    discrete = lookup(VARIANTS, model.get("variant", "vae"), "VAE variant").discrete_latent
    if args.loss and discrete:
        raise PyrovaeError(
            f"--loss does not apply here: the discrete latent {discrete} is summed out by "
            f"TraceEnum_ELBO, which --loss {args.loss} would not do; leave it out"
        )
    return args.loss or (None if model.get("kind") == "user" or discrete else "trace")


def _precision_flag(args: argparse.Namespace) -> str:
    """--precision, or what the deprecated --amp means (the two together are refused)."""
    if not args.amp:
        return args.precision or "auto"
    if args.precision not in (None, "bfloat16"):
        raise PyrovaeError(
            f"--amp means --precision bfloat16; drop one of --amp and --precision {args.precision}"
        )
    print("pyrovae train: warning: --amp is deprecated; use --precision bfloat16", file=sys.stderr)
    return "bfloat16"


def _resolved_precision(config: dict[str, Any], device: Any) -> str:
    """The run's precision with auto decided (old runs: their --amp).

    auto is bfloat16 on native hardware for the built-in VAE only: a --model builds its
    distributions in its own code (see pyrovae.precision).
    """
    from pyrovae.precision import resolve_precision

    train_cfg = config["train"]
    if "precision" not in train_cfg:  # written before --precision existed
        return "bfloat16" if train_cfg.get("amp") else "float32"
    safe = config["model"].get("kind") != "user"
    return resolve_precision(train_cfg["precision"], device, safe)


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's config.json, from the command line of a new run."""
    model = _model_config(args)
    return {
        "pyrovae_version": __version__,
        "model": model,
        "data": {
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "binarize": args.binarize,
            "standardize": args.standardize,
            "test_fraction": args.test_fraction,
            **_variant(vars(args))[1],
        },
        "train": {
            "epochs": _default_epochs(model) if args.epochs is None else args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "loss": _loss_flag(args, model),
            "num_particles": args.num_particles,
            "beta": args.beta,
            "kl_warmup": args.kl_warmup,
            "free_bits": args.free_bits,
            "seed": args.seed,
            "precision": _precision_flag(args),
            "checkpoint_every": args.checkpoint_every,
            "on_nan": args.on_nan,
            "missing": args.missing,
        },
    }
