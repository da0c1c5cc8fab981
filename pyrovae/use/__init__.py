"""Using a trained model: applications, anomaly scores, scikit-learn estimators, diagnostics,
figures, the report, sequences.

``applications``
    Embeddings, generation paths, imputation of hidden pixels.
``anomaly``
    Anomaly scores by name (-log p(x), the ELBO, reconstruction, complexity, LLR, a
    likelihood ratio).
``estimators``, ``estimator_base``
    scikit-learn's ``VAEImputer``, ``VAEOutlierDetector`` and ``VAETransformer``
    (``pyrovae.sklearn``), and what they share.
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
    Molecular design: a property predictor on z guiding a search in the latent space.
"""
