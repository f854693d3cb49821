from .base import BaseMCHead
from .correlation import CorrelationMCHead
from .fan import FANMCHead
from .flow import FlowMCHead
from .none import NoneMCHead

__all__ = ['BaseMCHead', 'CorrelationMCHead', 'FANMCHead', 'FlowMCHead', 'NoneMCHead']
