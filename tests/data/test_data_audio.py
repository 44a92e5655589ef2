"""Audio features against independent references (scipy's DCT, NumPy's FFT)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from modalign.data import AudioFeatures, DataError, log_mel_spectrogram, mel_filterbank, mfcc
from modalign.data.audio import (
    dct_matrix,
    fix_length,
    hz_to_mel,
    mel_to_hz,
    power_spectrogram,
    waves_to_features,
)

SR = 8000


def test_dct_matrix_matches_scipy_orthonormal_dct():
    x = np.random.default_rng(0).normal(size=(5, 32))
    ours = x @ dct_matrix(13, 32).numpy().T
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :13]
    assert np.allclose(ours, ref, atol=1e-12)


def test_mel_scale_round_trip():
    f = np.array([0.0, 100.0, 1000.0, 4000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(f)).numpy(), f)
    assert abs(float(hz_to_mel(1000.0)) - 999.99) < 0.1  # HTK scale: 1 kHz is about 1000 mel


def test_mel_filterbank_shape_peaks_and_partition():
    n_fft, n_mels = 512, 20
    bank = mel_filterbank(n_mels, n_fft, SR).numpy()
    assert bank.shape == (n_mels, n_fft // 2 + 1) and (bank >= 0).all()
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    centres = mel_to_hz(np.linspace(0, float(hz_to_mel(SR / 2)), n_mels + 2)).numpy()[1:-1]
    # Each filter peaks at the FFT bin nearest its centre frequency...
    assert np.all(np.abs(freqs[bank.argmax(axis=1)] - centres) <= SR / n_fft)
    # ...and neighbouring triangles add up to one between the first and the last centre.
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    assert np.allclose(bank[:, inside].sum(axis=0), 1.0)


def test_too_many_mel_bands_is_a_clear_error():
    with pytest.raises(DataError, match="too narrow"):
        mel_filterbank(128, 64, SR)


def test_power_spectrogram_matches_numpy_frames():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 1000))
    n_fft, hop = 128, 50
    ours = power_spectrogram(torch.from_numpy(x), n_fft, hop).numpy()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    n_frames = 1 + (1000 - n_fft) // hop
    frames = np.stack([x[:, t * hop : t * hop + n_fft] * window for t in range(n_frames)], -1)
    ref = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    assert ours.shape == (2, n_fft // 2 + 1, n_frames)
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_pure_tone_lands_in_its_mel_band():
    t = np.arange(4000) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * 1000.0 * t))[None]
    logmel = log_mel_spectrogram(tone, SR, n_fft=256, hop=128, n_mels=32)
    band = int(logmel.mean(dim=2).argmax())
    bank = mel_filterbank(32, 256, SR)
    assert int(bank[:, round(1000 / (SR / 256))].argmax()) == band
    coeffs = mfcc(tone, SR, n_mfcc=13, n_mels=32)
    assert coeffs.shape == (1, 13, logmel.shape[2])
    assert torch.allclose(coeffs, torch.einsum("km,bmt->bkt", dct_matrix(13, 32), logmel))


def test_fix_length_centres():
    out = fix_length([np.arange(6, dtype=np.float32), np.ones(2, np.float32)], 4)
    assert out.tolist() == [[1, 2, 3, 4], [0, 1, 1, 0]]


def test_features_shapes_and_meanstd_ignores_padding():
    rng = np.random.default_rng(2)
    short = rng.normal(size=900).astype(np.float32)
    long = rng.normal(size=5000).astype(np.float32)
    frames = waves_to_features([short, long], SR)
    assert frames.shape == (2, 32 * 40) and AudioFeatures().shape == (32, 40)
    cfg = AudioFeatures(kind="mfcc", pooling="meanstd", n_mfcc=10)
    alone = waves_to_features([short], SR, cfg)
    together = waves_to_features([short, long], SR, cfg)
    assert together.shape == (2, 20)
    # A recording's pooled features do not depend on the longer recordings batched with it.
    assert np.allclose(alone[0], together[0], atol=1e-5)
    with pytest.raises(DataError, match="pooling"):
        waves_to_features([short], SR, AudioFeatures(pooling="max"))  # type: ignore[arg-type]
