"""fit against fit at an earlier revision: MLP 800-800 on mnist-5k, 3-epoch calls, alternating, one process.

    git archive REV kdlab | tar -x -C /tmp/rev && mv /tmp/rev/kdlab /tmp/rev/kdlab_old
    python benchmarks/fit_against_revision.py /tmp/rev [ROUNDS]

Both packages are imported side by side (the old one under the name ``kdlab_old``), so
both contenders see the same machine state; the ratio is new time ÷ old time per round.
"""

from __future__ import annotations

import statistics
import sys
import time


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, argv[0])
    rounds = int(argv[1]) if len(argv) > 1 else 10
    import kdlab_old

    import kdlab

    def contender(pkg):
        ds = pkg.data.load("mnist-5k", seed=0)

        def run() -> float:
            model = pkg.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
            t0 = time.perf_counter()
            pkg.train.fit(model, ds, epochs=3, progress=False, device="cpu")
            return time.perf_counter() - t0
        return run

    old, new = contender(kdlab_old), contender(kdlab)
    old(), new()  # warm-up
    ratios = []
    for i in range(rounds):
        a, b = (old(), new()) if i % 2 == 0 else reversed((new(), old()))
        ratios.append(b / a)
        print(f"old {a:.3f} s  new {b:.3f} s  new/old {b / a:.3f}", flush=True)
    print(f"median new/old {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}), {rounds} rounds")


if __name__ == "__main__":
    main()
