"""Shared fixtures of the optimal-transport tests.

* ``device`` runs a test on the CPU and, when one is present, on a CUDA device;
  ``dtype`` runs it in float32 and float64.
* ``fgw_problem`` and ``point_clouds`` build seeded random problems (numpy, float64).
* ``ref`` holds *independent* reference formulas written directly from the definitions
  (plain numpy / plain torch, no modalign code), so every numeric check compares the library
  against something it did not compute itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])])
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Every OT test module runs on one thread (see ``one_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture
def asymmetric_blas(monkeypatch):
    """Simulates a BLAS (MKL on AMD EPYC) whose ``x x^T`` has entries (i, j) and (j, i) that
    differ in the last bit: the real product, nudged up by one ulp above the diagonal.
    Returns the patched product, so a test can check that the simulation is asymmetric."""
    import modalign.ot.structure as structure

    real = structure._inner_products

    def last_bit_asymmetric(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = real(x, y)
        upper = torch.ones_like(g, dtype=torch.bool).triu(diagonal=1)
        return torch.where(upper, torch.nextafter(g, torch.full_like(g, float("inf"))), g)

    monkeypatch.setattr(structure, "_inner_products", last_bit_asymmetric)
    return last_bit_asymmetric


# ----------------------------------------------------------------------------- problems
def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _simplex(rng: np.random.Generator, n: int, uniform: bool) -> np.ndarray:
    if uniform:
        return np.full(n, 1.0 / n)
    w = rng.uniform(0.2, 1.0, size=n)
    return w / w.sum()


@dataclass
class FGWProblem:
    """A fused GW problem in float64 numpy: positions ``x``, ``y`` (giving the structures),
    separate features ``fx``, ``fy`` (giving ``M``), and marginals."""

    x: np.ndarray
    y: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    M: np.ndarray
    C1: np.ndarray
    C2: np.ndarray
    p: np.ndarray
    q: np.ndarray

    def torch(self, dtype=torch.float64, device="cpu") -> dict[str, torch.Tensor]:
        names = ("x", "y", "M", "C1", "C2", "p", "q")
        return {k: torch.tensor(getattr(self, k), dtype=dtype, device=device) for k in names}


def make_fgw_problem(seed: int, n: int, m: int, *, d: int = 3, uniform: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 1.3 + 0.5
    fx = rng.normal(size=(n, 2))
    fy = rng.normal(size=(m, 2)) + 0.3
    M = _sqdist(fx, fy)
    C1 = _sqdist(x, x)
    C2 = _sqdist(y, y)
    return FGWProblem(
        x=x,
        y=y,
        fx=fx,
        fy=fy,
        M=M / M.max(),
        C1=C1 / C1.max(),
        C2=C2 / C2.max(),
        p=_simplex(rng, n, uniform),
        q=_simplex(rng, m, uniform),
    )


@pytest.fixture(scope="session")
def fgw_problem():
    """``fgw_problem(seed, n, m, d=3, uniform=False)`` -> :class:`FGWProblem`."""
    return make_fgw_problem


def make_point_clouds(seed: int, sizes, d: int, *, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)) + shift * i for i, n in enumerate(sizes)]


@pytest.fixture(scope="session")
def point_clouds():
    """``point_clouds(seed, sizes, d, shift=0.0)`` -> list of (n_i, d) float64 arrays."""
    return make_point_clouds


# ----------------------------------------------------------------------------- references
class Reference:
    """Reference formulas written from the definitions, independent of modalign."""

    @staticmethod
    def asnp(x) -> np.ndarray:
        """A tensor (any device / dtype) or array as a float64 numpy array."""
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().double().numpy()
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def sqdist(a, b) -> np.ndarray:
        return _sqdist(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))

    @staticmethod
    def normalized_sqdist(a) -> np.ndarray:
        d = _sqdist(np.asarray(a, dtype=np.float64), np.asarray(a, dtype=np.float64))
        return d / d.max()

    @staticmethod
    def gw_quadruple_sum(T, C1, C2) -> float:
        """``sum_{ijkl} (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l]`` by brute force (row by row)."""
        T, C1, C2 = (np.asarray(v, dtype=np.float64) for v in (T, C1, C2))
        total = 0.0
        for i in range(T.shape[0]):
            # loss[j, k, l] = (C1[i, k] - C2[j, l])^2
            loss = (C1[i][None, :, None] - C2[:, None, :]) ** 2
            total += float(np.einsum("jkl,j,kl->", loss, T[i], T))
        return total

    @classmethod
    def fgw(cls, T, M, C1, C2, alpha: float) -> float:
        """``alpha <M, T> + (1 - alpha) sum (C1[i,k] - C2[j,l])^2 T_ij T_kl``."""
        T = np.asarray(T, dtype=np.float64)
        value = 0.0
        if alpha > 0:
            value += alpha * float((np.asarray(M, dtype=np.float64) * T).sum())
        if alpha < 1:
            value += (1 - alpha) * cls.gw_quadruple_sum(T, C1, C2)
        return value

    @classmethod
    def barycenter_objective(cls, z, C, xs, Cs, Ts, alpha, lambdas=None) -> float:
        """``sum_m lambda_m [alpha <|z_i - x_j|^2, T_m> + (1-alpha) GW(T_m; C, C_m)]``."""
        lambdas = [1.0 / len(xs)] * len(xs) if lambdas is None else lambdas
        total = 0.0
        for lam, x, T, i in zip(lambdas, xs, Ts, range(len(xs))):
            Cm = None if Cs is None else Cs[i]
            total += lam * cls.fgw(T, cls.sqdist(z, x), C, Cm, alpha)
        return total

    @staticmethod
    def gw_torch(T, M, C1, C2, alpha):
        """The same objective in plain torch (a 4-index tensor), for autograd references."""
        loss = (C1[:, None, :, None] - C2[None, :, None, :]) ** 2  # (i, j, k, l)
        gw = torch.einsum("ijkl,ij,kl->", loss, T, T)
        return alpha * (M * T).sum() + (1 - alpha) * gw


@pytest.fixture(scope="session")
def ref() -> type[Reference]:
    return Reference
