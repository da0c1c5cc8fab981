"""A sentence VAE (Bowman et al., 2016) on a corpus made offline from Python's docstrings.

No text corpus is bundled with pyrovae and nothing is downloaded here: the sentences are
the first sentences of the docstrings of the public functions, classes and methods of
51 standard-library modules, lower-cased and cut into words (letters only),
kept when 4 to 20 words long. The corpus therefore depends a little on the Python
version. They are shuffled with a fixed seed and the last tenth held out; held-out
sentences with a word the training sentences lack are dropped, since a word outside
the vocabulary cannot be encoded.

The model: z ~ N(0, I) and the sentence x ~ prod_t p(x_t | x_<t, z) from a GRU
(``likelihood="autoregressive"``); the guide reads the sentence with a bidirectional
GRU (``net="gru"``). Word dropout (``--word-dropout``), a KL warm-up over the first
third of the epochs (or ``--kl-cycles``) and ``--free-bits`` act against a decoder that
ignores z (docs/howto/sequences.md). The script prints the held-out NLL per sentence
and per word, the perplexity, the KL term, samples from the prior, and one homotopy:
the greedy decodes along the straight line between the latent means of two held-out
sentences.

    python examples/text_vae.py                     # 30 epochs
    python examples/text_vae.py --epochs 1 --limit 300 --num-samples 5   # smoke run
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import re
import warnings

import pyro

import pyrovae
from pyrovae.data.datasets import load_sequences
from pyrovae.use.applications import interpolate
from pyrovae.use.diagnostics import latent_units
from pyrovae.use.sequences import per_token, sample_sequences

MODULES = (
    "abc argparse array base64 bisect calendar cmath codecs collections colorsys "
    "configparser contextlib copy csv dataclasses datetime decimal difflib enum filecmp "
    "fnmatch fractions functools glob gzip hashlib heapq html inspect itertools json "
    "logging math operator os os.path pathlib pprint random re shlex shutil statistics "
    "string struct tempfile textwrap time types uuid zipfile"
).split()


def first_sentence(doc: str) -> list[str]:
    """The words of a docstring's first sentence, lower case, letters only."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]
    return re.findall(r"[a-z]+", sentence.lower())


def docstring_sentences() -> list[str]:
    """Distinct sentences of 4 to 20 words from the public callables of ``MODULES``."""
    found: set[str] = set()

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj) if getattr(obj, "__doc__", None) else None
        words = first_sentence(doc) if doc else []
        if 4 <= len(words) <= 20:
            found.add(" ".join(words))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases warn when their doc is read
        for name in MODULES:
            for attr, obj in sorted(vars(importlib.import_module(name)).items()):
                if attr.startswith("_") or not callable(obj):
                    continue
                add(obj)
                if inspect.isclass(obj):
                    for method_name, method in sorted(vars(obj).items()):
                        if not method_name.startswith("_") and callable(method):
                            add(method)
    return sorted(found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--limit", type=int, default=None, help="training sentences (default: all)")
    p.add_argument("--num-samples", type=int, default=1000, help="importance samples, K")
    p.add_argument(
        "--word-dropout", type=float, default=0.25, help="probability of <unk> for an input word"
    )
    p.add_argument(
        "--kl-cycles", type=int, default=0, help="cyclical KL annealing (0: warm up over a third)"
    )
    p.add_argument("--free-bits", type=float, default=0.0, help="nats of free bits for z")
    p.add_argument("--hidden", type=int, default=256, help="GRU size of encoder and decoder")
    p.add_argument("--z-dim", type=int, default=32)
    args = p.parse_args()

    sentences = docstring_sentences()
    random.Random(0).shuffle(sentences)
    cut = len(sentences) - len(sentences) // 10
    train, held_out = sentences[:cut][: args.limit], sentences[cut:]
    known = {word for s in train for word in s.split()}
    held_out = [s for s in held_out if set(s.split()) <= known]
    # The last len(held_out) texts are held out; the vocabulary comes from the rest.
    data = load_sequences(
        train + held_out,
        tokenizer="words",
        test_fraction=len(held_out) / (len(train) + len(held_out)),
    )
    vocabulary = data.vocabulary
    print(
        f"{len(data.train)} training and {len(data.test)} held-out sentences, "
        f"{vocabulary.size} tokens (4 special), padded length {data.x_dim}"
    )

    vae = pyrovae.VAE(
        x_dim=data.x_dim,
        z_dim=args.z_dim,
        hidden=(args.hidden,),
        net="gru",
        likelihood="autoregressive",
        likelihood_kwargs={"word_dropout": args.word_dropout},
        vocab_size=vocabulary.size,
    )
    pyrovae.fit(
        vae,
        data.train,
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        binarize="none",
        loss=pyrovae.FreeBits_ELBO(args.free_bits) if args.free_bits else None,
        kl_warmup=0.0 if args.kl_cycles else args.epochs / 3,
        kl_cycles=args.kl_cycles,
        validation=data.test,
    )

    test = data.test
    est = pyrovae.log_marginal_likelihood(vae.model, vae.guide, test, num_samples=args.num_samples)
    figures = per_token(-est.mean, test)
    terms = pyrovae.elbo_terms(vae.model, vae.guide, test)
    units = latent_units(vae.model, vae.guide, test)["z"]
    print(
        f"held-out NLL {-est.mean:.2f} +- {est.stderr:.2f} nats per sentence (K="
        f"{args.num_samples}), {figures['test_nll_per_token']:.4f} nats per word "
        f"(end of sentence included): perplexity {figures['test_perplexity']:.2f}"
    )
    print(
        f"ELBO {terms.elbo.mean():.2f} = reconstruction {terms.log_likelihood.mean():.2f} "
        f"- KL {terms.kl.mean():.2f} nats per sentence; {units.active_units} of "
        f"{units.variance.numel()} latent units active"
    )

    vae.eval()
    pyro.set_rng_seed(0)
    print("samples from the prior:")
    for text in sample_sequences(vae, 5, vocabulary):
        print("  " + text)
    first, last = vocabulary.decode(test[:2])
    print(f"homotopy from {first!r} to {last!r} (greedy decodes along the line in z):")
    for text in vocabulary.decode(interpolate(vae, test[0], test[1], steps=7)):
        print("  " + text)


if __name__ == "__main__":
    main()
