"""Images as the optimizer sees them: Fourier coefficients scaled to natural images' 1/f spectrum,
in decorrelated colour, squashed into range by a sigmoid.

Optimizing pixels directly gives high-frequency noise that excites a unit but shows nothing a
person can read; scaling each frequency by 1/f makes every frequency equally easy to change,
and optimizing in decorrelated colour keeps the colours of natural images (Olah et al. 2017,
"Feature Visualization", Distill).
"""
from __future__ import annotations

import numpy as np
import torch

INIT_STD = 0.01  # spectra start as faint noise
SPECTRUM_DIVISOR = 4.0  # keeps the starting image near mid-grey after the sigmoid


def frequency_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """1 / f**decay for every coefficient of a real 2-D FFT of this size, [height, width // 2 + 1].

    The zero frequency is treated as the lowest non-zero one, so the mean colour can still move.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    return torch.from_numpy(1.0 / np.maximum(f, 1.0 / max(height, width)) ** decay).float()


def colour_basis(pixels: np.ndarray | None, channels: int) -> torch.Tensor:
    """A [channels, channels] matrix that turns decorrelated colour into the inputs' own colours.

    The square root of the colour covariance of ``pixels`` (N x channels, values in [0, 1]),
    scaled so its largest column has norm 1. Without pixels, or for other channel counts than
    the data has, the identity.
    """
    if pixels is None or pixels.shape[1] != channels or len(pixels) < channels + 1:
        return torch.eye(channels)
    cov = np.cov(pixels.astype(np.float64), rowvar=False).reshape(channels, channels)
    u, s, _ = np.linalg.svd(cov)
    root = u * np.sqrt(np.maximum(s, 0))
    norm = np.linalg.norm(root, axis=0).max()
    return torch.from_numpy(root / norm if norm > 0 else np.eye(channels)).float()


class FourierImages(torch.nn.Module):
    """A batch of images in [0, 1], parameterized by their scaled Fourier spectra."""

    def __init__(self, seeds: list[int], channels: int, height: int, width: int, basis: torch.Tensor):
        super().__init__()
        self.size = (height, width)
        shape = (channels, height, width // 2 + 1, 2)
        # one generator per image, so an image does not depend on which others share its batch
        start = [torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
        self.spectrum = torch.nn.Parameter(torch.stack(start) * INIT_STD)
        self.register_buffer("scale", frequency_scale(height, width)[None, None, :, :, None])
        self.register_buffer("basis", basis)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.spectrum * self.scale).contiguous())
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / SPECTRUM_DIVISOR
        image = torch.einsum("bchw,dc->bdhw", image, self.basis)
        return torch.sigmoid(image)
