"""Mixing methods behind one interface; see `base.Method` and `registry`."""

from mixbench.methods.base import InputMixer, Method, MixedBatch, StepOutput, mixed_cross_entropy
from mixbench.methods.registry import create_method, get_method_class, list_methods, register_method

__all__ = [
    "InputMixer",
    "Method",
    "MixedBatch",
    "StepOutput",
    "create_method",
    "get_method_class",
    "list_methods",
    "mixed_cross_entropy",
    "register_method",
]
