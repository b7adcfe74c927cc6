"""Keypoint-layout registry: everything the box, mask, pose-feature and rendering code needs to know
about one 2-D skeleton format, as data.

A ``Layout`` names its joints, says which joints belong to each entity, which *box rule* builds each
entity's box, and gives anatomical *roles* (``"neck"``, ``"l_wrist"`` ...) so the rules never hard-code
joint indices. Adding a layout (coco18_hands28, coco17, miga22, ...) is a data-only change: build a
``Layout`` and ``register_layout`` it. An entity a layout cannot provide (e.g. ``lower_body`` on a
seated upper-body layout) is simply absent from its ``entity_joints`` and is refused with a clear error.

Coordinates everywhere are image pixels, x to the right, y down; "left"/"right" are the subject's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

#: The six entities of Micro-DualNet on MA-52 (design.md §1), in the model's K order.
ENTITIES = ("head", "face", "left_hand", "right_hand", "torso", "lower_body")

#: Box rules an entity may use (see ``mdn_fast.skeleton.boxes``):
#:   "extent"         box around the entity's confident joints plus a margin
#:   "openpose_hand"  OpenPose's hand box from shoulder, elbow and wrist (``hand_arm_roles``)
#:   "openpose_face"  OpenPose's face box from nose/neck, eyes and ears (roles below)
BOX_RULES = ("extent", "openpose_hand", "openpose_face")

#: Roles the "openpose_face" rule reads.
FACE_ROLES = ("nose", "neck", "l_eye", "r_eye", "l_ear", "r_ear")


class FrozenDict(dict):
    """A read-only dict. Unlike ``types.MappingProxyType`` it pickles and deep-copies, so a ``Layout``
    (and every module or dataset holding one) survives ``copy.deepcopy``, ``pickle`` and DataLoader
    workers started with spawn/forkserver."""

    __slots__ = ()

    def _readonly(self, *args, **kwargs):
        raise TypeError("a Layout's mappings are read-only; build a new Layout and register_layout it")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __reduce__(self):
        # rebuild from a plain dict: the default dict-subclass pickling would call __setitem__
        return (type(self), (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self     # immutable: values are ints, strings and tuples of them

    def __repr__(self):
        return f"FrozenDict({dict.__repr__(self)})"


@dataclass(frozen=True)
class Layout:
    """One keypoint format.

    name           registry key, e.g. ``"body25"``
    joint_names    ``J`` names in the order keypoints arrive (``[..., J, 3]``)
    entity_joints  entity -> joint indices owned by it (pose features, "extent" boxes); only the
                   entities listed here are supported by the layout
    roles          anatomical role -> joint index (``"nose"``, ``"neck"``, ``"l_shoulder"`` ...)
    box_rules      entity -> one of ``BOX_RULES``; entities not listed use ``"extent"``
    hand_arm_roles hand entity -> (shoulder, elbow, wrist) roles for the ``"openpose_hand"`` rule
    skeleton       joint-index edges drawn by renderers
    center_joints  candidate joint sets for the body centre, in priority order; a frame's centre is the
                   mean of a set when all its joints are confident
    scale_pairs    candidate (joint a, joint b, factor) for the body scale, in priority order; scale =
                   factor * |a - b| (factors bring every pair to "torso length" units, neck–mid-hip = 1)
    """

    name: str
    joint_names: tuple[str, ...]
    entity_joints: Mapping[str, tuple[int, ...]]
    roles: Mapping[str, int] = field(default_factory=dict)
    box_rules: Mapping[str, str] = field(default_factory=dict)
    hand_arm_roles: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    skeleton: tuple[tuple[int, int], ...] = ()
    center_joints: tuple[tuple[int, ...], ...] = ()
    scale_pairs: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self):
        J = len(self.joint_names)
        where = f"Layout {self.name!r}"
        if J == 0:
            raise ValueError(f"{where}: joint_names is empty")
        # Freeze the mappings so a registered layout cannot be changed behind the registry's back.
        ej = {str(e): tuple(int(j) for j in js) for e, js in dict(self.entity_joints).items()}
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        object.__setattr__(self, "entity_joints", FrozenDict(ej))
        object.__setattr__(self, "roles", FrozenDict({str(r): int(j) for r, j in dict(self.roles).items()}))
        object.__setattr__(self, "box_rules", FrozenDict(dict(self.box_rules)))
        object.__setattr__(self, "hand_arm_roles",
                           FrozenDict({e: tuple(r) for e, r in dict(self.hand_arm_roles).items()}))
        object.__setattr__(self, "skeleton", tuple((int(a), int(b)) for a, b in self.skeleton))
        object.__setattr__(self, "center_joints", tuple(tuple(int(j) for j in s) for s in self.center_joints))
        object.__setattr__(self, "scale_pairs", tuple((int(a), int(b), float(f)) for a, b, f in self.scale_pairs))

        def _idx(j, what):
            if not 0 <= j < J:
                raise ValueError(f"{where}: {what} refers to joint {j}, outside 0..{J - 1}")

        for e, js in self.entity_joints.items():
            if not js:
                raise ValueError(f"{where}: entity {e!r} has no joints")
            for j in js:
                _idx(j, f"entity {e!r}")
        for r, j in self.roles.items():
            _idx(j, f"role {r!r}")
        for e, rule in self.box_rules.items():
            if rule not in BOX_RULES:
                raise ValueError(f"{where}: box rule {rule!r} of entity {e!r} is not one of {BOX_RULES}")
            if e not in self.entity_joints:
                raise ValueError(f"{where}: box rule given for entity {e!r}, which has no entity_joints")
            needed = self.hand_arm_roles.get(e, ()) if rule == "openpose_hand" else (
                FACE_ROLES if rule == "openpose_face" else ())
            if rule == "openpose_hand" and len(needed) != 3:
                raise ValueError(f"{where}: entity {e!r} uses 'openpose_hand' but hand_arm_roles[{e!r}] "
                                 f"is not a (shoulder, elbow, wrist) triple")
            missing = [r for r in needed if r not in self.roles]
            if missing:
                raise ValueError(f"{where}: entity {e!r} uses box rule {rule!r}, which needs roles {missing}")
        for a, b in self.skeleton:
            _idx(a, "skeleton")
            _idx(b, "skeleton")
        for s in self.center_joints:
            for j in s:
                _idx(j, "center_joints")
        for a, b, f in self.scale_pairs:
            _idx(a, "scale_pairs")
            _idx(b, "scale_pairs")
            if not f > 0:
                raise ValueError(f"{where}: scale_pairs factor must be > 0, got {f}")

    # A frozen dataclass would hash its (unhashable) mappings; layouts are identified by name.
    def __hash__(self):
        return hash(self.name)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def entities(self) -> tuple[str, ...]:
        """Entities this layout supports, in ``ENTITIES`` order first, then any others."""
        known = [e for e in ENTITIES if e in self.entity_joints]
        return tuple(known + [e for e in self.entity_joints if e not in ENTITIES])

    def box_rule(self, entity: str) -> str:
        return self.box_rules.get(entity, "extent")

    def role(self, name: str) -> int:
        """Joint index of an anatomical role; ValueError naming the layout's roles when it has none."""
        if name not in self.roles:
            raise ValueError(f"layout {self.name!r} has no joint with role {name!r}; "
                             f"its roles are {sorted(self.roles)}")
        return self.roles[name]

    def check_entities(self, entities: Sequence[str]) -> tuple[str, ...]:
        """Validate an entity list against this layout; return it as a tuple."""
        if isinstance(entities, str):
            raise TypeError(f"entities: expected a sequence of entity names, got the string {entities!r}; "
                            f"write ({entities!r},)")
        entities = tuple(entities)
        if not entities:
            raise ValueError("entities: expected at least one entity name, got an empty sequence")
        if len(set(entities)) != len(entities):
            raise ValueError(f"entities: names must be unique, got {entities}")
        bad = [e for e in entities if e not in self.entity_joints]
        if bad:
            raise ValueError(f"entities: layout {self.name!r} cannot provide {bad}; it supports "
                             f"{list(self.entities)} (drop the others, e.g. entities={self.entities})")
        return entities


