"""Keypoint sets as data: names, left/right flip pairs, skeleton links and evaluation groups.

A keypoint set is the contract between datasets, the model (one heatmap per keypoint), the metrics
(groups of METHOD.md) and the overlays (skeleton). New sets come from a COCO ``categories`` entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeypointSet:
    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    # Evaluation groups as the papers report them: group name -> keypoint indices.
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Keypoints averaged into "All" (METHOD.md: the 12 limb keypoints for Body16).
    all_group: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.names)
        for i, j in (*self.flip_pairs, *self.skeleton):
            if not (0 <= i < k and 0 <= j < k):
                raise ValueError(f"keypoint set {self.name!r}: index pair ({i}, {j}) outside 0..{k - 1}")
        if not self.all_group:
            object.__setattr__(self, "all_group", tuple(range(k)))

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def to_coco_category(self, category_id: int = 1) -> dict:
        """The COCO ``categories`` entry for this set (1-based skeleton, as COCO writes it)."""
        return {
            "id": category_id,
            "name": self.name,
            "supercategory": self.name,
            "keypoints": list(self.names),
            "skeleton": [[i + 1, j + 1] for i, j in self.skeleton],
        }


BODY16 = KeypointSet(
    name="body16",
    names=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ),
    groups={
        "Sld": (12, 13),
        "Elb": (11, 14),
        "Wrist": (10, 15),
        "Hip": (2, 3),
        "Knee": (1, 4),
        "Ankle": (0, 5),
    },
    all_group=(12, 13, 11, 14, 10, 15, 2, 3, 1, 4, 0, 5),
)

ANIMAL18 = KeypointSet(
    name="animal18",
    names=(
        "left_eye",
        "right_eye",
        "chin",
        "left_front_hoof",
        "right_front_hoof",
        "left_back_hoof",
        "right_back_hoof",
        "hip",
        "left_front_knee",
        "right_front_knee",
        "left_back_knee",
        "right_back_knee",
        "left_shoulder",
        "right_shoulder",
        "left_front_elbow",
        "right_front_elbow",
        "left_back_elbow",
        "right_back_elbow",
    ),
    flip_pairs=((0, 1), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17)),
    skeleton=(
        (0, 2),
        (1, 2),
        (2, 12),
        (2, 13),
        (12, 7),
        (13, 7),
        (12, 14),
        (14, 8),
        (8, 3),
        (13, 15),
        (15, 9),
        (9, 4),
        (7, 16),
        (16, 10),
        (10, 5),
        (7, 17),
        (17, 11),
        (11, 6),
    ),
    groups={
        "Eye": (0, 1),
        "Chin": (2,),
        "Hoof": (3, 4, 5, 6),
        "Hip": (7,),
        "Knee": (8, 9, 10, 11),
        "Shoulder": (12, 13),
        "Elbow": (14, 15, 16, 17),
    },
)

ANIMAL14 = KeypointSet(
    name="animal14",
    names=(
        "left_eye",
        "right_eye",
        "left_front_hoof",
        "right_front_hoof",
        "left_back_hoof",
        "right_back_hoof",
        "left_front_knee",
        "right_front_knee",
        "left_back_knee",
        "right_back_knee",
        "left_front_elbow",
        "right_front_elbow",
        "left_back_elbow",
        "right_back_elbow",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)),
    skeleton=(
        (0, 1),
        (10, 6),
        (6, 2),
        (11, 7),
        (7, 3),
        (12, 8),
        (8, 4),
        (13, 9),
        (9, 5),
        (10, 11),
        (12, 13),
        (10, 12),
        (11, 13),
    ),
    groups={"Eye": (0, 1), "Hoof": (2, 3, 4, 5), "Knee": (6, 7, 8, 9), "Elbow": (10, 11, 12, 13)},
)

_FINGERS = ("thumb", "index", "middle", "ring", "little")
_JOINTS = ("mcp", "pip", "dip", "tip")

# The anchors' hand order (UDAPE's and RegDA's RHD, H3D and FreiHAND classes): the wrist, then each
# finger from thumb to little, each from its base joint to its tip. The thumb's joints keep the
# finger names (mcp, pip, dip) as the anchors' groups do, though anatomy calls them CMC, MCP and IP.
HAND21 = KeypointSet(
    name="hand21",
    names=("wrist", *(f"{finger}_{joint}" for finger in _FINGERS for joint in _JOINTS)),
    flip_pairs=(),
    skeleton=tuple(
        pair
        for f in range(5)
        for pair in ((0, 1 + 4 * f), (1 + 4 * f, 2 + 4 * f), (2 + 4 * f, 3 + 4 * f), (3 + 4 * f, 4 + 4 * f))
    ),
    groups={
        "MCP": (1, 5, 9, 13, 17),
        "PIP": (2, 6, 10, 14, 18),
        "DIP": (3, 7, 11, 15, 19),
        "Fingertip": (4, 8, 12, 16, 20),
    },
)

KEYPOINT_SETS: dict[str, KeypointSet] = {s.name: s for s in (BODY16, ANIMAL18, ANIMAL14, HAND21)}

_SIDE = re.compile(r"(?i)(^|[_\s-])(left|right|l|r)(?=$|[_\s-])")


def _side_free_name(name: str) -> tuple[str, str | None]:
    """'left_front_knee' -> ('front_knee', 'left'); names without a side -> (name, None)."""
    match = _SIDE.search(name)
    if match is None:
        return name, None
    side = "left" if match.group(2).lower() in ("left", "l") else "right"
    stripped = (name[: match.start()] + name[match.end() :]).strip("_- ")
    return stripped, side


def keypoint_set_from_coco_category(category: dict) -> KeypointSet:
    """Build a keypoint set from a COCO ``categories`` entry (``keypoints`` + 1-based ``skeleton``).

    Left/right pairs are found from the names (``left_x``/``right_x``, ``l_x``/``r_x``); each pair
    becomes one evaluation group, every other keypoint a group of its own.
    """
    if "keypoints" not in category or not category["keypoints"]:
        raise ValueError(f"COCO category {category.get('name')!r} has no 'keypoints' list")
    names = tuple(str(n) for n in category["keypoints"])
    skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in category.get("skeleton", []))
    by_base: dict[str, dict[str, int]] = {}
    order: list[str] = []
    for index, name in enumerate(names):
        base, side = _side_free_name(name)
        if base not in by_base:
            by_base[base] = {}
            order.append(base)
        by_base[base][side or "none"] = index
    flip_pairs, groups = [], {}
    for base in order:
        sides = by_base[base]
        if "left" in sides and "right" in sides:
            flip_pairs.append((sides["left"], sides["right"]))
        groups[base] = tuple(sorted(sides.values()))
    return KeypointSet(
        name=str(category.get("name", "custom")),
        names=names,
        flip_pairs=tuple(flip_pairs),
        skeleton=skeleton,
        groups=groups,
    )


def get_keypoint_set(name: str) -> KeypointSet:
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown keypoint set {name!r}; known: {sorted(KEYPOINT_SETS)}") from None
