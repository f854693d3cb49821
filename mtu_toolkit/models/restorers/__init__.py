from .mtu_restorer import FrameStream, MTURestorer

__all__ = ['FrameStream', 'MTURestorer']
