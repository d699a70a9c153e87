"""Universal cloak (Pri-EMO, Zeng et al. 2023): one perturbation for every face, learnt in feature space.

Learning is slow and done once; cloaking is an addition, with no model query. One module per
concern: the file format (`perturbation`), applying it (`apply`), training crops (`crops`),
learning it (`learn`) and the attack (`cloak`). The design choices and the measurements behind
them are in docs/design.md ("Universal cloak").
"""

from emocloak.attacks.evasion.universal.apply import apply_universal, apply_universal_batch
from emocloak.attacks.evasion.universal.cloak import UniversalCloak
from emocloak.attacks.evasion.universal.crops import DEFAULT_SIZE, face_crops
from emocloak.attacks.evasion.universal.learn import evaluate_universal, learn_universal
from emocloak.attacks.evasion.universal.perturbation import (
    MAX_EPS,
    PerturbationError,
    UniversalPerturbation,
    as_perturbation,
    default_path,
    default_perturbation,
)

__all__ = [
    "DEFAULT_SIZE",
    "MAX_EPS",
    "PerturbationError",
    "UniversalCloak",
    "UniversalPerturbation",
    "apply_universal",
    "apply_universal_batch",
    "as_perturbation",
    "default_path",
    "default_perturbation",
    "evaluate_universal",
    "face_crops",
    "learn_universal",
]
