"""Inference: everything computed from a model's and a guide's traces.

``traces``
    The one helper that traces the guide and replays the model (K particles at once),
    and the probe that learns a program's shape.
``sites``, ``programs``, ``enumeration``, ``rng``
    What a trace says about its sites and plates; the modules behind a program; the
    discrete sites summed exactly; the random number generators.
``logweights``, ``particles``, ``passes``, ``processes``
    Per-datapoint log weights; K particles vectorised or replicated; passes of bounded
    memory; the processes of a ``torch.distributed`` group that share them.
``marginal``, ``ais``
    log p(x) by importance sampling, the IWAE bound, the ELBO's terms; annealed
    importance sampling.
``objectives``, ``trace_elbo``, ``iwae``, ``svi``, ``precision``
    The training objectives by name, each in its module; the SVI that steps them; the
    precision of the training step.
``imputation``
    Missing entries filled from the model.
"""
