"""Data: what the programs are called with, where it comes from, how it is prepared.

``batches``
    Data in any shape (a tensor, a tuple or dict of tensors, a Dataset, an iterable of
    batches) as the arguments ``model`` and ``guide`` take.
``datasets``
    The bundled MNIST sample, torchvision datasets, a user's arrays and tables.
``binarization``
    Dynamic, static or no binarisation.
``tables``
    CSV tables with empty cells, and per-column standardisation.
``masks``
    Missing entries as a mask (the masking convention), and masks that hide pixels.
``labels``
    How a run uses class labels; the labelled subset of semi-supervised training.
``sequences``
    Token sequences (SMILES, text): tokenizers, the vocabulary, sequence files.
``named_arrays``
    The ``.npz`` arrays of a user's own model, passed by name.
``devices``
    Choosing the device, and placing data on it.
``bundled/``
    The bundled MNIST files and MOSES sample (package data).
"""
