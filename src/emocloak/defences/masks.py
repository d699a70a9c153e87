"""Facial attention masks: where on a face crop an expression lives, from its 68 dlib landmarks.

FAAT (see docs/design.md, "FAAT") steers its training attack towards the brows, eyes,
nose and mouth, the regions that carry facial expressions (the facial action units), and
away from hair, background and jaw line. A mask is 1 on those regions and `floor`
elsewhere, with a Gaussian edge so that a landmark that is off by a pixel or two (dlib on
48-px crops) does not flip a pixel from "face" to "background".
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from emocloak.faces.landmarks import REGIONS, dataset_landmarks

# Each group is filled as one convex polygon: brow and eye together cover the periocular
# region (brow raise, lid tightening), which the eye contour alone would miss.
MASK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("right_brow", "right_eye"),
    ("left_brow", "left_eye"),
    ("nose",),
    ("mouth",),
)
DEFAULT_FLOOR = 0.25
DEFAULT_SIGMA = 2.0  # px at 48x48: about the landmark error of dlib on 48-px FER+ crops
_SHIFT = 4  # sub-pixel bits for cv2's polygon filling


def _group_points(pts: np.ndarray, group: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([pts[list(REGIONS[r])] for r in group])


def attention_mask(
    pts: np.ndarray, size: int, floor: float = DEFAULT_FLOOR, sigma: float = DEFAULT_SIGMA
) -> np.ndarray:
    """(size, size) float32 mask in [floor, 1] for one face's (68, 2) x, y landmarks in crop pixels."""
    fill = np.zeros((size, size), np.float32)
    for group in MASK_GROUPS:
        hull = cv2.convexHull(_group_points(pts, group).astype(np.float32))
        cv2.fillConvexPoly(fill, np.round(hull * (1 << _SHIFT)).astype(np.int32), 1.0, cv2.LINE_AA, _SHIFT)
    if sigma > 0:
        # Blurring a filled region gives ~0.5 on its outline; doubling (capped at 1) keeps the region and its
        # landmarks at full attention and fades out over about 2 sigma beyond them.
        fill = np.minimum(1.0, 2.0 * cv2.GaussianBlur(fill, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT))
    return (floor + (1.0 - floor) * fill).astype(np.float32)


def attention_masks(
    landmarks: np.ndarray, size: int = 48, floor: float = DEFAULT_FLOOR, sigma: float = DEFAULT_SIGMA
) -> np.ndarray:
    """(N, size, size) float32 masks for (N, 68, 2) landmarks."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"mask floor must be in [0, 1], got {floor}")
    return (
        np.stack([attention_mask(p, size, floor, sigma) for p in landmarks])
        if len(landmarks)
        else np.zeros((0, size, size), np.float32)
    )


def dataset_masks(
    images: np.ndarray, key: str, floor: float = DEFAULT_FLOOR, sigma: float = DEFAULT_SIGMA
) -> torch.Tensor:
    """(N, 1, H, W) masks of a stack of square face crops; the landmarks are computed once and cached under `key`.

    Masks themselves take seconds to draw from cached landmarks, so only the landmarks are kept on disk.
    """
    pts = dataset_landmarks(images, key)
    return torch.from_numpy(attention_masks(pts, images.shape[1], floor, sigma)).unsqueeze(1)
