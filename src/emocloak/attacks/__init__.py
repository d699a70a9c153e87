"""Attacks (cloaks): every one speaks to the `Recognizer` interface only.

`make_attack("pgd:eps=8,steps=20")` builds one from a spec string (see registry.py).
"""

from emocloak.attacks.base import Attack, AttackOutput, CropAttack
from emocloak.attacks.registry import ATTACKS, make_attack

__all__ = ["ATTACKS", "Attack", "AttackOutput", "CropAttack", "make_attack"]
