"""Body plans: what kind of figure a built-in benchmark draws, each a registry entry.

A body plan is its keypoint set, its two domains (a style type that adds the body's pose knobs to
the shared :class:`~posealign.benchmark.domains.DomainStyle`), a function that draws one figure
(pose, placement, capsules) and the colour of limb-like distractor strokes. Everything else of an
image (clutter, background, rasteriser, camera, COCO files) is shared, so a new body plan is a pose
module, a figure module, a domains module and one entry in ``BODY_PLANS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from posealign.benchmark.colors import fur_color, skin_color
from posealign.benchmark.domains import SOURCE_STYLE, TARGET_STYLE, DomainStyle, HumanStyle
from posealign.benchmark.draws import Draws
from posealign.benchmark.hand_domains import HAND_SOURCE_STYLE, HAND_TARGET_STYLE, HandStyle
from posealign.benchmark.hand_figure import draw_hand
from posealign.benchmark.human_figure import draw_human
from posealign.benchmark.quadruped_domains import QUADRUPED_SOURCE_STYLE, QUADRUPED_TARGET_STYLE, QuadrupedStyle
from posealign.benchmark.quadruped_figure import draw_quadruped
from posealign.keypoints import ANIMAL14, BODY16, HAND21, KeypointSet

# draw_figure(draws, style, layers, image side) appends the figure's capsules to layers and returns
# its keypoints in pixels (x + iy, keypoint-set order) and its scale (pixels per figure unit).
DrawFigure = Callable[[Draws, DomainStyle, list, int], tuple[list[complex], float]]


@dataclass(frozen=True)
class BodyPlan:
    """One kind of figure: its keypoints, its two domains and how to draw it."""

    name: str
    keypoint_set: KeypointSet
    style_type: type[DomainStyle]
    source_style: DomainStyle
    target_style: DomainStyle
    draw_figure: DrawFigure
    limb_color: Callable[[Draws], tuple[float, float, float]]  # half of the distractor strokes take it

    def check_style(self, style: DomainStyle) -> None:
        if not isinstance(style, self.style_type):
            raise TypeError(f"body plan {self.name!r} draws {self.style_type.__name__}s, not {type(style).__name__}")


HUMAN = BodyPlan("human", BODY16, HumanStyle, SOURCE_STYLE, TARGET_STYLE, draw_human, skin_color)
QUADRUPED = BodyPlan(
    "quadruped",
    ANIMAL14,
    QuadrupedStyle,
    QUADRUPED_SOURCE_STYLE,
    QUADRUPED_TARGET_STYLE,
    draw_quadruped,
    fur_color,
)
HAND = BodyPlan("hand", HAND21, HandStyle, HAND_SOURCE_STYLE, HAND_TARGET_STYLE, draw_hand, skin_color)
BODY_PLANS = {plan.name: plan for plan in (HUMAN, QUADRUPED, HAND)}


def get_body_plan(name: str) -> BodyPlan:
    if name not in BODY_PLANS:
        raise ValueError(f"unknown benchmark body {name!r}; choose one of {sorted(BODY_PLANS)}")
    return BODY_PLANS[name]
