"""One process that trains the 800-800 MLP with fit, for profiling with py-spy.

    py-spy record -r 200 -f raw -o kd.txt -- python benchmarks/profile_distill.py kd 40
    py-spy record -r 200 -f raw -o ce.txt -- python benchmarks/profile_distill.py ce 40

``kd``: distillation with the teacher's logits cached once (``objectives.Distillation``,
whose per-batch loss is ``losses.kd_loss`` in plain autograd); ``ce``: plain cross-entropy.
Compare the samples under each line of ``kdlab/train.py``'s ``fit``, and under
``Distillation.forward`` -> ``losses.kd_loss`` (docs/BENCHMARKS.md §2).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kdlab  # noqa: E402
from kdlab.objectives import Distillation  # noqa: E402
from kdlab.teacher import Teacher  # noqa: E402


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv else "kd"
    epochs = argv[1] if len(argv) > 1 else "40"
    if mode not in ("kd", "ce"):
        raise SystemExit(f"mode must be 'kd' or 'ce', got {mode!r}")
    ds = kdlab.data.load("mnist-5k", seed=0)
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    student = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    # The teacher's logits are computed once, before the profiled epochs (Teacher.prepare would also do it).
    objective = (Distillation(Teacher(teacher, logits=kdlab.inference.predict_logits(teacher, ds.train)))
                 if mode == "kd" else None)
    kdlab.train.fit(student, ds, objective=objective, epochs=int(epochs), device="cpu", progress=False)


if __name__ == "__main__":
    main()
