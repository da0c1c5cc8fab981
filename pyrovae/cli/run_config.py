"""``pyrovae train``'s flags, made into a new run's ``config.json``.

The model part names the built-in VAE's parts and variant (or the user's class); the
data and train parts hold what the run needs to be resumed exactly (the format:
:mod:`pyrovae.rundir.config`). Variant flags and their options are looked up in tables
(``VARIANT_FLAGS``, ``VARIANT_OPTIONS``); every default comes from the class's
signature (the variant's, then the VAE's).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrovae._version import __version__
from pyrovae.errors import PyrovaeError
from pyrovae.models.protocol import declared

#: The flags that set the built-in VAE's constructor arguments: flag -> argument.
VAE_ARGUMENTS = {
    "z_dim": "z_dim",
    "hidden": "hidden",
    "prior": "prior",
    "likelihood": "likelihood",
    "guide": "posterior",
    "net": "net",
    "activation": "activation",
    "init": "init",
}
#: The built-in VAE's other flags: its variants, and the arguments of its parts.
PART_ARGUMENTS = {"prior_arg": "prior", "likelihood_arg": "likelihood", "guide_arg": "posterior"}
VARIANT_SWITCHES = ("conditional", "labels", "classifier", "clusters", "cluster_weights")


def _given(args: argparse.Namespace, flag: str) -> bool:
    return getattr(args, flag) not in (None, [])


def _model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The "model" part of a new run's config: the VAE's settings, or the user's class."""
    own = [*VAE_ARGUMENTS, *PART_ARGUMENTS, *VARIANT_SWITCHES, "word_dropout"]
    given = [k for k in own if _given(args, k)]
    if args.model:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise PyrovaeError(f"the built-in VAE's flags ({flags}) do not apply to --model")
        from pyrovae.models.user import import_object

        import_object(args.model)  # fail now, before anything is written
        where, _, name = args.model.rpartition(":")
        source = f"{Path(where).resolve()}:{name}" if where.endswith(".py") else args.model
        return {"kind": "user", "source": source, "kwargs": dict(args.model_arg)}
    if args.model_arg:
        raise PyrovaeError("--model-arg applies to --model only")
    variant = _variant(vars(args))[0]
    for option, (flag, setting) in VARIANT_OPTIONS.items():
        if getattr(args, option) is not None:
            if not _given(args, flag):
                name, needs = option.replace("_", "-"), flag.replace("_", "-")
                raise PyrovaeError(f"--{name} applies with --{needs} only")
            variant.update(setting(getattr(args, option)))
    chosen = variant.get("variant", "vae")
    kind = _data_defaults(args)
    brought = [VARIANT_DEFAULTS[f] for f in VARIANT_DEFAULTS if vars(args).get(f)]
    defaults = {**kind.model, **{k: v for d in brought for k, v in d.items()}}
    settings = {
        argument: getattr(args, flag)
        if _given(args, flag)
        else defaults.get(argument, _default(chosen, argument))
        for flag, argument in VAE_ARGUMENTS.items()
    }
    settings.update(z_dim=_z_dim(settings["z_dim"]), hidden=list(settings["hidden"]))
    parts = {f"{part}_kwargs": dict(getattr(args, flag)) for flag, part in PART_ARGUMENTS.items()}
    if args.word_dropout is not None:
        parts["likelihood_kwargs"]["word_dropout"] = args.word_dropout
    if settings["likelihood"] == defaults.get("likelihood"):
        parts["likelihood_kwargs"] = {**kind.likelihood_kwargs, **parts["likelihood_kwargs"]}
    return {"kind": "vae", "variant": "vae", **settings, **parts, **variant}


def _data_defaults(args: argparse.Namespace) -> Any:
    """The defaults of the kind of data the run trains on (``DATA_DEFAULTS``)."""
    from pyrovae.rundir.defaults import DATA_DEFAULTS, data_kind

    return DATA_DEFAULTS[data_kind(args.dataset, args.column, args.missing)]


def _kl_warmup(args: argparse.Namespace) -> float:
    """--kl-warmup; unset, none beside --kl-cycles (the two do not combine), else the
    default of the data."""
    if args.kl_warmup is None and args.kl_cycles:
        return 0.0
    return _training_default(args, "kl_warmup", 0.0)


def _training_default(args: argparse.Namespace, name: str, default: Any) -> Any:
    """A training flag as given; unset, the default of the run's kind of data, else
    ``default``."""
    value = getattr(args, name)
    if value is not None:
        return value
    return _data_defaults(args).training.get(name, default)


def _per_unit(args: argparse.Namespace) -> bool:
    """--free-bits-per-unit; unset, the sequence default where free bits are on at all."""
    if args.free_bits_per_unit is not None:
        return args.free_bits_per_unit
    return _training_default(args, "free_bits_per_unit", False) and bool(
        _training_default(args, "free_bits", 0.0)
    )


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


