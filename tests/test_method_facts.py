"""What reports and the cost model know about a method lives on its class: built-ins, plug-ins, old names."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import pandas as pd
import pytest
import torch

from mixbench import plots
from mixbench.claims import method_display
from mixbench.cost import eval_passes, method_multiplier
from mixbench.methods import InputMixer, MixedBatch, get_method_class, register_method
from mixbench.methods.registry import methods_in_display_order
from mixbench.report import method_rank, ordered_methods
from mixbench.suite import TrialConfig

BUILT_IN = {  # name: (paper_name, display_order, cost_multiplier, eval_passes)
    "vanilla": ("Vanilla", 0, 1.0, 1),
    "mixup": ("Mixup", 10, 1.0, 1),
    "cutmix": ("CutMix", 20, 1.0, 1),
    "saliencymix": ("SaliencyMix", 30, 1.05, 1),
    "puzzlemix": ("PuzzleMix", 40, 2.0, 1),
    "automix": ("AutoMix", 50, 3.0, 2),
}


@register_method
class Plugin(InputMixer):
    """A third-party method: its facts reach every table without touching mixbench."""

    name = "test_facts_plugin"
    paper_name = "PlugMix"
    cost_multiplier = 1.5
    cost_source = "the plug-in's own measurement"
    eval_passes = 3

    def sample(self, batch_size, gen):
        return {"index": torch.randperm(batch_size, generator=gen)}

    def mix(self, x, y, index):
        return MixedBatch(x=x[index], y_a=y[index], y_b=y[index], lam=torch.tensor(1.0))


def trial(method: str, **hparams) -> TrialConfig:
    return TrialConfig(suite="s", dataset={"name": "synthetic"}, backbone={"name": "resnet_tiny_cifar"},
                       method=method, method_label=method, method_version=1, hparams=hparams, seed=0,
                       recipe={"epochs": 1, "batch_size": 8})


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_methods_carry_their_facts(name):
    cls = get_method_class(name)
    paper, order, multiplier, passes = BUILT_IN[name]
    assert (cls.paper_name, cls.display_order, cls.cost_multiplier, cls.eval_passes) == BUILT_IN[name]
    assert cls.cost_source and cls.cost_source != "not estimated: counted as vanilla"
    assert method_display(name) == paper
    assert method_multiplier(name) == multiplier
    assert eval_passes(trial(name)) == passes


def test_automix_mix_heads_add_two_eval_passes():
    assert eval_passes(trial("automix", eval_mix_heads=True)) == 4


def test_a_plug_in_gets_its_facts_and_an_unknown_name_counts_as_vanilla_and_sorts_last():
    assert method_display("test_facts_plugin") == "PlugMix"
    assert method_display("test_facts_plugin", "my label") == "my label"
    assert method_multiplier("test_facts_plugin") == 1.5
    assert eval_passes(trial("test_facts_plugin")) == 3
    assert method_display("gone_method") == "gone_method"
    assert method_multiplier("gone_method") == 1.0
    frame = pd.DataFrame({"method_name": ["gone_method", "test_facts_plugin", "automix", "vanilla", "mixup"],
                          "method": ["gone", "plug", "automix", "vanilla", "mixup α=2"]})
    assert ordered_methods(frame) == ["vanilla", "mixup α=2", "automix", "plug", "gone"]
    assert method_rank("test_facts_plugin", "x") < method_rank("gone_method", "a")


def test_project_methods_keep_their_plot_colour_and_plug_ins_take_the_next():
    assert methods_in_display_order()[:6] == list(BUILT_IN)
    colours = plots._colours(["automix", "plug", "vanilla", "mixup"])
    named = methods_in_display_order()[:10]  # the project's methods, C0 to C9
    first_spare = f"C{len(named)}" if len(named) < 10 else matplotlib.colormaps["tab20"].colors[0]
    assert colours == {"vanilla": "C0", "mixup": "C1", "automix": "C5", "plug": first_spare}


def test_plots_do_not_import_the_report():
    code = "import sys, mixbench.plots; print('mixbench.report' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
