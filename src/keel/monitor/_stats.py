"""Two-sample drift statistics on compact, vectorized summaries.

A numeric sample is kept as a :class:`Ecdf`: its distinct finite values, sorted, and the count
of values at or below each (the empirical CDF as steps). Every numeric statistic (KS,
Wasserstein-1, binned PSI / JS / chi-square) reads two of those, so a window is summarised
once (one sort, or one ``bincount`` for integers of a small range) and the reference once,
when it is built. A categorical sample is a vector of counts over shared categories.

Each statistic equals SciPy's on the same data (tests hold them to 1e-9):

* :func:`ks_2samp` — ``scipy.stats.ks_2samp(a, b)`` (two-sided, ``method='auto'``): the
  statistic is evaluated at every distinct value of either sample, which is the same set of
  ECDF differences SciPy takes over the concatenated data, ties included. The p-value is
  SciPy's exact distribution when both samples have at most 10,000 values (as ``'auto'``
  does; SciPy computes it, on the samples rebuilt from their ECDFs) and otherwise
  ``scipy.stats.kstwo.sf(D, round(n1 n2 / (n1 + n2)))``, Smirnov's asymptotic, as SciPy does.
* :func:`wasserstein` — ``scipy.stats.wasserstein_distance(a, b)``.
* :func:`chisquare` — Pearson's chi-square test of homogeneity of two samples' category
  counts, without Yates' correction: ``scipy.stats.chi2_contingency([ref, cur],
  correction=False)``, which is ``scipy.stats.chisquare`` on the 2 x k table with expected
  counts from the margins and ``k - 1`` degrees of freedom. Chosen over the goodness-of-fit
  form (current counts against reference shares) because the reference is a sample too, and
  a category the reference never saw would make the goodness-of-fit statistic infinite.
* :func:`jensenshannon` — ``scipy.spatial.distance.jensenshannon(p, q, base=2)``: base 2,
  so the distance lies in [0, 1].
* :func:`psi` — population stability index ``sum((c - r) * ln(c / r))`` over shares, an
  empty bin's share replaced by ``PSI_EPSILON`` (1e-4) so it stays finite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "EXACT_KS_MAX_N",
    "PSI_EPSILON",
    "Ecdf",
    "chisquare",
    "jensenshannon",
    "ks_2samp",
    "psi",
    "wasserstein",
]

EXACT_KS_MAX_N = 10_000  # scipy.stats.ks_2samp(method='auto') is exact up to this size
PSI_EPSILON = 1e-4
# integers spanning fewer values than this (and than 8x the sample size) are counted, not sorted
_BINCOUNT_SPAN = 1 << 22


@dataclass(frozen=True)
class Ecdf:
    """A sample's empirical CDF: ``values`` distinct and increasing (float64), ``cum[i]`` the
    count of sample values ``<= values[i]`` (int64, increasing, ``cum[-1] == n``)."""

    values: np.ndarray
    cum: np.ndarray

    @property
    def n(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    @classmethod
    def of(cls, x: np.ndarray, *, assume_sorted: bool = False) -> Ecdf:
        """From finite values (any order unless ``assume_sorted``)."""
        x = np.asarray(x)
        if len(x) == 0:
            return cls(np.empty(0), np.empty(0, np.int64))
        if x.dtype.kind in "iu" and not assume_sorted:
            lo, hi = int(x.min()), int(x.max())
            if hi - lo < min(_BINCOUNT_SPAN, max(8 * len(x), 1 << 16)):
                counts = np.bincount((x - lo).astype(np.intp, copy=False), minlength=hi - lo + 1)
                present = np.flatnonzero(counts)
                return cls((present + lo).astype(np.float64), np.cumsum(counts)[present])
        s = np.asarray(x, dtype=np.float64) if assume_sorted else np.sort(x.astype(np.float64))
        last = np.empty(len(s), dtype=bool)
        np.not_equal(s[1:], s[:-1], out=last[:-1])
        last[-1] = True
        ends = np.flatnonzero(last)
        return cls(s[ends], (ends + 1).astype(np.int64))

    def sample(self) -> np.ndarray:
        """The sorted sample back (each distinct value repeated by its count)."""
        return np.repeat(self.values, np.diff(np.concatenate(([0], self.cum))))

    def count_le(self, x: np.ndarray) -> np.ndarray:
        """How many sample values are ``<= x``, for each of ``x``."""
        idx = np.searchsorted(self.values, x, side="right")
        return np.concatenate(([0], self.cum))[idx]

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """Quantiles with linear interpolation between order statistics (NumPy's default)."""
        pos = (self.n - 1) * np.asarray(qs, dtype=np.float64)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, self.n - 1)
        x_lo = self.values[np.searchsorted(self.cum, lo, side="right")]
        x_hi = self.values[np.searchsorted(self.cum, hi, side="right")]
        return x_lo + (pos - lo) * (x_hi - x_lo)

    def bin_counts(self, edges: np.ndarray) -> np.ndarray:
        """Counts in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
        le = self.count_le(edges)
        return np.diff(np.concatenate(([0], le, [self.n])))


def _cross(a: Ecdf, b: Ecdf) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the distinct values of ``a`` then of ``b``: F_a and F_b there (as counts), plus the
    insertion points that merge the two value lists."""
    a_left = np.searchsorted(b.values, a.values, side="left")
    b_right = np.searchsorted(a.values, b.values, side="right")
    cum_b = np.concatenate(([0], b.cum))
    cum_a = np.concatenate(([0], a.cum))
    hit = a_left < len(b.values)
    hit[hit] = b.values[a_left[hit]] == a.values[hit]
    fb_at_a = cum_b[a_left + hit]  # F_b(a_i) counts: values of b <= a_i
    fa_at_b = cum_a[b_right]
    return fb_at_a, fa_at_b, a_left, b_right