#: What a variant flag sets where the other flags say nothing. A conditional VAE's
#: latent is small, so that z cannot carry the class and the decoder has to listen to y:
#: with z of 50 only half the samples of ``sample --label K`` were labelled K
#: (``benchmarks/conditional_samples.py``; the figures in ``docs/howto/conditional.md``).
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {"conditional": {"z_dim": 4}}


#: Options of one variant: option -> (the variant's flag, its model settings).
VARIANT_OPTIONS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "classifier": ("labels", lambda name: {"classifier": name}),
    "cluster_weights": ("clusters", lambda kind: {"learn_weights": kind == "learnt"}),
}


def _default(variant: str, argument: str) -> Any:
    """The default of a constructor argument: the variant's class's, else the VAE's."""
    from pyrovae.models.variants import VARIANTS

    for cls in (VARIANTS[variant], VARIANTS["vae"]):
        params = inspect.signature(cls).parameters
        if argument in params:
            return params[argument].default
    raise KeyError(argument)


def _defaults(variant: str | None, *names: str) -> dict[str, Any]:
    """The defaults of a variant class's arguments ``names``, written into a new run's
    config, so that every setting of a run is in its config."""
    return {name: _default(variant or "vae", name) for name in names}


def _epochs(args: argparse.Namespace, model: dict[str, Any]) -> int | None:
    """--epochs; unset, None where the kind of data counts a budget of steps (the epochs
    follow from the training split's size), else the model's default."""
    if args.epochs is not None:
        return args.epochs
    return None if _data_defaults(args).steps else _default_epochs(model)


def _particles(args: argparse.Namespace) -> int | None:
    """--num-particles; unset, the data's default where its default loss is the run's."""
    if args.num_particles is not None or args.loss is not None:
        return args.num_particles
    return _data_defaults(args).training.get("num_particles")


def _default_epochs(model: dict[str, Any]) -> int:
    """The epochs the model's class declares (the contract's 20; the cluster VAE's 40)."""
    return declared(_model_class(model), "default_epochs")


def _model_class(model: dict[str, Any]) -> type:
    """The class a new run's model settings name: a built-in variant, or the user's."""
    return _kind(model).model_class(model)


def _kind(model: dict[str, Any]) -> Any:
    """The kind of model a new run's settings name (``pyrovae.rundir.build.MODEL_KINDS``)."""
    from pyrovae.rundir.build import model_kind  # torch and Pyro: not for --help

    return model_kind(model)


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
    discrete = declared(_model_class(model), "discrete_latent")
    if args.loss and discrete:
        raise PyrovaeError(
            f"--loss does not apply here: the discrete latent {discrete} is summed out by "
            f"TraceEnum_ELBO, which --loss {args.loss} would not do; leave it out"
        )
    if args.loss or discrete:
        return args.loss
    return _training_default(args, "loss", _kind(model).default_loss)


def _precision_flag(args: argparse.Namespace) -> str:
    """--precision, or what the deprecated --amp means (the two together are refused)."""
    if not args.amp:
        return args.precision or _training_default(args, "precision", "auto")
    if args.precision not in (None, "bfloat16"):
        raise PyrovaeError(
            f"--amp means --precision bfloat16; drop one of --amp and --precision {args.precision}"
        )
    print("pyrovae train: warning: --amp is deprecated; use --precision bfloat16", file=sys.stderr)
    return "bfloat16"


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's config.json, from the command line of a new run."""
    from pyrovae.rundir.config import FORMAT_VERSION

    model = _model_config(args)
    return {
        "format_version": FORMAT_VERSION,
        "pyrovae_version": __version__,
        "model": model,
        "data": {
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "binarize": args.binarize,
            "standardize": args.standardize,
            "standardizer": None,
            "test_fraction": args.test_fraction,
            "labels": None,
            "tokenizer": args.tokenizer,
            "column": args.column,
            "vocabulary": None,
            **_variant(vars(args))[1],
        },
        "train": {
            "epochs": _epochs(args, model),
            "batch_size": _training_default(args, "batch_size", 128),
            "lr": _training_default(args, "lr", 1e-3),
            "loss": _loss_flag(args, model),
            "num_particles": _particles(args),
            "beta": args.beta,
            "kl_warmup": _kl_warmup(args),
            "kl_cycles": args.kl_cycles,
            "free_bits": _training_default(args, "free_bits", 0.0),
            "free_bits_per_unit": _per_unit(args),
            "seed": args.seed,
            "precision": _precision_flag(args),
            "checkpoint_every": args.checkpoint_every,
            "on_nan": args.on_nan,
            "missing": args.missing,
            "early_stopping": args.early_stopping,
        },
        "files": {},
    }
