"""Evasion attacks at test time (white-box gradient attacks on the face crop)."""
