"""Pictures for people: optical flow as colour."""
from .flow_color import color_wheel, flow_color_key, flow_to_color

__all__ = ['color_wheel', 'flow_color_key', 'flow_to_color']