_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout, *, overwrite: bool = False) -> Layout:
    """Add ``layout`` to the registry under ``layout.name`` (ValueError if taken, unless ``overwrite``)."""
    if not isinstance(layout, Layout):
        raise TypeError(f"layout: expected a mdn_fast.data.Layout, got {type(layout).__name__}")
    if layout.name in _REGISTRY and not overwrite:
        raise ValueError(f"layout {layout.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[layout.name] = layout
    return layout


def get_layout(name: str | Layout) -> Layout:
    """The registered layout called ``name`` (a ``Layout`` passes through)."""
    if isinstance(name, Layout):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"layout: unknown keypoint layout {name!r}; registered layouts are "
                         f"{layout_names()} (add one with mdn_fast.data.register_layout)")
    return _REGISTRY[name]


def layout_names() -> list[str]:
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------------------------------
# OpenPose BODY_25 (facts.md).
_BODY25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)

BODY25 = register_layout(Layout(
    name="body25",
    joint_names=_BODY25_NAMES,
    entity_joints={
        "head": (0, 1, 15, 16, 17, 18),
        "face": (0, 15, 16, 17, 18),      # the face-box rule also reads the neck (role)
        "left_hand": (5, 6, 7),           # no finger joints in BODY_25: the arm that places the hand
        "right_hand": (2, 3, 4),
        "torso": (1, 2, 5, 8, 9, 12),
        "lower_body": (9, 10, 11, 12, 13, 14, 19, 20, 21, 22, 23, 24),
    },
    roles={
        "nose": 0, "neck": 1, "r_shoulder": 2, "r_elbow": 3, "r_wrist": 4, "l_shoulder": 5,
        "l_elbow": 6, "l_wrist": 7, "mid_hip": 8, "r_hip": 9, "r_knee": 10, "r_ankle": 11,
        "l_hip": 12, "l_knee": 13, "l_ankle": 14, "r_eye": 15, "l_eye": 16, "r_ear": 17, "l_ear": 18,
        "l_big_toe": 19, "l_small_toe": 20, "l_heel": 21, "r_big_toe": 22, "r_small_toe": 23, "r_heel": 24,
    },
    box_rules={"face": "openpose_face", "left_hand": "openpose_hand", "right_hand": "openpose_hand"},
    hand_arm_roles={"left_hand": ("l_shoulder", "l_elbow", "l_wrist"),
                    "right_hand": ("r_shoulder", "r_elbow", "r_wrist")},
    skeleton=(
        (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),            # head
        (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),          # arms
        (1, 8), (8, 9), (8, 12),                                 # trunk
        (9, 10), (10, 11), (11, 24), (11, 22), (22, 23),         # right leg
        (12, 13), (13, 14), (14, 21), (14, 19), (19, 20),        # left leg
    ),
    # Centre: neck, else the shoulders' midpoint, else mid-hip.
    center_joints=((1,), (2, 5), (8,)),
    # Scale in torso lengths: neck–mid-hip; shoulder width is about 0.7 torso lengths on adults.
    scale_pairs=((1, 8, 1.0), (2, 5, 1.0 / 0.7), (9, 12, 1.0 / 0.4)),
))
