"""Emotion from dlib's 68 facial landmarks (Shehu, Browne, Eisenbarth, RO-MAN 2020), behind the common interface.

The paper does not publish its features or classifier; ours:

* **Alignment.** Landmarks are translated so the midpoint of the two eye centres is the origin,
  rotated so the eye line is horizontal, and scaled so the inter-ocular distance is 1. Position,
  scale and roll of the face (and the crop size) then no longer reach the classifier.
* **Features** of the aligned shape: its 136 coordinates; the pairwise distances among
  `KEY_POINTS` (brows, eye corners and lids, nose, mouth, jaw: the parts that move with
  expression); and each point's distance and direction (cos, sin) from the shape's centroid.
* **Classifier** on standardised features, chosen by FER+ validation accuracy among candidates
  (linear, MLP, RBF SVM, gradient-boosted trees; `scripts/train_landmarks.py`, record in
  `weights/landmarks.json`). It ships as a torch state dict: MLP weights, or boosted trees as
  plain arrays (`TreeEnsemble`); the standardisation constants are buffers beside them, so one
  `weights_only` file holds everything and nothing is unpickled.
  Logits are averaged over the shape and its mirror image (test-time flip, as our CNNs do).

**Failure.** dlib's shape predictor always returns 68 points for a box, even on a blank wall.
A shape counts as "no landmarks found" when it is not finite or when its RMS distance from the
mean aligned FER+ training shape (in inter-ocular units) exceeds `max_distance`, fixed at
training time a margin above the largest distance of any FER+ training face. Such a face is
reported (NoLandmarksError, a NaN row, or uniform log-probabilities on the black-box `logits`
path), never given a label. A flat crop still gets dlib's prior shape and is read like a face,
exactly as a CNN reads a crop it is told is a face.

Not differentiable: dlib sits between pixels and classifier. `differentiable = False` makes
gradient attacks refuse it; black-box attacks query `logits`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emocloak.data.checkpoints import load_checkpoint
from emocloak.data.images import ImageLike
from emocloak.errors import NoFaceError
from emocloak.faces.landmarks import REGIONS, crop_landmarks
from emocloak.labels import LABELS
from emocloak.recognizers.base import Face, Recognizer

# Mirror image of the iBUG 300-W layout: point i of a flipped face is point FLIP[i] of the original.
FLIP = (
    [*range(16, -1, -1)]  # jaw
    + [*range(26, 16, -1)]  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)
# Points whose mutual distances carry expression: brows, eye corners and lids, nose, mouth, chin line.
KEY_POINTS = (17, 19, 21, 22, 24, 26, 36, 37, 39, 41, 42, 44, 45, 46, 27, 30, 31, 35, 48, 50, 51, 52, 54, 56, 57, 58)
KEY_POINTS += (62, 66, 3, 8, 13)
_PAIRS = torch.triu_indices(len(KEY_POINTS), len(KEY_POINTS), offset=1)
N_FEATURES = 68 * 2 + _PAIRS.shape[1] + 68 * 3


class NoLandmarksError(NoFaceError):
    """A face box was found (or given) but dlib's landmark shape for it is degenerate."""

    def __init__(self, source: str = "image") -> None:
        super().__init__(source)
        self.args = (f"no facial landmarks found in {source} (degenerate 68-point shape)",)


# --- features ----------------------------------------------------------------
def align(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) pixel landmarks -> eye-aligned shapes: eye midpoint at 0, eye line along +x, unit eye distance."""
    p = torch.as_tensor(points, dtype=torch.float32)
    right, left = p[:, REGIONS["right_eye"]].mean(1), p[:, REGIONS["left_eye"]].mean(1)
    d = left - right
    iod = d.norm(dim=1).clamp_min(1e-6)
    cos, sin = (d[:, 0] / iod)[:, None], (d[:, 1] / iod)[:, None]
    q = p - ((left + right) / 2)[:, None]
    x = (q[..., 0] * cos + q[..., 1] * sin) / iod[:, None]
    y = (q[..., 1] * cos - q[..., 0] * sin) / iod[:, None]
    return torch.stack([x, y], -1)


def mirror(aligned: torch.Tensor) -> torch.Tensor:
    """The aligned shape of the mirrored face (x -> -x, left and right points swapped); still aligned."""
    return aligned[:, FLIP] * aligned.new_tensor([-1.0, 1.0])


def shape_features(aligned: torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) aligned shapes -> (N, N_FEATURES): coordinates, key-point distances, polar view from the centroid."""
    key = aligned[:, KEY_POINTS]
    dists = torch.cdist(key, key)[:, _PAIRS[0], _PAIRS[1]]
    v = aligned - aligned.mean(1, keepdim=True)
    r = v.norm(dim=-1)
    direction = v / r.clamp_min(1e-6)[..., None]
    return torch.cat([aligned.flatten(1), dists, r, direction.flatten(1)], 1)


