"""Benchmark: the regression gate between real runs of one config that differ only in seed.

Trains the same config (``train()``, the pipeline's own function) with several seeds on
scikit-learn's digits, evaluates each on the same held-out test images, and runs the gate on every
ordered pair (challenger seed i, champion seed j), once with the paired McNemar test alone and once
judged against the champion config's seed spread (the other seeds' test accuracies), as the compare
stage does. Prints how many pairs were called a regression (target: 0 with the seed spread).

Run: ``uv run python benchmarks/gate_seeds.py [--seeds 5] [--epochs 15]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from pipelines.config import TrainConfig
    from pipelines.curves.gate import gate
    from pipelines.evaluate import evaluate
    from pipelines.train import TrainData, train

    d = load_digits()
    x = (d.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=0)
    data = TrainData(x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, num_classes=10)
    ids = np.array([f"test-{i:04d}" for i in range(len(y_te))])
    cfg = TrainConfig(model="mlp", epochs=args.epochs, batch_size=64, learning_rate=1e-3, dropout=0.2)

    preds, accs = [], []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as backup:
            result = train(cfg, data, seed=seed, backup_dir=Path(backup), verbose=0)
        ev = evaluate(result.model, x_te, y_te, ids, [str(c) for c in range(10)], batch_size=256)
        preds.append(ev.predictions)
        accs.append(float(ev.accuracy))
    print(f"test accuracy per seed ({len(y_te)} images): {', '.join(f'{a:.4f}' for a in accs)}")

    pairs = mcnemar_only = with_spread = 0
    for i, j in itertools.permutations(range(args.seeds), 2):
        pairs += 1
        mcnemar_only += gate(preds[i], preds[j]).decision == "regression"
        others = [a for k, a in enumerate(accs) if k != i]
        with_spread += gate(preds[i], preds[j], champion_seed_accuracies=others).decision == "regression"
    print(f"regressions, McNemar alone            : {mcnemar_only} of {pairs} ordered seed pairs")
    print(f"regressions, judged by the seed spread: {with_spread} of {pairs} ordered seed pairs (target 0)")


if __name__ == "__main__":
    main()
