"""The networks: model, training, export (PyTorch and CompressAI; not needed on the edge).

CompressAI imports torch_geometric, whose import calls the deprecated ``torch.jit.script`` and
prints a FutureWarning that users cannot act on; it is imported here once with that warning
silenced. Torch-free installs have no CompressAI, and numpy-only modules here still import.
"""

import contextlib
import warnings

with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import compressai  # noqa: F401
