"""An example third-party plugin for mtu_toolkit: a new MC head and a new pixel loss.

Nothing in ``mtu_toolkit`` changes: the modules below register into
``mtu_toolkit.registry.MODELS`` when imported, and a config imports this package with::

    custom_imports = dict(imports=['mtu_plugin_example'], allow_failed_imports=False)

(the folder holding this package must be on ``PYTHONPATH``, or the package installed).
"""
from .charbonnier_loss import CharbonnierLoss
from .global_shift_head import GlobalShiftMCHead

__all__ = ['CharbonnierLoss', 'GlobalShiftMCHead']
