"""Optimal transport core: torch-native solvers, no learning.

Every function takes and returns torch tensors on any device and in float32 or float64, and
documents the objective it minimises and the shapes it takes.
"""

from modalign.ot.barycenter import (
    Barycenter,
    barycenter_objective,
    fgw_barycenter,
    wasserstein_barycenter,
)
from modalign.ot.entropic import round_to_marginals, sinkhorn
from modalign.ot.gaussian import gaussian_barycenter, gaussian_w2, kl_normal, kl_normal_full
from modalign.ot.gromov import (
    fgw_objective,
    fused_gromov_wasserstein,
    fused_gromov_wasserstein2,
    gromov_wasserstein,
    gromov_wasserstein2,
    linearized_cost,
)
from modalign.ot.lp import emd
from modalign.ot.structure import (
    LowRank,
    SparseGraph,
    Structure,
    graph_structure,
    kernel_structure,
    normalize_structure,
    sq_distances,
    sqeuclidean_lowrank,
)
from modalign.ot.token import token_alignment_loss, token_cost, token_ot

__all__ = [
    "Barycenter",
    "LowRank",
    "SparseGraph",
    "Structure",
    "barycenter_objective",
    "emd",
    "fgw_barycenter",
    "fgw_objective",
    "fused_gromov_wasserstein",
    "fused_gromov_wasserstein2",
    "gaussian_barycenter",
    "gaussian_w2",
    "graph_structure",
    "gromov_wasserstein",
    "gromov_wasserstein2",
    "kernel_structure",
    "kl_normal",
    "kl_normal_full",
    "linearized_cost",
    "normalize_structure",
    "round_to_marginals",
    "sinkhorn",
    "sq_distances",
    "sqeuclidean_lowrank",
    "token_alignment_loss",
    "token_cost",
    "token_ot",
    "wasserstein_barycenter",
]
