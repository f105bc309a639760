"""Device-side (re)clustering of embeddings: k-means, k-means++, k-medoids, Gaussian mixtures by EM,
random centres.

Every routine takes an (n, d) tensor on any device and a ``torch.Generator`` that may live on another
device; random numbers are drawn on the generator's device and moved, so results are reproducible
from the generator's seed. Loops only synchronise with the host for a convergence check.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from raydc.compute.precision import full_precision

# Iterations between host-side convergence checks (each check is one device synchronisation).
CHECK_EVERY = 5

Reclusterer = Callable[[Tensor, int, torch.Generator], tuple[Tensor, Tensor]]


def sq_distances(x: Tensor, centers: Tensor) -> Tensor:
    """(n, k) squared Euclidean distances as ‖x‖² − 2x·c + ‖c‖² (one GEMM), clamped at 0 against cancellation."""
    x, centers = x.float(), centers.float()  # an embedding computed under bf16 autocast arrives in bf16
    x_sq = x.pow(2).sum(1, keepdim=True)
    c_sq = centers.pow(2).sum(1)
    with full_precision(x.device.type):
        return torch.addmm(x_sq + c_sq, x, centers.T, alpha=-2).clamp_min_(0)


def nearest(x: Tensor, centers: Tensor) -> Tensor:
    """Index (int64) of each row's nearest centre."""
    return sq_distances(x, centers).argmin(1)


def _as_float(x: Tensor) -> Tensor:
    # Keep float32/float64; integer or half inputs are promoted so distance sums stay accurate.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_k(x: Tensor, k: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"expected an (n, d) tensor, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, n={x.shape[0]}], got {k}")


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """n float64 uniforms in [0, 1) drawn on the generator's device, moved to ``device``."""
    return torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64).to(device)


