from .detail_net import DetailNet
from .mtu_net import MTUNet, MTUState

__all__ = ['DetailNet', 'MTUNet', 'MTUState']
