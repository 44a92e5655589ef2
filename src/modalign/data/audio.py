"""Audio features computed with torch alone: STFT, mel filterbank, log-mel and MFCC.

Every function works on a batch of waveforms at once (one ``torch.stft`` call per chunk), so
thousands of short recordings are featurised in about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from modalign.data.errors import DataError

__all__ = [
    "AudioFeatures",
    "dct_matrix",
    "fix_length",
    "frame_count",
    "hz_to_mel",
    "log_mel_frames",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_to_hz",
    "mfcc",
    "power_spectrogram",
    "waves_to_features",
    "waves_to_frames",
]


def hz_to_mel(f: Tensor | np.ndarray | float) -> Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor | np.ndarray | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular mel filters, ``(n_mels, n_fft // 2 + 1)`` float64.

    Filter ``m`` rises linearly from centre frequency ``m - 1`` to ``m`` (weight 1 at its own
    centre) and falls to zero at centre ``m + 1``; centres are equally spaced on the mel scale
    between ``f_min`` and ``f_max`` (default: Nyquist). Filters are not area-normalised.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise DataError(f"mel filterbank needs 0 <= f_min < f_max <= {sample_rate / 2}")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2))
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if bool((bank.sum(dim=1) == 0).any()):
        raise DataError(
            f"{n_mels} mel bands are too narrow for n_fft={n_fft} at {sample_rate} Hz "
            "(some filters cover no FFT bin): use fewer mel bands or a larger n_fft"
        )
    return bank


def dct_matrix(n_out: int, n_in: int) -> Tensor:
    """Orthonormal DCT-II matrix ``(n_out, n_in)``: ``y = D @ x`` keeps ``n_out`` coefficients."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    d = torch.cos(torch.pi / n_in * (n + 0.5) * k) * (2.0 / n_in) ** 0.5
    d[0] /= 2.0**0.5
    return d


