"""Suite files: schema, one-line errors naming file, field and fix, the grid, card defaults, trial ids."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mixbench.suite import SuiteError, expand, load_suite

BASE = """
name: t
datasets: [synthetic]
backbones: [resnet_tiny_cifar]
methods: [vanilla, {name: mixup, alpha: 0.4}]
seeds: [0, 1]
recipe:
  epochs: 2
  batch_size: 8
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_and_expand(path: Path, data_roots=None):
    return expand(load_suite(path), path, data_roots)


def test_grid_is_the_product_of_the_axes(tmp_path):
    trials = load_and_expand(write(tmp_path, BASE))
    assert [(t.method_label, t.seed) for t in trials] == [("vanilla", 0), ("vanilla", 1), ("mixup", 0), ("mixup", 1)]
    assert len({t.trial_id for t in trials}) == 4


def test_hparams_are_card_defaults_for_the_family_then_the_suite(tmp_path):
    text = BASE.replace("[vanilla, {name: mixup, alpha: 0.4}]", "[cutmix, {name: mixup, alpha: 0.4}]")
    trials = load_and_expand(write(tmp_path, text))
    cutmix = next(t for t in trials if t.method == "cutmix")
    mixup = next(t for t in trials if t.method == "mixup")
    assert cutmix.hparams["alpha"] == 0.2  # the CIFAR family's card value (synthetic is CIFAR-like)
    assert cutmix.hparams["p"] == 1.0 and cutmix.hparams["mode"] == "batch"
    assert mixup.hparams["alpha"] == 0.4  # the suite wins over the card


def test_overrides_match_any_axis(tmp_path):
    text = BASE + textwrap.dedent("""
    overrides:
      - match: {method: mixup, seed: 1}
        set: {method.alpha: 2.0, recipe.epochs: 5}
    """)
    trials = {(t.method, t.seed): t for t in load_and_expand(write(tmp_path, text))}
    assert trials["mixup", 1].hparams["alpha"] == 2.0 and trials["mixup", 1].recipe.epochs == 5
    assert trials["mixup", 0].hparams["alpha"] == 0.4 and trials["mixup", 0].recipe.epochs == 2


def test_trial_id_ignores_where_the_data_lives_but_not_the_config(tmp_path):
    a = load_and_expand(write(tmp_path, BASE))[0]
    b = a.model_copy(update={"dataset": a.dataset.model_copy(update={"root": "/elsewhere"})})
    c = a.model_copy(update={"hparams": {"label_smoothing": 0.1}})
    assert a.trial_id == b.trial_id != c.trial_id
    assert a.dirname.startswith("synthetic-resnet_tiny_cifar-vanilla-s0-")


def test_set_edits_the_suite(tmp_path):
    suite = load_suite(write(tmp_path, BASE), ["recipe.epochs=7", "seeds=[3]"])
    assert suite.recipe.epochs == 7 and suite.seeds == [3]
    with pytest.raises(SuiteError, match=r"--set epochs: expected KEY=VALUE"):
        load_suite(write(tmp_path, BASE), ["epochs"])


def test_set_reaches_list_items_by_index(tmp_path):
    path = write(tmp_path, BASE)
    suite = load_suite(path, ["datasets.0.limit_per_class=100", "methods.1.alpha=0.7", "methods.-1.label=m7",
                              "seeds.1=5"])
    assert suite.datasets[0].name == "synthetic" and suite.datasets[0].limit_per_class == 100
    assert suite.methods[1].hparams["alpha"] == 0.7 and suite.methods[1].display == "m7"
    assert suite.seeds == [0, 5]
    assert {t.hparams.get("alpha") for t in expand(suite, path) if t.method == "mixup"} == {0.7}


@pytest.mark.parametrize(("edit", "message"), [
    ("datasets.3.limit_per_class=100", r"--set datasets.3.limit_per_class=100: datasets.3: index out of range; "
                                       r"datasets has 1 item\(s\), indexes 0 to 0"),
    ("datasets.name=x", r"--set datasets.name=x: datasets is a list; fix: give an item's index, e.g. datasets.0"),
    ("recipe.epochs.max=3", r"--set recipe.epochs.max=3: recipe.epochs is a value, not a mapping or a list"),
])
def test_set_errors_name_the_path(tmp_path, edit, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, BASE), [edit])