def _kmeans_plusplus_indices(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Row indices of k seeds drawn by D² sampling (Arthur & Vassilvitskii, 2007), without local trials."""
    n = x.shape[0]
    u = _uniform(k, generator, x.device)
    indices = torch.empty(k, dtype=torch.long, device=x.device)
    indices[0] = (u[0] * n).long().clamp_max(n - 1)
    min_sq = _sq_distances_to(x, x[indices[:1]])
    for j in range(1, k):
        # All points already coincide with a seed: fall back to uniform sampling instead of dividing by zero.
        cumulative = torch.where(min_sq.sum() > 0, min_sq, 1.0).cumsum(0)
        pick = torch.searchsorted(cumulative, (u[j] * cumulative[-1]).view(1), right=True).clamp_max(n - 1)
        indices[j : j + 1] = pick
        min_sq = torch.minimum(min_sq, _sq_distances_to(x, x[pick]))
    return indices


def _sq_distances_to(x: Tensor, point: Tensor) -> Tensor:
    """(n,) float64 squared distances to a (1, d) point, by differences: no cancellation, three kernels."""
    return (x - point).pow(2).sum(1, dtype=torch.float64)


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """(k, d) k-means++ seeds: rows of x chosen by standard D² sampling."""
    x = _as_float(x)
    _check_k(x, k)
    return x[_kmeans_plusplus_indices(x, k, generator)]


class _LloydData:
    """What every Lloyd iteration reads of x, computed once: x with a column of ones (its one-hot product gives the
    clusters' sums and sizes together), ‖x‖² per row and the cluster indices to compare labels with."""

    def __init__(self, x: Tensor, k: int):
        self.x = x
        self.x_ones = torch.cat([x, x.new_ones(len(x), 1)], 1)
        self.x_sq = x.pow(2).sum(1)
        self.clusters = torch.arange(k, device=x.device)

    def assign(self, centers: Tensor) -> tuple[Tensor, Tensor]:
        """(squared distance to the nearest centre, its index) of every row."""
        # ‖x‖² is the same for every centre of a row: it joins after the argmin, which it cannot change.
        c_sq = centers.pow(2).sum(1)
        with full_precision(self.x.device.type):
            partial, labels = torch.addmm(c_sq, self.x, centers.T, alpha=-2).min(1)
        return (partial + self.x_sq).clamp_min_(0), labels

    def means(self, labels: Tensor, min_sq: Tensor) -> Tensor:
        """Cluster means; empty clusters move to the points farthest from their current centre."""
        # One-hot GEMM instead of index_add_: deterministic on CUDA (no float atomics).
        with full_precision(self.x.device.type):
            sums = (labels.unsqueeze(0) == self.clusters.unsqueeze(1)).to(self.x.dtype) @ self.x_ones
        counts = sums[:, -1:]
        means = sums[:, :-1] / counts.clamp_min(1)
        empty = counts == 0
        farthest = min_sq.topk(len(counts)).indices
        # The j-th empty cluster takes the j-th farthest point, so reseeded centres are distinct points (a cluster
        # before the first empty one reads index -1, which `where` discards).
        rank = empty.squeeze(1).cumsum(0) - 1
        return torch.where(empty, self.x[farthest[rank]], means)


def _lloyd(x: Tensor, centers: Tensor, max_iter: int, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Lloyd iterations from ``centers``; returns (centers, labels, inertia as a 0-d tensor)."""
    data = _LloydData(x, centers.shape[0])
    # Tolerance relative to the data's mean per-feature variance, as in scikit-learn.
    abs_tol = tol * x.var(0, correction=0).mean()
    for it in range(1, max_iter + 1):
        min_sq, labels = data.assign(centers)
        new_centers = data.means(labels, min_sq)
        # the shift is read only at a check, so only then computed
        converged = it % CHECK_EVERY == 0 and bool((new_centers - centers).pow(2).sum() <= abs_tol)
        centers = new_centers
        if converged:
            break
    min_sq, labels = data.assign(centers)
    return centers, labels, min_sq.sum()


def kmeans(
    x: Tensor,
    k: int,
    generator: torch.Generator,
    *,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding; best of ``n_init`` runs by inertia.

    ``tol`` bounds the squared centre shift relative to the mean feature variance (scikit-learn's
    convention). ``init`` (k, d) replaces the seeding and implies a single run.
    Returns (centers (k, d), labels (n,) int64).
    """
    x = _as_float(x)
    _check_k(x, k)
    # Centring keeps ‖x‖² small relative to distances, so the GEMM distance form loses less precision.
    offset = x.mean(0)
    xc = x - offset
    if init is not None:
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"init must have shape ({k}, {x.shape[1]}), got {tuple(init.shape)}")
        seeds = [init.to(device=x.device, dtype=x.dtype) - offset]
    else:
        seeds = [xc[_kmeans_plusplus_indices(xc, k, generator)] for _ in range(max(n_init, 1))]
    runs = [_lloyd(xc, seed, max_iter, tol) for seed in seeds]
    best = int(torch.stack([inertia for _, _, inertia in runs]).argmin())
    centers, labels, _ = runs[best]
    return centers + offset, labels


def _within_cluster_costs(x: Tensor, labels: Tensor, k: int, block_size: int) -> Tensor:
    """(n,) sum of Euclidean distances from each point to the members of its own cluster, in row blocks."""
    one_hot = F.one_hot(labels, k).to(x.dtype)
    # Per-cluster sums by GEMM: one pass over each distance block instead of mask, multiply and reduce.
    sums = torch.cat([torch.cdist(x[s : s + block_size], x) @ one_hot for s in range(0, x.shape[0], block_size)])
    return sums.gather(1, labels.unsqueeze(1)).squeeze(1)


KMEDOIDS_INITS = ("heuristic", "kmeans++")  # the medoids k-medoids starts from (brb.kmedoids_init)


def kmedoids(
    x: Tensor, k: int, generator: torch.Generator, *, init: str = "heuristic", max_iter: int = 300,
    block_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """Alternating k-medoids (Park & Jun, 2009) on Euclidean distances, as scikit-learn-extra's KMedoids.

    ``init`` "heuristic" starts from the k points with the smallest summed distance to all points (KMedoids's
    default, which the BRB authors' code runs; it draws no random numbers), "kmeans++" from k-means++ seeds.
    Each step assigns points to the nearest medoid, then moves every medoid to the member with the
    smallest summed distance to its cluster. Pairwise distances are formed ``block_size`` rows at a time.
    Returns (medoids = rows of x (k, d), labels (n,) int64).
    """
    if init not in KMEDOIDS_INITS:
        raise ValueError(f"unknown k-medoids init {init!r}; valid: {', '.join(KMEDOIDS_INITS)}")
    x = _as_float(x)
    _check_k(x, k)
    n = x.shape[0]
    xc = x - x.mean(0)
    if init == "heuristic":
        everyone = torch.zeros(n, dtype=torch.long, device=x.device)  # one cluster: each point's summed distance
        medoids = _within_cluster_costs(xc, everyone, 1, block_size).topk(k, largest=False).indices
    else:
        medoids = _kmeans_plusplus_indices(xc, k, generator)
    positions = torch.arange(n, device=x.device)
    for _ in range(max_iter):
        labels = nearest(xc, xc[medoids])
        costs = _within_cluster_costs(xc, labels, k, block_size)
        best_cost = torch.full((k,), math.inf, dtype=costs.dtype, device=x.device)
        best_cost = best_cost.scatter_reduce(0, labels, costs, "amin")
        # Lowest index among the cost minimisers, so ties resolve deterministically.
        candidates = torch.where(costs == best_cost[labels], positions, n)
        new_medoids = torch.full_like(medoids, n).scatter_reduce(0, labels, candidates, "amin")
        new_medoids = torch.where(new_medoids == n, medoids, new_medoids)
        # An iteration costs O(n²) distance work, so one scalar synchronisation per step is negligible.
        if torch.equal(new_medoids, medoids):
            break
        medoids = new_medoids
    return x[medoids], nearest(xc, xc[medoids])


def _diag_gaussian_log_prob(x: Tensor, x_sq: Tensor, means: Tensor, variances: Tensor, log_weights: Tensor) -> Tensor:
    """(n, k) log w_j + log N(x | μ_j, diag σ²_j), the Mahalanobis term expanded into GEMMs."""
    precision = variances.reciprocal()
    mahalanobis = (x_sq @ precision.T - 2 * x @ (means * precision).T + (means.pow(2) * precision).sum(1)).clamp_min_(0)
    log_det = variances.log().sum(1)
    return log_weights - 0.5 * (x.shape[1] * math.log(2 * math.pi) + log_det + mahalanobis)


def _full_gaussian_log_prob(x: Tensor, means: Tensor, covariances: Tensor, log_weights: Tensor) -> Tensor:
    """(n, k) log w_j + log N(x | μ_j, Σ_j) through the Cholesky factors Σ_j = L_j L_jᵀ; holds (k, d, n)."""
    chol = torch.linalg.cholesky(covariances)
    white = torch.linalg.solve_triangular(chol, (x.unsqueeze(0) - means.unsqueeze(1)).transpose(1, 2), upper=False)
    log_det = 2 * chol.diagonal(dim1=1, dim2=2).log().sum(1)
    return log_weights - 0.5 * (x.shape[1] * math.log(2 * math.pi) + log_det + white.pow(2).sum(1).T)


# What each covariance form's EM regularises and stops at. full: the BRB authors' reclustering,
# scikit-learn's GaussianMixture(covariance_type="full", reg_covar=1e-5) at its default tol; diag: as raydc's EM ran
# before it had full covariances.
EM_SETTINGS = {"full": {"reg": 1e-5, "tol": 1e-3}, "diag": {"reg": 1e-6, "tol": 1e-4}}


def _em_log_prob(x: Tensor, x_sq: Tensor | None, resp: Tensor, covariance: str, reg: float) -> tuple[Tensor, Tensor]:
    """M step from the responsibilities, then the (n, k) joint log-densities under it; also returns the means."""
    # Guards empty components against 0/0, as scikit-learn does.
    mass = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
    means = (resp.T @ x) / mass.unsqueeze(1)
    log_weights = (mass / x.shape[0]).log()
    if covariance == "diag":
        variances = ((resp.T @ x_sq) / mass.unsqueeze(1) - means.pow(2)).clamp_min(0) + reg
        return _diag_gaussian_log_prob(x, x_sq, means, variances, log_weights), means
    diffs = x.unsqueeze(0) - means.unsqueeze(1)  # (k, n, d)
    covariances = (diffs * resp.T.unsqueeze(2)).transpose(1, 2) @ diffs / mass.view(-1, 1, 1)
    covariances = covariances + reg * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return _full_gaussian_log_prob(x, means, covariances, log_weights), means


def gmm_em(
    x: Tensor, k: int, generator: torch.Generator, *, n_init: int = 1, covariance: str = "full", max_iter: int = 100
) -> tuple[Tensor, Tensor]:
    """EM for a Gaussian mixture with full or diagonal covariances, each start from one k-means run; the best of
    ``n_init`` starts by mean log-likelihood is kept (scikit-learn's GaussianMixture with init_params="kmeans").

    Responsibilities are computed in log space; EM_SETTINGS[covariance] gives the regularisation added to every
    variance and the change of the mean log-likelihood under which EM stops.
    Returns (means (k, d), labels (n,) int64 = most responsible component).
    """
    if covariance not in EM_SETTINGS:
        raise ValueError(f"unknown covariance {covariance!r}; valid: {', '.join(EM_SETTINGS)}")
    reg, tol = EM_SETTINGS[covariance]["reg"], EM_SETTINGS[covariance]["tol"]
    x = _as_float(x)
    _check_k(x, k)
    offset = x.mean(0)
    xc = x - offset
    # A full covariance of a tight component is near-singular in float32 at an embedding's scale: factor in float64.
    work = xc.double() if covariance == "full" else xc
    x_sq = work.pow(2) if covariance == "diag" else None  # what the diagonal form's GEMMs read
    best_ll, best = -math.inf, None
    for _ in range(max(n_init, 1)):
        _, labels = kmeans(xc, k, generator)
        resp = F.one_hot(labels, k).to(work.dtype)
        previous_ll = torch.tensor(-math.inf, dtype=work.dtype, device=x.device)
        for it in range(1, max_iter + 1):
            log_prob, means = _em_log_prob(work, x_sq, resp, covariance, reg)
            log_norm = log_prob.logsumexp(1, keepdim=True)
            resp = (log_prob - log_norm).exp()
            ll = log_norm.mean()
            change = (ll - previous_ll).abs()
            previous_ll = ll
            if it % CHECK_EVERY == 0 and bool(change < tol):
                break
        if best is None or float(ll) > best_ll:  # one synchronisation per start
            best_ll, best = float(ll), (means, resp)
    means, resp = best
    return (means + offset).to(x.dtype), resp.argmax(1)


def random_centers(x: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """k distinct random rows of x as centres, points labelled by the nearest one."""
    x = _as_float(x)
    _check_k(x, k)
    picks = torch.randperm(x.shape[0], generator=generator, device=generator.device)[:k].to(x.device)
    centers = x[picks]
    return centers, nearest(x, centers)


def _kmeans_plusplus_only(x: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """k-means++ seeds used directly as centres (no Lloyd refinement)."""
    centers = kmeans_plusplus(x, k, generator)
    return centers, nearest(_as_float(x), centers)


RECLUSTER_METHODS: dict[str, Reclusterer] = {
    "kmeans": kmeans,
    "kmeans++": _kmeans_plusplus_only,
    "kmedoids": kmedoids,
    "em": gmm_em,
    "random": random_centers,
}


def recluster(x: Tensor, k: int, method: str, generator: torch.Generator, n_init: int = 1,
              em_covariance: str = "full", kmedoids_init: str = "heuristic") -> tuple[Tensor, Tensor]:
    """Cluster x into k groups with the named method; returns (centers (k, d), labels (n,) int64). k-means keeps
    the best of ``n_init`` seedings by inertia, EM the best of ``n_init`` starts by likelihood (with
    ``em_covariance`` covariances); k-medoids starts once from ``kmedoids_init``, the other methods once."""
    try:
        algorithm = RECLUSTER_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown recluster method {method!r}; valid methods: {', '.join(RECLUSTER_METHODS)}") from None
    if method == "kmeans":
        return kmeans(x, k, generator, n_init=n_init)
    if method == "em":
        return gmm_em(x, k, generator, n_init=n_init, covariance=em_covariance)
    if method == "kmedoids":
        return kmedoids(x, k, generator, init=kmedoids_init)
    return algorithm(x, k, generator)
