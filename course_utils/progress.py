"""Progress bars: tqdm's notebook bar where it works, its text bar elsewhere, and never a warning.

``tqdm.auto`` picks the notebook bar inside Jupyter, but when ``ipywidgets`` is missing it warns
("IProgress not found...") as it is imported, then falls back to text bars. The course imports it
here only, quietly, and only when a bar is first drawn: importing a course module draws nothing.
"""

from __future__ import annotations

import warnings
from typing import Any


def bar(iterable: Any = None, **kwargs: Any):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one, updated with ``.update(n)``)."""
    with warnings.catch_warnings():  # without ipywidgets tqdm.auto warns, then uses text bars
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
