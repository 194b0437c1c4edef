"""Orthogonal maps (reflection, plane rotation) taking a unit vector a to b."""

from structmat.orthogonal.maps import reflect, reflection, rotate, rotation

__all__ = ["reflect", "reflection", "rotate", "rotation"]
