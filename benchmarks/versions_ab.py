"""Is a slower notebook run the code or the machine? Three timings of whichever kdlab is on PYTHONPATH.

    for i in 1 2; do
        PYTHONPATH=OLD_CHECKOUT python benchmarks/versions_ab.py TEACHER.pt
        PYTHONPATH=NEW_CHECKOUT python benchmarks/versions_ab.py TEACHER.pt
    done

Prints, for the kdlab it imported: the CPU latency of the teacher checkpoint on a batch of 256
``mnist-5k`` images (three medians of 10 passes), and the wall time of three ``fit`` epochs of the
800-800 MLP and one of the CNN (shifted images, as the notebooks train). Run the two checkouts
alternately, as above, so that a change in the machine's load hits both: docs/BENCHMARKS.md, section 3.
"""

from __future__ import annotations

import sys
import time

import kdlab


def main(argv=None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    teacher, _ = kdlab.checkpoint.load(argv[0])
    ds = kdlab.data.load("mnist-5k", seed=0)
    latency = [kdlab.metrics.latency(teacher, ds.input_shape, batch_size=256, repeats=10) for _ in range(3)]
    timings = {}
    for name, kwargs, epochs in (("mlp", {"hidden": (800, 800)}, 3), ("cnn", {}, 1)):
        model = kdlab.models.create(name, num_classes=10, input_shape=ds.input_shape, seed=0, **kwargs)
        t0 = time.perf_counter()
        kdlab.train.fit(model, ds, epochs=epochs, progress=False, augment=True)
        timings[name] = time.perf_counter() - t0
    line = (f"{kdlab.__file__}: teacher ms/256 {[round(1000 * x, 1) for x in latency]}, "
            f"mlp fit 3 ep {timings['mlp']:.1f}s, cnn fit 1 ep {timings['cnn']:.1f}s")
    print(line)
    return line


if __name__ == "__main__":
    main()
