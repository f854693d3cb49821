from .base import BaseMCHead
from .correlation import CorrelationMCHead
from .none import NoneMCHead

__all__ = ['BaseMCHead', 'CorrelationMCHead', 'NoneMCHead']
