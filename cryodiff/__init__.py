"""cryodiff: diffusion-based denoising of single-particle cryo-EM images.

Reproduces Zhang, Zhao, Hu & Zhao, "Robust single-particle cryo-EM image denoising and
restoration" (ICASSP 2024): an SR3-style conditional diffusion model plus a post-processing
U-Net, with the physics (projection, CTF, noise, reconstruction, FSC) needed to test it.
"""

__version__ = "0.1.0"
