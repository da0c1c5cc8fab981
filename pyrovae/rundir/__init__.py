"""Run folders: a library format that ``pyrovae train`` and ``fit(..., run_dir=...)`` share.

``config``
    ``config.json``: its format version, the one upgrade of older configs, the files a
    run names (found again from any working directory).
``defaults``
    What a new run gets where its settings say nothing, by the kind of data.
``build``
    The one builder: a config to its data and its model.
``checkpoint``
    ``checkpoint.pt``: tensors and plain data, read without unpickling code.
``folder``
    Writing a run folder (:class:`~pyrovae.rundir.folder.RunFolder`), loading one
    (:func:`~pyrovae.rundir.folder.load`, :func:`~pyrovae.rundir.folder.load_run`).
``files``
    Atomic writes of every file a run or a command writes.
``lock``
    One training process per run folder.
"""
