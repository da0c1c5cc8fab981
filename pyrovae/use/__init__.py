"""Using a trained model: applications, diagnostics, figures, the report.

``applications``
    Embeddings, generation paths, anomaly scores, imputation of hidden pixels.
``diagnostics``
    Posterior collapse: active units and the KL divergence per latent unit.
``plots``
    Figures of a trained VAE, each a returned matplotlib ``Figure``.
``report``
    A run's self-contained HTML report.
"""
