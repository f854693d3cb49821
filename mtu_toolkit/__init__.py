"""mtu_toolkit: real-time video deblurring with stacked multi-task units (MTU)."""
__version__ = '0.1.0'
