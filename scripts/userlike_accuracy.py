"""How well does `mlp predict` read users' pictures, compared with MNIST itself?

Renders MNIST test digits the way people hand them over (black ink on paper, a large
off-centre canvas, noisy JPEG, transparent PNG, palette GIF, 16-bit TIFF, EXIF-rotated
JPEG, coloured WebP; see tests/userlike.py), writes them as files, predicts every file
through the real command (`mlp predict --json`), and prints per kind the accuracy next to
the model's accuracy on the same digits in their original MNIST form.

    python scripts/userlike_accuracy.py --model runs/latest --count 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import userlike  # noqa: E402  (tests/ holds the renderer, shared with the test suite)

from mlp_cli import checkpoint, data  # noqa: E402
from mlp_cli.evaluate import evaluate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/latest", help="a .npz or run directory")
    parser.add_argument("--count", type=int, default=1000, help="test digits to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the rendered files here and keep them")
    args = parser.parse_args()

    path = checkpoint.find_model(args.model)
    saved = checkpoint.load(path)
    images, labels = data.load_mnist("test")
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(labels), args.count, replace=False)
    images, labels = images[pick], labels[pick]
    baseline = evaluate(saved, images, labels, "test").accuracy

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        truth: dict[str, int] = {}
        for i, (digit, label) in enumerate(zip(images, labels, strict=True)):
            for file in userlike.save_all(digit, rng, folder, prefix=f"{i:05d}-").values():
                truth[str(file)] = int(label)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlp_cli.cli",
                "predict",
                str(folder),
                "--model",
                str(path),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        report = json.loads(result.stdout)
        rows = report["predictions"] + report["failures"]
    per_kind: dict[str, list[bool]] = {}
    failed: dict[str, int] = {}
    for row in rows:
        kind = Path(row["file"]).stem.split("-", 1)[1]
        if "digit" not in row:
            failed[kind] = failed.get(kind, 0) + 1
            per_kind.setdefault(kind, []).append(False)
            continue
        per_kind.setdefault(kind, []).append(int(row["digit"]) == truth[row["file"]])
    print(f"model {path}: {100 * baseline:.2f}% on these {args.count} MNIST test digits as-is")
    print(f"{'kind':<16}{'accuracy':>10}{'vs MNIST':>10}{'failed':>8}")
    worst = 0.0
    for kind, hits in sorted(per_kind.items()):
        accuracy = float(np.mean(hits))
        worst = max(worst, baseline - accuracy)
        print(
            f"{kind:<16}{100 * accuracy:>9.2f}%{100 * (accuracy - baseline):>+9.2f}"
            f"{failed.get(kind, 0):>8}"
        )
    everything = [h for hits in per_kind.values() for h in hits]
    print(f"{'all kinds':<16}{100 * float(np.mean(everything)):>9.2f}%")
    print(f"largest drop: {100 * worst:.2f} points")
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