def ks_and_wasserstein(a: Ecdf, b: Ecdf) -> tuple[float, float]:
    """The two-sample KS statistic and the Wasserstein-1 distance, from one merge."""
    if a.n == 0 or b.n == 0:
        raise ValueError("both samples need at least one value")
    fb_at_a, fa_at_b, a_left, b_right = _cross(a, b)
    # ECDF differences at every distinct value of either sample (SciPy's set of points)
    d_at_a = a.cum / a.n - fb_at_a / b.n
    d_at_b = fa_at_b / a.n - b.cum / b.n
    max_s = max(float(d_at_a.max()), float(d_at_b.max()))
    min_s = min(max(-float(d_at_a.min()), -float(d_at_b.min()), 0.0), 1.0)
    ks = min_s if min_s > max_s else max_s
    # Wasserstein-1: integral of |F_a - F_b| over the merged distinct values
    k = len(a.values) + len(b.values)
    merged = np.empty(k)
    diff = np.empty(k)
    pos_a = np.arange(len(a.values)) + a_left
    pos_b = np.arange(len(b.values)) + b_right
    merged[pos_a], merged[pos_b] = a.values, b.values
    diff[pos_a], diff[pos_b] = d_at_a, d_at_b
    w = float(np.dot(np.abs(diff[:-1]), np.diff(merged)))
    return float(ks), w


def _ks_pvalue(d: float, a: Ecdf, b: Ecdf) -> float:
    if max(a.n, b.n) <= EXACT_KS_MAX_N:
        # SciPy's exact distribution, as method='auto' picks it: asked of SciPy on the same
        # (small) samples, rebuilt from the ECDFs; its fallback warning is SciPy's business
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ks_2samp(a.sample(), b.sample()).pvalue)
    m, n = sorted([float(a.n), float(b.n)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_2samp(a: np.ndarray | Ecdf, b: np.ndarray | Ecdf) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov–Smirnov test: ``(statistic, p_value)``, equal to
    ``scipy.stats.ks_2samp(a, b)`` (``method='auto'``)."""
    ea, eb = _ecdf(a), _ecdf(b)
    d, _ = ks_and_wasserstein(ea, eb)
    return d, _ks_pvalue(d, ea, eb)


def wasserstein(a: np.ndarray | Ecdf, b: np.ndarray | Ecdf) -> float:
    """Wasserstein-1 distance between two samples: ``scipy.stats.wasserstein_distance``."""
    return ks_and_wasserstein(_ecdf(a), _ecdf(b))[1]


def chisquare(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-square test of homogeneity on two count vectors over the same categories
    (categories empty in both are dropped): ``(statistic, p_value, dof)``, equal to
    ``scipy.stats.chi2_contingency([ref_counts, cur_counts], correction=False)``."""
    table = np.vstack([ref_counts, cur_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows == 0):
        return 0.0, 1.0, max(table.shape[1] - 1, 0)
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return stat, float(special.chdtrc(dof, stat)), dof


def jensenshannon(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen–Shannon distance of two count (or share) vectors, base 2 (in [0, 1]):
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    js = float(np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m)))
    js /= np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index over shares of the same bins or categories; a share of 0 is
    replaced by ``epsilon``."""
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    r = np.maximum(r / r.sum(), epsilon)
    c = np.maximum(c / c.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _ecdf(x: np.ndarray | Ecdf) -> Ecdf:
    if isinstance(x, Ecdf):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        arr = arr[np.isfinite(arr)]
    return Ecdf.of(arr)