# ---- one clear error per mistake, before anything runs ---------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("  epochs: 2", "  epoch: 2"),
         r"suite.yaml: recipe.epoch: unknown key; fix: remove it \(did you mean 'epochs'\? allowed keys here: amp,"),
        (("  epochs: 2", "  epochs: ten"),
         r"suite.yaml: recipe.epochs: Input should be a valid integer.*\(got 'ten'\)"),
        (("  batch_size: 8", ""), r"suite.yaml: recipe.batch_size: this key is required; fix: add it"),
        (("seeds: [0, 1]", "seeds: [0, 1]\nresults: out"),
         r"suite.yaml: results: unknown key; fix: remove it \(did you mean 'results_dir'\?"),
        (("  epochs: 2", "  epochs: 0"), r"suite.yaml: recipe.epochs: Input should be greater than 0 \(got 0\)"),
        (("seeds: [0, 1]", "seeds: [0, 1]\noverrides: [{match: {optimizer: sgd}, set: {}}]"),
         r"suite.yaml: overrides\[0\]: Value error, match on unknown axis \['optimizer'\]; axes are dataset,"),
    ],
)
def test_schema_errors_name_file_field_and_fix(tmp_path, edit, message):
    path = write(tmp_path, BASE.replace(*edit))
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[vanilla, {name: mixup, alpha: 0.4}]", "[vanila]"),
         r"suite.yaml: methods\[0\].name: unknown method 'vanila'; registered: .*vanilla"),
        (("[resnet_tiny_cifar]", "[resnet81]"),
         r"suite.yaml: backbones\[0\].name: unknown backbone 'resnet81'; did you mean"),
        (("[synthetic]", "[cifar11]"),
         r"suite.yaml: datasets\[0\].name: unknown dataset 'cifar11'; registered: .*cifar10"),
        (("{name: mixup, alpha: 0.4}", "{name: mixup, alhpa: 0.4}"),
         r"suite.yaml: methods\[1\]: method 'mixup' has no hyper-parameter 'alhpa'; it accepts: alpha"),
        (("{name: mixup, alpha: 0.4}", "{name: mixup, alpha: -1}"),
         r"suite.yaml: methods\[1\]: alpha must be > 0; got -1"),
    ],
)
def test_resolution_errors_name_file_field_and_fix(tmp_path, edit, message):
    path = write(tmp_path, BASE.replace(*edit))
    with pytest.raises(SuiteError, match=message):
        load_and_expand(path)


def test_every_bad_axis_is_reported_at_once(tmp_path):
    path = write(tmp_path, BASE.replace("[synthetic]", "[cifar11]").replace("[resnet_tiny_cifar]", "[resnet81]")
                 .replace("[vanilla, {name: mixup, alpha: 0.4}]", "[vanila]"))
    with pytest.raises(SuiteError) as err:
        load_and_expand(path)
    fields = [line.split(": ")[1] for line in str(err.value).splitlines()]
    assert fields == ["datasets[0].name", "backbones[0].name", "methods[0].name"]


def test_only_and_overrides_match_trials_the_same_way(tmp_path, capsys):
    from mixbench.cli import main
    from mixbench.suite import axes_match

    trial = load_and_expand(write(tmp_path, BASE))[2]
    assert axes_match({"method": "mixup", "seed": [0, 7]}, trial.axes)  # a method answers to its name and label
    assert not axes_match({"method": "mixup", "seed": 1}, trial.axes)
    assert main(["run", str(write(tmp_path, BASE)), "--dry-run", "--only", "optimizer=sgd"]) != 0
    out = capsys.readouterr()
    assert "--only optimizer=sgd: expected AXIS=V1,V2 with AXIS one of dataset, backbone, method, seed" in (
        out.out + out.err)


def test_missing_data_root_is_reported_with_the_ways_to_set_it(tmp_path):
    path = write(tmp_path, BASE.replace("[synthetic]", "[{name: cifar10, root: /nonexistent/cifar}]"))
    with pytest.raises(SuiteError, match=r"suite.yaml: datasets\[0\].root: /nonexistent/cifar does not exist; "
                                         r"fix: point root: \(or --data-root cifar10=PATH, or MIXBENCH_DATA_CIFAR10\)"):
        load_and_expand(path)


def test_data_root_precedence_cli_then_env_then_suite(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path = write(tmp_path, BASE.replace("[synthetic]", f"[{{name: cifar10, root: {tmp_path / 'nope'}}}]"))
    monkeypatch.setenv("MIXBENCH_DATA_CIFAR10", str(tmp_path / "a"))
    assert load_and_expand(path)[0].dataset.root == str(tmp_path / "a")
    assert load_and_expand(path, {"cifar10": str(tmp_path / "b")})[0].dataset.root == str(tmp_path / "b")


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(SuiteError, match=r"nope.yaml: no such suite file"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(SuiteError, match=r"bad.yaml: line 2: not valid YAML"):
        load_suite(write(tmp_path, "name: x\n  - : [\n", "bad.yaml"))


@pytest.mark.parametrize("suite", sorted(Path(__file__).parents[1].joinpath("suites").glob("*.yaml")))
def test_every_shipped_suite_is_valid(suite):
    assert load_suite(suite).name


def test_methods_that_denormalise_get_the_dataset_statistics(tmp_path):
    text = BASE.replace("[synthetic]", "[{name: fashion_mnist, root: /usr/share}]").replace(
        "[vanilla, {name: mixup, alpha: 0.4}]", "[puzzlemix, {name: puzzlemix, label: own, mean: [0.5], std: [0.25]}]")
    default, own = load_and_expand(write(tmp_path, text))[::2]
    assert (default.hparams["mean"], default.hparams["std"]) == ([0.286], [0.353])  # not the reference's guess
    assert (own.hparams["mean"], own.hparams["std"]) == ([0.5], [0.25])
