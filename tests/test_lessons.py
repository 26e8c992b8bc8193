"""The lesson plumbing: kdlab.lab.start and Run, the course registry, the explorers, exercise feedback."""

import json

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import kdlab  # noqa: E402
from kdlab import course, lab  # noqa: E402
from kdlab.errors import ParameterError, ParameterTypeError  # noqa: E402

NOTEBOOK = "03_temperature"


@pytest.fixture
def namespace(monkeypatch, tmp_path):
    """What a notebook's globals() hold after its parameters cell: the defaults in its file."""
    monkeypatch.delenv("KDLAB_SMOKE", raising=False)
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "runs"))
    return dict(lab.notebook_defaults(NOTEBOOK))


def test_start_checks_types_from_the_defaults(namespace):
    namespace["epochs"] = 2.5
    with pytest.raises(ParameterTypeError, match=r"epochs=2.5 .*expected int"):
        lab.start(namespace, NOTEBOOK)


def test_start_checks_ranges_from_the_course(namespace):
    namespace["temperatures"] = [1.0, -2.0]
    with pytest.raises(ParameterError, match=r"temperatures\[1\]=-2.0 is outside"):
        lab.start(namespace, NOTEBOOK)
    namespace["temperatures"] = []
    with pytest.raises(ParameterError, match=r"temperatures=\[\] is empty"):
        lab.start(namespace, NOTEBOOK)


def test_start_at_defaults_and_not(namespace, tmp_path):
    run = lab.start(namespace, NOTEBOOK)
    assert run.at_defaults and not run.smoke
    assert run.seeds == list(range(namespace["seed"], namespace["seed"] + namespace["n_seeds"]))
    assert run.out.is_dir() and run.out.parent == tmp_path / "runs"
    namespace["epochs"] += 1
    assert not lab.start(namespace, NOTEBOOK).at_defaults


def test_start_in_smoke_mode_writes_the_smoke_values_into_the_namespace(namespace, monkeypatch):
    monkeypatch.setenv("KDLAB_SMOKE", "1")
    run = lab.start(namespace, NOTEBOOK)
    assert run.smoke and not run.at_defaults
    assert namespace["dataset"] == course.SMOKE_DATASET and namespace["smoke"] is True
    for key, value in course.LESSONS[NOTEBOOK].smoke.items():
        assert namespace[key] == value


def test_start_converts_an_int_given_for_a_float(namespace):
    namespace["lr"] = 1
    lab.start(namespace, NOTEBOOK)
    assert namespace["lr"] == 1.0 and isinstance(namespace["lr"], float)


def test_record_writes_results_params_and_the_headline(namespace, capsys):
    run = lab.start(namespace, NOTEBOOK)
    assert run.record(best_alpha=0.9, best_T=4.0, best_test_accuracy=0.9712) is None  # no value under the cell
    saved = json.loads((run.out / "metrics.json").read_text())
    assert saved["best_T"] == 4.0 and saved["params"]["epochs"] == namespace["epochs"]
    assert saved["notebook"] == NOTEBOOK and saved["at_defaults"] is True
    assert "T=4; test 97.12%" in capsys.readouterr().out


def test_an_unknown_lesson_is_named():
    with pytest.raises(ParameterError, match="is not a lesson of the course"):
        course.lesson("99_nothing")
    assert course.lesson("03") is course.LESSONS[NOTEBOOK]


@pytest.mark.parametrize("rule, good, bad", [
    (">0", 0.5, 0.0), (">=0", 0.0, -0.1), ("int>=1", 3, 0), ("[0,1]", 1.0, 1.1), ("[0,1)", 0.0, 1.0),
    ("(0,1]", 1.0, 0.0), ("each int>=1", [1, 2], [1, 0]), ("nonempty each >0", [2.0], []),
    (("a", "b"), "a", "c")])
def test_rules(rule, good, bad):
    course.check_value("p", good, rule)
    with pytest.raises((ParameterError, ParameterTypeError), match="p"):
        course.check_value("p", bad, rule)


def test_headline_is_none_until_every_value_is_there():
    assert course.headline(NOTEBOOK, {"best_alpha": 0.9}) is None
    assert course.headline("99_nothing", {}) is None


# --- explorers and feedback -------------------------------------------------------------------

def test_temperature_slider_starts_at_exactly_four():
    slider = kdlab.widgets.temperature_slider()
    assert slider.value == 4.0 and slider.label == "4"


def test_loss_explorer_matches_the_kit_loss():
    gen = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(10, generator=gen), 3 * torch.randn(10, generator=gen)
    explorer = kdlab.widgets.LossExplorer(z_s, z_t, 3, [str(i) for i in range(10)])
    terms = explorer.terms(4.0, 0.7)
    expected = kdlab.losses.distillation_loss(z_s[None], z_t[None], torch.tensor([3]), 4.0, 0.7)
    assert terms["soft"][0] + terms["hard"][0] == pytest.approx(float(expected), rel=1e-5)
    fig = explorer.draw(2.0, 0.5)
    assert "T = 2" in fig.axes[0].get_title()
    widget = explorer.widget()
    assert len(widget.children) == 2


def test_comparison_explorer_checks_shapes_and_draws():
    probs = torch.softmax(torch.randn(4, 10), 1)
    with pytest.raises(ValueError, match="expected"):
        kdlab.widgets.ComparisonExplorer(torch.zeros(4, 1, 8, 8), torch.arange(4), {"a": probs[:3]}, list("0123456789"))
    explorer = kdlab.widgets.ComparisonExplorer(torch.zeros(4, 1, 8, 8), torch.arange(4),
                                                {"teacher": probs, "student": probs.roll(1, 1)}, list("0123456789"))
    fig = explorer.draw(1)
    assert len(fig.axes[1].patches) == 2 * 10
    assert explorer.widget().children[0].options[0][0].startswith("#0")


def test_a_check_prints_its_message_once():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    with capture_output() as captured:
        shell.run_cell("import kdlab.checks.feedback as f\nf.report(True, 'well done')")
    assert captured.stdout.count("well done") == 1 and not captured.outputs


def test_distillation_trains_with_a_learners_soft_loss(digits, mlp_teacher):
    calls = []

    def my_kd_loss(student_logits, teacher_logits, T):
        calls.append(T)
        return kdlab.losses.kd_loss(student_logits, teacher_logits, T)

    def train(soft_loss):
        model = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=[16], seed=0)
        objective = kdlab.objectives.Distillation(mlp_teacher, 4.0, 0.9, soft_loss=soft_loss)
        kdlab.train.fit(model, digits, objective=objective, epochs=1, seed=0, progress=False, device="cpu")
        return kdlab.metrics.evaluate(model, digits.test)["accuracy"]

    assert train(my_kd_loss) == train(None)
    assert calls and set(calls) == {4.0}
    with pytest.raises(TypeError, match="soft_loss=3 is not callable"):
        kdlab.objectives.Distillation(mlp_teacher, soft_loss=3)


def test_paired_ci_is_the_ci_of_the_differences():
    mean, half = kdlab.metrics.paired_ci([0.9, 0.92, 0.95], [0.88, 0.9, 0.92])
    assert (mean, half) == pytest.approx(kdlab.metrics.mean_ci([0.02, 0.02, 0.03]))
    with pytest.raises(ValueError, match="one value per seed"):
        kdlab.metrics.paired_ci([1.0], [1.0, 2.0])
