"""Corner plots of posterior draws (plots only; nothing is computed here)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["corner_plot"]


def corner_plot(idata, path=None, *, var_names: Sequence[str] | None = None,
                truths: Mapping[str, float] | None = None, title: str | None = None):
    """Corner plot of the posterior in ``idata`` (scalar variables only).

    Parameters
    ----------
    idata : arviz.InferenceData
        Its ``posterior`` group; chains are pooled.
    path : str or Path, optional
        PNG file to write (atomically); the figure is returned either way.
    var_names : sequence of str, optional
        Default: every scalar posterior variable (latent vectors are left out),
        in the order of the ``parameter_space`` attribute when present.
    truths : mapping name -> value, optional
        Drawn as lines (the ``corner`` package's truths).
    """
    import json

    import corner
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    post = idata.posterior
    if var_names is None:
        names = [k for k in post.data_vars if post[k].ndim == 2]
        space = post.attrs.get("parameter_space")
        if space:
            order = [p["name"] for p in json.loads(space)["parameters"]]
            names = [n for n in order if n in names] + [n for n in names if n not in order]
    else:
        names = list(var_names)
    data = np.stack([np.asarray(post[n]).reshape(-1) for n in names], axis=1)
    tv = None if truths is None else [truths.get(n) for n in names]
    fig = corner.corner(data, labels=names, truths=tv, show_titles=True,
                        quantiles=[0.16, 0.5, 0.84], title_fmt=".3g")
    if title:
        fig.suptitle(title)
    if path is not None:
        from ..files import atomic_write_bytes
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        atomic_write_bytes(Path(path), buf.getvalue())
        plt.close(fig)
    return fig
