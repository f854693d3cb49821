"""Optical flow between consecutive SHARP frames for the motion loss (OpenCV DIS)."""
import cv2


def sharp_flow(frame_t, frame_prev):
    """Flow (H, W, 2) float32 (dx, dy) with ``frame_t(x) ~ frame_prev(x + flow(x))``.

    Args:
        frame_t, frame_prev: (H, W, 3) uint8 RGB sharp frames t and t-1.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray_t = cv2.cvtColor(frame_t, cv2.COLOR_RGB2GRAY)
    gray_p = cv2.cvtColor(frame_prev, cv2.COLOR_RGB2GRAY)
    return dis.calc(gray_t, gray_p, None)
