"""Using a trained model: applications, diagnostics, figures, the report, sequences.

``applications``
    Embeddings, generation paths, anomaly scores, imputation of hidden pixels.
``diagnostics``
    Posterior collapse: active units and the KL divergence per latent unit.
``plots``
    Figures of a trained VAE, each a returned matplotlib ``Figure``.
``report``
    A run's self-contained HTML report.
``sequences``
    A sequence VAE's samples and reconstructions as text; NLL per token.
``molecules``
    The MOSES metrics of generated SMILES, molecular properties, drawings (RDKit).
``design``
    Molecular design: a property predictor on z and a search in the latent space.
"""
