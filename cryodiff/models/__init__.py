"""Learned parts: the SR3 U-Net and the post-processing U-Net."""
