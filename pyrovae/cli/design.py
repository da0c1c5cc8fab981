"""``pyrovae design``: molecules with a better property, found in a SMILES run's latent space."""

from __future__ import annotations

import argparse

import numpy as np

from pyrovae.cli.common import _add_run_data, _load_run, _positive_int
from pyrovae.errors import PyrovaeError


def _add_design(p: argparse.ArgumentParser) -> None:
    from pyrovae.use.molecules import DESIGNABLE  # numpy only: RDKit is imported on use

    _add_run_data(p)
    p.add_argument(
        "--property",
        choices=DESIGNABLE,
        default="qed",
        help="the property to maximise, computed by RDKit (default qed; logp: Crippen's "
        "logP; penalized-logp: logP - SA - rings over 6 atoms)",
    )
    p.add_argument("--n", type=_positive_int, default=100, help="molecules to write (100)")
    p.add_argument(
        "--out", required=True, help="the .smi file to write: SMILES and property, best first"
    )
    p.add_argument(
        "--starts",
        type=_positive_int,
        default=32,
        help="elites kept, first the best training molecules (default 32)",
    )
    p.add_argument("--rounds", type=_positive_int, default=8, help="rounds of the search (8)")
    p.add_argument(
        "--budget",
        type=_positive_int,
        default=1280,
        help="molecules decoded in all; the prior baseline gets as many (default 1280)",
    )
    p.add_argument("--seed", type=int, default=0, help="default 0")


def _design(args: argparse.Namespace) -> None:
    """pyrovae design: a latent search for molecules, against as many prior samples."""
    from pyrovae.data.sequences import Vocabulary
    from pyrovae.rundir.files import atomic_write, check_output
    from pyrovae.use.design import design

    path = check_output(args.out, (".smi",))
    vae, config, data, _ = _load_run(args)
    vocabulary = config["data"].get("vocabulary")
    vocab = Vocabulary.from_config(vocabulary) if vocabulary is not None else None
    if vocab is None or not vocab.molecules:
        raise PyrovaeError(f"pyrovae design needs a run trained on SMILES; {args.run_dir} is not")
    if data is None:
        raise PyrovaeError("pyrovae design needs the run's training molecules; pass --dataset")
    found = design(
        vae,
        vocab,
        vocab.decode(data.train),
        property=args.property,
        n=args.n,
        starts=args.starts,
        rounds=args.rounds,
        budget=args.budget,
        seed=args.seed,
    )
    if not found.smiles:
        raise PyrovaeError(
            f"the search decoded {found.candidates} strings and none is a new valid "
            "molecule; train the run longer, or give a larger --budget"
        )
    lines = "".join(f"{s} {v:.4f}\n" for s, v in zip(found.smiles, found.values, strict=True))
    atomic_write(path, lambda f: f.write(lines.encode()))
    ours, prior = found.top(10)
    print(
        f"{args.property}: mean of the 10 best of {len(found.smiles)} new valid molecules "
        f"{ours:.4f}, against {prior:.4f} for the 10 best of {found.candidates} prior samples "
        f"({len(found.prior_smiles)} new valid); training molecules: median "
        f"{float(np.median(found.training_values)):.4f}, best "
        f"{float(found.training_values.max()):.4f}"
    )
    print(f"wrote {path} ({len(found.smiles)} molecules)")