def fix_length(waves: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Centre-crop or zero-pad (centred) every waveform to ``length`` samples: ``(B, length)``."""
    out = np.zeros((len(waves), length), dtype=np.float32)
    for i, w in enumerate(waves):
        n = min(len(w), length)
        src = (len(w) - n) // 2
        dst = (length - n) // 2
        out[i, dst : dst + n] = w[src : src + n]
    return out


def power_spectrogram(waves: Tensor, n_fft: int, hop: int) -> Tensor:
    """``|STFT|^2`` with a periodic Hann window and no edge padding.

    ``waves`` ``(B, T)`` with ``T >= n_fft`` gives ``(B, n_fft // 2 + 1, 1 + (T - n_fft) // hop)``.
    """
    if waves.ndim != 2 or waves.shape[1] < n_fft:
        raise DataError(
            f"waveforms must be (B, T) with T >= n_fft={n_fft}, got {tuple(waves.shape)}"
        )
    window = torch.hann_window(n_fft, periodic=True, dtype=waves.dtype, device=waves.device)
    spec = torch.stft(
        waves, n_fft, hop_length=hop, window=window, center=False, return_complex=True
    )
    return spec.real**2 + spec.imag**2


def log_mel_spectrogram(
    waves: Tensor,
    sample_rate: int,
    *,
    n_fft: int = 256,
    hop: int = 128,
    n_mels: int = 32,
    f_min: float = 0.0,
    f_max: float | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """``log(mel power + eps)``: ``(B, T)`` waveforms to ``(B, n_mels, n_frames)``."""
    bank = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max).to(waves.dtype)
    power = power_spectrogram(waves, n_fft, hop)
    return torch.log(torch.einsum("mf,bft->bmt", bank.to(waves.device), power) + eps)


def mfcc(
    waves: Tensor, sample_rate: int, *, n_mfcc: int = 13, n_mels: int = 32, **kw: float
) -> Tensor:
    """Mel-frequency cepstral coefficients ``(B, n_mfcc, n_frames)``: DCT-II of the log-mel bands.

    ``kw`` go to :func:`log_mel_spectrogram` (``n_fft``, ``hop``, ``f_min``, ``f_max``, ``eps``).
    """
    if n_mfcc > n_mels:
        raise DataError(f"n_mfcc={n_mfcc} cannot exceed n_mels={n_mels}")
    logmel = log_mel_spectrogram(waves, sample_rate, n_mels=n_mels, **kw)  # type: ignore[arg-type]
    d = dct_matrix(n_mfcc, n_mels).to(dtype=waves.dtype, device=waves.device)
    return torch.einsum("km,bmt->bkt", d, logmel)


@dataclass(frozen=True)
class AudioFeatures:
    """How recordings become fixed-size feature vectors.

    Attributes:
        kind: ``"logmel"`` (log mel-band power) or ``"mfcc"`` (its DCT, ``n_mfcc`` coefficients).
        n_fft: STFT window length in samples (256 = 32 ms at 8 kHz).
        hop: STFT hop in samples (128 = 16 ms at 8 kHz).
        n_mels: number of mel bands.
        n_mfcc: cepstral coefficients kept (``kind="mfcc"``).
        pooling: ``"frames"``: centre-crop or zero-pad each recording to ``n_frames`` frames and
            flatten ``(bands, n_frames)`` (time structure kept, so time masking applies);
            ``"meanstd"``: mean and standard deviation of each band over the recording's own
            frames (length independent, ``2 * bands`` features).
        n_frames: frames kept with ``pooling="frames"`` (40 frames = 0.66 s at the defaults).
        normalize: scale each recording to peak amplitude 1 first (speakers' levels differ).
    """

    kind: Literal["logmel", "mfcc"] = "logmel"
    n_fft: int = 256
    hop: int = 128
    n_mels: int = 32
    n_mfcc: int = 13
    pooling: Literal["frames", "meanstd"] = "frames"
    n_frames: int = 40
    normalize: bool = True

    @property
    def n_bands(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one feature vector before flattening."""
        if self.pooling == "frames":
            return (self.n_bands, self.n_frames)
        return (2, self.n_bands)

    def validate(self) -> None:
        if self.kind not in ("logmel", "mfcc"):
            raise DataError(f"audio feature kind must be 'logmel' or 'mfcc', got {self.kind!r}")
        if self.pooling not in ("frames", "meanstd"):
            raise DataError(f"pooling must be 'frames' or 'meanstd', got {self.pooling!r}")
        if min(self.n_fft, self.hop, self.n_mels, self.n_mfcc, self.n_frames) < 1:
            raise DataError(f"audio feature sizes must be positive: {self}")


def _bands(waves: Tensor, sample_rate: int, cfg: AudioFeatures) -> Tensor:
    kw = {"n_fft": cfg.n_fft, "hop": cfg.hop, "n_mels": cfg.n_mels}
    if cfg.kind == "mfcc":
        return mfcc(waves, sample_rate, n_mfcc=cfg.n_mfcc, **kw)
    return log_mel_spectrogram(waves, sample_rate, **kw)


def waves_to_features(
    waves: Sequence[np.ndarray],
    sample_rate: int,
    config: AudioFeatures | None = None,
    *,
    chunk: int = 512,
) -> np.ndarray:
    """Featurise variable-length float waveforms into a ``(B, prod(config.shape))`` float32 array.

    Recordings are processed ``chunk`` at a time (one batched STFT per chunk) to bound memory.
    """
    cfg = config or AudioFeatures()
    cfg.validate()
    waves = list(waves)
    if cfg.normalize:
        waves = [w / max(float(np.abs(w).max(initial=0.0)), 1e-8) for w in waves]
    out = np.empty((len(waves), int(np.prod(cfg.shape))), dtype=np.float32)
    for start in range(0, len(waves), chunk):
        part = waves[start : start + chunk]
        if cfg.pooling == "frames":
            length = cfg.n_fft + cfg.hop * (cfg.n_frames - 1)
            batch = torch.from_numpy(fix_length(part, length))
            feats = _bands(batch, sample_rate, cfg)
        else:
            lengths = np.array([max(len(w), cfg.n_fft) for w in part])
            # Zero-pad on the right to a common length; each recording's statistics use only
            # the frames that lie inside its own samples.
            batch = np.zeros((len(part), int(lengths.max())), dtype=np.float32)
            for i, w in enumerate(part):
                batch[i, : len(w)] = w
            bands = _bands(torch.from_numpy(batch), sample_rate, cfg)
            n_valid = torch.from_numpy(1 + (lengths - cfg.n_fft) // cfg.hop)
            valid = torch.arange(bands.shape[2])[None, :] < n_valid[:, None]
            w = valid[:, None, :].to(bands.dtype)
            count = w.sum(dim=2)
            mean = (bands * w).sum(dim=2) / count
            var = (((bands - mean[..., None]) ** 2) * w).sum(dim=2) / count
            feats = torch.stack([mean, var.sqrt()], dim=1)
        out[start : start + len(part)] = feats.reshape(len(part), -1).numpy()
    return out


def frame_count(n_samples: int, config: AudioFeatures | None = None) -> int:
    """Frames :func:`waves_to_frames` gives a recording of ``n_samples`` samples:
    ``1 + (max(n_samples, n_fft) - n_fft) // hop`` (a recording shorter than one window is
    zero-padded to one window; trailing samples that do not fill a whole hop are dropped)."""
    cfg = config or AudioFeatures()
    return 1 + (max(int(n_samples), cfg.n_fft) - cfg.n_fft) // cfg.hop


def waves_to_frames(
    waves: Sequence[np.ndarray],
    sample_rate: int,
    config: AudioFeatures | None = None,
    *,
    chunk: int = 512,
) -> list[np.ndarray]:
    """Each recording's own frame sequence: a list of ``(n_i, bands)`` float32 arrays.

    The same features as :func:`waves_to_features` (``config.kind``, ``n_fft``, ``hop``,
    ``n_mels`` / ``n_mfcc``, peak normalisation) but neither cropped nor padded to
    ``config.n_frames`` (``pooling`` and ``n_frames`` are ignored): frame ``t`` covers samples
    ``[t * hop, t * hop + n_fft)`` of the recording, and ``n_i = frame_count(len(wave))``.
    Recordings are right-padded to a common length ``chunk`` at a time for one batched STFT;
    the frames inside a recording's own samples do not see the padding.
    """
    cfg = config or AudioFeatures()
    cfg.validate()
    waves = list(waves)
    if cfg.normalize:
        waves = [w / max(float(np.abs(w).max(initial=0.0)), 1e-8) for w in waves]
    out: list[np.ndarray] = []
    for start in range(0, len(waves), chunk):
        part = waves[start : start + chunk]
        lengths = np.array([max(len(w), cfg.n_fft) for w in part])
        batch = np.zeros((len(part), int(lengths.max())), dtype=np.float32)
        for i, w in enumerate(part):
            batch[i, : len(w)] = w
        bands = _bands(torch.from_numpy(batch), sample_rate, cfg).numpy()  # (B, bands, frames)
        for i, w in enumerate(part):
            n = frame_count(len(w), cfg)
            out.append(np.ascontiguousarray(bands[i, :, :n].T, dtype=np.float32))
    return out


def log_mel_frames(
    wave: np.ndarray, sample_rate: int, config: AudioFeatures | None = None
) -> np.ndarray:
    """One recording's frames ``(frame_count(len(wave)), bands)`` (see :func:`waves_to_frames`)."""
    return waves_to_frames([wave], sample_rate, config)[0]