def landmark_features(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) pixel landmarks -> feature vectors invariant to the face's position, scale and roll."""
    return shape_features(align(points))


def shape_distance(aligned: torch.Tensor, mean_shape: torch.Tensor) -> torch.Tensor:
    """RMS distance of each aligned shape from a mean shape, in inter-ocular units (NaN for non-finite shapes)."""
    return (aligned - mean_shape).pow(2).sum(-1).mean(1).sqrt()


# --- classifier ----------------------------------------------------------------
def mlp(hidden: Sequence[int] = (256, 256), dropout: float = 0.3, n_features: int = N_FEATURES) -> nn.Sequential:
    """A small MLP head (no hidden layer: a linear classifier)."""
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, len(LABELS)))


class TreeEnsemble(nn.Module):
    """Gradient-boosted trees as plain arrays (from scikit-learn's HistGradientBoostingClassifier), no pickle.

    Tree t adds its leaf value to class t % n_classes; all trees are walked at once, one level per step.
    """

    def __init__(self, n_trees: int, max_nodes: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.register_buffer("feature", torch.zeros(n_trees, max_nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(n_trees, max_nodes, dtype=torch.float64))
        self.register_buffer("branches", torch.zeros(n_trees, max_nodes, 2, dtype=torch.long))
        self.register_buffer("leaf", torch.ones(n_trees, max_nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n_trees, max_nodes, dtype=torch.float64))
        self.register_buffer("baseline", torch.zeros(len(LABELS), dtype=torch.float64))

    @classmethod
    def from_sklearn(cls, model) -> TreeEnsemble:
        """Copy a fitted HistGradientBoostingClassifier (classes 0..7, numeric features) into arrays."""
        if list(model.classes_) != list(range(len(LABELS))):
            raise ValueError("the classifier must be fitted on every class index 0..7")
        nodes = [tree.nodes for iteration in model._predictors for tree in iteration]
        out = cls(len(nodes), max(len(n) for n in nodes), int(max(n["depth"].max() for n in nodes)))
        for t, n in enumerate(nodes):
            k = len(n)
            out.feature[t, :k] = torch.from_numpy(n["feature_idx"].astype("int64"))
            out.threshold[t, :k] = torch.from_numpy(n["num_threshold"].astype("float64"))
            out.branches[t, :k] = torch.from_numpy(np.stack([n["left"], n["right"]], 1).astype("int64"))
            out.leaf[t, :k] = torch.from_numpy(n["is_leaf"].astype(bool))
            out.value[t, :k] = torch.from_numpy(n["value"].astype("float64"))
        out.baseline.copy_(torch.from_numpy(model._baseline_prediction.reshape(-1)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        n_trees, max_nodes = self.feature.shape
        at = torch.arange(n_trees).mul(max_nodes).expand(len(x), -1)  # flat index of each tree's current node
        for _ in range(self.depth):
            leaf = self.leaf.view(-1)[at]
            if leaf.all():
                break
            right = x.gather(1, self.feature.view(-1)[at]) > self.threshold.view(-1)[at]
            child = self.branches.view(-1)[2 * at + right.long()]
            at = torch.where(leaf, at, at - at % max_nodes + child)
        raw = self.baseline + self.value.view(-1)[at].view(len(x), -1, len(LABELS)).sum(1)
        return raw.float()


def make_head(cfg: dict) -> nn.Module:
    """The classifier head a config names: {"head": "mlp", hidden, dropout} or {"head": "trees", n_trees, ...}."""
    if cfg["head"] == "mlp":
        return mlp(cfg["hidden"], cfg["dropout"])
    if cfg["head"] == "trees":
        return TreeEnsemble(cfg["n_trees"], cfg["max_nodes"], cfg["depth"])
    raise ValueError(f"unknown landmark classifier head {cfg['head']!r}")


class LandmarkNet(nn.Module):
    """Standardised features -> a head (MLP or trees); buffers keep the constants with the weights."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))
        self.register_buffer("mean_shape", torch.zeros(68, 2))
        self.register_buffer("max_distance", torch.tensor(float("inf")))
        self.head = head

    def fit_constants(self, features: torch.Tensor, aligned: torch.Tensor, margin: float = 1.25) -> None:
        """Standardisation from training features; failure limit a margin above the farthest training shape."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))
        self.mean_shape.copy_(aligned.mean(0))
        self.max_distance.fill_(margin * float(shape_distance(aligned, self.mean_shape).max()))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.standardise(features))

    def classify(self, aligned: torch.Tensor, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned shapes -> (log-probabilities over LABELS, found mask); flip averages logits with the mirror."""
        if flip:  # one pass over shapes and mirrors together
            logits = self(shape_features(torch.cat([aligned, mirror(aligned)]))).view(2, len(aligned), -1).mean(0)
        else:
            logits = self(shape_features(aligned))
        found = shape_distance(aligned, self.mean_shape) <= self.max_distance  # False for NaN too
        return logits.log_softmax(1), found


def load_landmark_net(path: str | Path) -> tuple[LandmarkNet, dict]:
    """A classifier written by scripts/train_landmarks.py: state dict + plain config (torch.load weights_only)."""
    ckpt = load_checkpoint(path, "landmark classifier file")
    cfg = dict(ckpt["config"])
    net = LandmarkNet(make_head(cfg))
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), cfg


def load_landmarks(path: str | Path, name: str = "landmarks") -> LandmarkRecognizer:
    net, cfg = load_landmark_net(path)
    return LandmarkRecognizer(name, net, flip=cfg.get("flip", True))


# --- the recognizer ---------------------------------------------------------------
def _uint8_crops(crops: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) float in [0, 1] -> uint8 (H, W, 3) crops, as a saved image would hold them."""
    return list((crops.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())


class LandmarkRecognizer(Recognizer):
    """Face (dlib HOG, from the base class) -> 68 landmarks -> geometric features -> classifier head.

    `logits` and `predict_crops` share one path, so predict_proba(crop, detect=False) equals
    softmax(logits(crop)). Faces whose landmark shape is degenerate (see the module docstring)
    are reported: NoLandmarksError / NaN rows on the photo path, uniform log-probabilities
    (no class preferred, never a success for a margin-based search) on `logits`.
    """

    differentiable = False

    def __init__(self, name: str, net: LandmarkNet, flip: bool = True) -> None:
        super().__init__(name, net, LABELS, input_size=0)
        self.flip = flip

    def __repr__(self) -> str:
        head = type(self.model.head).__name__
        return f"LandmarkRecognizer({self.name!r}, dlib 68 landmarks -> {N_FEATURES} features -> {head})"

    @torch.no_grad()
    def read(self, crops: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 face crops -> (log-probabilities (N, 8), landmarks found (N,) bool)."""
        if not len(crops):
            return torch.zeros(0, len(LABELS)), torch.zeros(0, dtype=torch.bool)
        return self.model.classify(align(crop_landmarks(crops)), self.flip)

    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Black-box only: RGB crops (N, 3, H, W) in [0, 1] -> log-probabilities; uniform where no landmarks."""
        logp, found = self.read(_uint8_crops(crops))
        return torch.where(found[:, None], logp, logp.new_full(logp.shape, -np.log(len(LABELS))))

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """RGB crops (N, 3, H, W) in [0, 1] -> the landmark feature vectors (N, N_FEATURES), unstandardised."""
        return landmark_features(crop_landmarks(_uint8_crops(crops)))

    def predict_crops(self, crops: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
        """Probabilities per uint8 crop; a row of NaN where no landmarks are found."""
        logp, found = self.read([np.asarray(c) for c in crops])
        probs = logp.exp().numpy()
        probs[~found.numpy()] = np.nan
        return probs

    def predict_proba(
        self,
        images: Sequence[ImageLike],
        detect: bool = True,
        names: Sequence[str] | None = None,
        on_no_face: str = "raise",
    ) -> np.ndarray:
        """As `Recognizer.predict_proba`; a face without landmarks counts as no face (NoLandmarksError or NaN)."""
        probs = super().predict_proba(images, detect, names, on_no_face)
        lost = np.isnan(probs).any(1)
        if on_no_face == "raise" and lost.any():
            i = int(lost.argmax())
            raise NoLandmarksError(names[i] if names else f"image {i}")
        return probs

    def predict_faces(self, image: ImageLike, source: str = "image") -> list[tuple[Face, np.ndarray]]:
        """Every face with landmarks, largest first; a face without them is skipped with a warning."""
        found = []
        for i, (face, p) in enumerate(super().predict_faces(image, source)):
            if np.isnan(p).any():
                warnings.warn(f"{source}: face {i}: no facial landmarks found; skipped", stacklevel=2)
            else:
                found.append((face, p))
        if not found:
            raise NoLandmarksError(source)
        return found
