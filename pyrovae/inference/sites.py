"""What a trace says about its sites: which are sampled, under which plates.

A Pyro trace records, for every ``pyro.sample`` site, its distribution, value, scale,
mask and the plates it lies under (``cond_indep_stack``). Everything pyrovae reads from
traces starts here: the sample sites (:func:`sample_sites`), the per-datapoint plate of
a program whatever its name (:func:`find_plate`), and a site's frame of that plate and
of the particle plate (:func:`data_frame`, :func:`plate_dim`).
"""

from __future__ import annotations

from pyro.poutine.util import site_is_subsample

from pyrovae.errors import Param, PyrovaeError

#: The plate of K particles (importance samples, AIS chains) left of a program's plates.
PARTICLE_PLATE = "particles"
#: The plate name of pyrovae's own programs; a user's program may name its plate anything.
DATA_PLATE = "data"


def sample_sites(trace, observed: bool | None = None):
    """The trace's sample sites (not plates' subsample sites, not deterministic ones)."""
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("_deterministic"):
            continue
        if observed is None or bool(site["is_observed"]) == observed:
            yield site


def _frame_size(site: dict, frame) -> int:
    """The size of a plate in a site: its declared size, or the site's batch shape there."""
    if frame.size is not None and frame.size > 0:
        return int(frame.size)
    shape = site["fn"].batch_shape
    return int(shape[frame.dim]) if len(shape) >= -frame.dim else 1


def find_plate(traces: list, batch_size: int, name: str | None = None) -> str:
    """The name of the per-datapoint plate of a program traced on ``batch_size`` datapoints.

    With ``name`` given, checks that such a plate exists. Otherwise the outermost plate
    (vectorised, not the particle plate) whose size is the minibatch's; a one-line error
    when none or several fit.
    """
    fits: dict[str, int] = {}
    names: set[str] = set()
    for trace in traces:
        for site in sample_sites(trace):
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized or frame.name == PARTICLE_PLATE:
                    continue
                names.add(frame.name)
                if _frame_size(site, frame) == batch_size:
                    fits[frame.name] = min(fits.get(frame.name, 0), frame.dim)
    if name is not None:
        if name not in names:
            raise PyrovaeError(
                f"no plate named {name!r} in the model or guide; their plates are "
                f"{sorted(names) or 'none'}"
            )
        return name
    if not fits:
        raise PyrovaeError(
            f"no plate of the model or guide has the minibatch's size {batch_size} "
            f"(plates: {sorted(names) or 'none'}); put the per-datapoint sites under "
            "pyro.plate(name, len(x))"
        )
    outermost = min(fits.values())
    chosen = sorted(n for n, d in fits.items() if d == outermost)
    if len(chosen) > 1:
        raise PyrovaeError(
            f"several plates have the minibatch's size {batch_size}: {chosen}; name the "
            "per-datapoint one with ",
            Param("plate"),
        )
    return chosen[0]


def data_frame(site: dict, plate: str = DATA_PLATE):
    """The site's frame of the per-datapoint plate; an error names a site outside it."""
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            return frame
    raise PyrovaeError(
        f"sample site {site['name']!r} is not inside pyro.plate({plate!r}, ...); "
        "per-datapoint log densities need every sample site under the data plate"
    )


def plate_dim(site: dict, name: str) -> int | None:
    """The batch dimension of the site's plate called ``name``, or None."""
    for frame in site["cond_indep_stack"]:
        if frame.name == name:
            return frame.dim
    return None


def subsample_scale(frame) -> float:
    """``full_size / size`` of a subsampled plate's frame: what one minibatch stands for."""
    full, size = frame.full_size, frame.size
    return full / size if full and size and full > 0 and size > 0 else 1.0
