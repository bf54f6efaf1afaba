"""The one place that imports torchvision.

Why this exists: the torchvision 0.28.0 wheel that matches torch 2.13.0 on PyPI is a CUDA
build. Beside a CPU-only torch its compiled operators (``torchvision._C``) fail to load,
and ``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` with
"operator torchvision::nms does not exist": that module registers fake (meta) kernels for
``nms`` and ``qnms`` whether or not the library that defines them loaded.

The fix: when that import fails for that reason, declare the two operator *schemas*
ourselves (no kernels) and import again. Everything this project uses from torchvision
(transforms, ``utils.make_grid``, Inception layers for pytorch-fid) is pure Python and
works; detection ops such as ``torchvision.ops.nms`` stay unavailable, as they already were.
On a CUDA torch the compiled operators load and nothing here runs.

Import torchvision through ``from gen._torchvision import torchvision`` (or call
``import_torchvision()`` before a library such as pytorch-fid imports it itself).
"""

from __future__ import annotations

import sys
import types

import torch

# Schemas copied from torchvision/csrc/ops/nms.cpp; only their names and types matter here.
_MISSING_OPERATOR_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_placeholder_library: torch.library.Library | None = None  # kept alive: dropping it undefines the ops


def _forget_partial_import() -> None:
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> types.ModuleType:
    """Import torchvision, declaring its missing operator schemas if its C++ ops did not load."""
    global _placeholder_library
    try:
        import torchvision
    except RuntimeError as error:
        if "operator torchvision::" not in str(error) or _placeholder_library is not None:
            raise
        _forget_partial_import()
        _placeholder_library = torch.library.Library("torchvision", "DEF")
        for schema in _MISSING_OPERATOR_SCHEMAS:
            _placeholder_library.define(schema)
        import torchvision
    return torchvision


def compiled_ops_loaded() -> bool:
    """True when torchvision's own C++ operators loaded (a matching torch build)."""
    return import_torchvision().extension._has_ops()


torchvision = import_torchvision()
