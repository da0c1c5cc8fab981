"""A SMILES VAE on the bundled MOSES sample: log p(x), and the MOSES metrics of its samples.

The model is the VAE of Gomez-Bombarelli et al. (2018) written as Pyro programs:
z ~ N(0, I), and the SMILES string x ~ p(x | z) = prod_t p(x_t | x_<t, z), a GRU that
writes the molecule token by token (``likelihood="autoregressive"``); the guide reads
the string with a bidirectional GRU (``net="gru"``). ``pyrovae.fit`` trains it like any
other VAE, ``pyrovae.log_marginal_likelihood`` estimates log p(x) of held-out molecules,
and the molecules sampled from the prior are scored with RDKit (validity, uniqueness,
novelty, internal diversity, property distances; docs/howto/molecules.md).

Needs RDKit: pip install 'pyrovae[molecules]'.

    python examples/smiles_vae.py          # pyrovae train's sequence settings: 11 epochs
    python examples/smiles_vae.py --epochs 1 --limit 300 --hidden 32 --num-samples 5 \\
        --samples 50 --heldout 50          # smoke run
"""

from __future__ import annotations

import argparse
import importlib.util

import pyro

import pyrovae
from pyrovae.inference.objectives import get_loss
from pyrovae.use.molecules import canonical, canonical_set, molecule_metrics
from pyrovae.use.sequences import per_token, reconstruction_accuracy, sample_sequences


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=11)
    p.add_argument("--limit", type=int, default=None, help="training molecules (default: 50,000)")
    p.add_argument("--heldout", type=int, default=1000, help="held-out molecules for log p(x)")
    p.add_argument(
        "--num-samples", type=int, default=100, help="importance samples K, each a pass of the GRU"
    )
    p.add_argument("--samples", type=int, default=10000, help="molecules sampled for the metrics")
    p.add_argument("--hidden", type=int, default=128, help="GRU size of encoder and decoder")
    p.add_argument("--z-dim", type=int, default=64)
    args = p.parse_args()
    if importlib.util.find_spec("rdkit") is None:
        raise SystemExit("this example needs RDKit: pip install 'pyrovae[molecules]'")

    # 50,000 training and 5,000 held-out SMILES as token ids (N, L): the tokens, EOS,
    # then PAD; the vocabulary (built from the training split) turns ids back into text.
    data = pyrovae.load_dataset("moses-sample")
    vocabulary = data.vocabulary
    train, test = data.train[: args.limit], data.test[: args.heldout]
    print(
        f"{len(train)} training and {len(test)} held-out molecules, {vocabulary.size} tokens, "
        f"padded length {data.x_dim}"
    )

    vae = pyrovae.VAE(
        x_dim=data.x_dim,
        z_dim=args.z_dim,
        hidden=(args.hidden,),
        net="gru",
        likelihood="autoregressive",
        vocab_size=vocabulary.size,
        likelihood_kwargs={"temperature": 0.7},  # samples at 0.7; log p(x) at 1
    )
    # Token ids are not pixels: no binarisation. As pyrovae train does on sequences: the
    # KL weight rises from 0 over the first epoch, and 6 free bits keep z in use.
    pyrovae.fit(
        vae,
        train,
        epochs=args.epochs,
        batch_size=64,
        lr=2e-3,
        loss=get_loss("trace", free_bits=7.5, free_bits_per_unit=True),
        binarize="none",
        kl_warmup=1.0,
        precision="float32",
        validation=test,
    )

    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, test, num_samples=args.num_samples)
    figures = per_token(-est.mean, test)
    print(
        f"held-out ELBO {est.elbo.mean():.2f} nats, log p(x) {est.mean:.2f} +- {est.stderr:.2f} "
        f"nats per molecule (K={args.num_samples}); NLL per token "
        f"{figures['test_nll_per_token']:.4f} nats (EOS included), perplexity "
        f"{figures['test_perplexity']:.3f}"
    )
    vae.eval()
    accuracy = reconstruction_accuracy(vae, test, vocabulary, canonical)
    print(f"reconstruction accuracy {accuracy:.4f} (greedy decode of the posterior mean)")

    pyro.set_rng_seed(0)
    samples = sample_sequences(vae, args.samples, vocabulary)
    training = canonical_set(vocabulary.decode(train))
    found = molecule_metrics(samples, training, vocabulary.decode(test))
    print(
        f"{found.n} prior samples: validity {found.validity:.4f}, uniqueness "
        f"{found.uniqueness:.4f}, novelty {found.novelty:.4f}, internal diversity "
        f"{found.internal_diversity:.4f}"
    )
    distances = ", ".join(f"{name} {d:.4f}" for name, d in found.distances.items())
    print(f"Wasserstein distances to the held-out molecules' properties: {distances}")
    valid = [s for s in samples if canonical(s) is not None][:5]
    print("valid samples:", *(valid if valid else ["(none)"]), sep="\n  ")


if __name__ == "__main__":
    main()
