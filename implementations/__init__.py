"""Logistic-regression gradient steps, from two Python loops to compiled kernels.

All behind one interface: REGISTRY[name].propagate and REGISTRY[name].optimize.
"""

from implementations.interface import Goal, Gradients, Implementation, Prepared, gradient_descent
from implementations.registry import BASELINE, REFERENCE, REGISTRY, with_goals
from implementations.validation import Inputs, validate_hyperparameters, validate_inputs

__all__ = [
    "BASELINE",
    "REFERENCE",
    "REGISTRY",
    "Goal",
    "Gradients",
    "Implementation",
    "Inputs",
    "Prepared",
    "gradient_descent",
    "validate_hyperparameters",
    "validate_inputs",
    "with_goals",
]
