"""Re-export of :class:`latentode.batch.Batch` (its home is the torch-only ``latentode.batch``).

``latentode.data.batch.Batch`` and ``latentode.data.Batch`` stay importable; the model,
training and ODE layers import ``latentode.batch`` so that they never load pandas.
"""

from latentode.batch import Batch

__all__ = ["Batch"]
