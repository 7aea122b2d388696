"""Dataset name -> loader. A new dataset is one file with a ``load_<name>`` function and one entry here.

Every loader takes ``root`` and ``split`` (plus its own keyword options) and returns a PoseDataset.
"""

from __future__ import annotations

from collections.abc import Callable

from posealign.data.animalpose import load_animalpose
from posealign.data.coco import load_coco
from posealign.data.freihand import load_freihand
from posealign.data.h3d import load_h3d
from posealign.data.human36m import load_human36m
from posealign.data.lsp import load_lsp
from posealign.data.records import PoseDataset
from posealign.data.rhd import load_rhd
from posealign.data.surreal import load_surreal
from posealign.data.synanimal import load_synanimal
from posealign.data.tigdog import load_tigdog

DATASET_LOADERS: dict[str, Callable[..., PoseDataset]] = {
    "surreal": load_surreal,
    "lsp": load_lsp,
    "synanimal": load_synanimal,
    "tigdog": load_tigdog,
    "animalpose": load_animalpose,
    "coco": load_coco,
    "rhd": load_rhd,
    "freihand": load_freihand,
    "h3d": load_h3d,
    "human36m": load_human36m,
}


def load_dataset(name: str, root: str, split: str = "train", **options) -> PoseDataset:
    try:
        loader = DATASET_LOADERS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASET_LOADERS)}") from None
    return loader(root, split=split, **options)
