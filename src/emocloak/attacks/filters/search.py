"""NSGA-II over filter chains (Baia et al. 2022), kept pymoo-style: problem, operators, termination apart.

An individual is a chain of `n_genes` genes (filter id, strength s, intensity a),
encoded as a flat float vector [f0, s0, a0, f1, s1, a1, ...] (local genes add their
spot: [f, s, a, cx, cy, r] each); the filter id is the floor of its float.
Both objectives are minimised:

* f1: graded "not yet fooled" score from the fitness function (negative = success);
* f2: 1 - SSIM to the original.

Operators follow the paper: one-point crossover at gene boundaries, mutation that
replaces whole genes, plus a small Gaussian (evolution-strategy) step on the
continuous parameters of the genes it keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling

# fitness(X) -> (f1, f2) for a population X of encoded chains
Fitness = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ChainSpace:
    """Where chains live: gene count, filter count and the ranges of each gene's real parameters.

    A gene is [filter id, s, a] and, with `local` ranges, also [cx, cy, r]: where on the face
    box the gene applies (centre as fractions of the box, radius as a fraction of its side).
    """

    n_genes: int
    n_filters: int = 26
    s_range: tuple[float, float] = (0.7, 1.0)
    a_range: tuple[float, float] = (0.9, 1.1)
    local: tuple[tuple[float, float], ...] = ()

    @property
    def width(self) -> int:
        return 3 + len(self.local)

    @property
    def gene_lower(self) -> np.ndarray:
        return np.array([0.0, self.s_range[0], self.a_range[0], *(lo for lo, _ in self.local)])

    @property
    def gene_upper(self) -> np.ndarray:
        return np.array([self.n_filters - 1e-6, self.s_range[1], self.a_range[1], *(hi for _, hi in self.local)])

    @property
    def lower(self) -> np.ndarray:
        return np.tile(self.gene_lower, self.n_genes)

    @property
    def upper(self) -> np.ndarray:
        return np.tile(self.gene_upper, self.n_genes)

    def random_genes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, width) random genes."""
        lo, hi = self.gene_lower, self.gene_upper
        return lo + rng.random((n, self.width)) * (hi - lo)

    def decode(self, X: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """Per chain position: (filter ids, s, a[, cx, cy, r]), each of shape (len(X),)."""
        G = np.asarray(X, dtype=np.float64).reshape(len(X), self.n_genes, self.width)
        ids = np.clip(np.floor(G[..., 0]).astype(np.int64), 0, self.n_filters - 1)
        return [(ids[:, g], *(G[:, g, k] for k in range(1, self.width))) for g in range(self.n_genes)]


class ChainProblem(Problem):
    def __init__(self, space: ChainSpace, fitness: Fitness) -> None:
        super().__init__(n_var=space.width * space.n_genes, n_obj=2, xl=space.lower, xu=space.upper)
        self.space, self.fitness = space, fitness

    def _evaluate(self, X, out, *args, **kwargs):
        f1, f2 = self.fitness(X)
        out["F"] = np.column_stack([f1, f2])


class ChainSampling(Sampling):
    def _do(self, problem, n_samples, random_state=None, **kwargs):
        space: ChainSpace = problem.space
        return space.random_genes(n_samples * space.n_genes, random_state).reshape(n_samples, -1)


class GeneCrossover(Crossover):
    """One-point crossover whose cut falls between genes, never inside one."""

    def __init__(self, prob: float = 0.9) -> None:
        super().__init__(2, 2, prob=prob)

    def _do(self, problem, X, random_state=None, **kwargs):
        space: ChainSpace = problem.space
        _, n_matings, n_var = X.shape
        Y = X.copy()
        for k in range(n_matings):
            cut = space.width * int(random_state.integers(1, space.n_genes))
            Y[0, k, cut:], Y[1, k, cut:] = X[1, k, cut:], X[0, k, cut:]
        return Y


class GeneMutation(Mutation):
    """Replace each gene with probability `p_gene`; nudge the kept genes' real parameters by a Gaussian step."""

    def __init__(self, p_gene: float | None = None, sigma: float = 0.15) -> None:
        super().__init__()
        self.p_gene, self.sigma = p_gene, sigma

    def _do(self, problem, X, random_state=None, **kwargs):
        space: ChainSpace = problem.space
        rng = random_state
        p = self.p_gene if self.p_gene is not None else 1.0 / space.n_genes
        G = X.reshape(len(X), space.n_genes, space.width).copy()
        replace = rng.random(G.shape[:2]) < p
        G[replace] = space.random_genes(int(replace.sum()), rng)
        lo, hi = space.gene_lower, space.gene_upper
        step = rng.normal(0, self.sigma, G[..., 1:].shape) * (hi[1:] - lo[1:])
        G[..., 1:] = np.where(replace[..., None], G[..., 1:], np.clip(G[..., 1:] + step, lo[1:], hi[1:]))
        return G.reshape(len(X), -1)


@dataclass
class SearchResult:
    X: np.ndarray  # every chain evaluated, encoded
    F: np.ndarray  # their objectives (f1, f2)
    front: np.ndarray  # indices into X of the final non-dominated set
    generations: int

    @property
    def evaluations(self) -> int:
        return len(self.X)

    def best(self, min_ssim: float = 0.0) -> int:
        """The most natural successful chain with SSIM >= min_ssim, else the closest to success among those.

        The floor keeps a failed search from handing back its most drastic edit: a user would rather
        keep a natural photo than get a ruined one that still reads the same. Where no chain clears
        the floor, the most natural chain of all.
        """
        natural = np.flatnonzero(1 - self.F[:, 1] >= min_ssim)
        if not len(natural):
            return int(np.argmin(self.F[:, 1]))
        ok = natural[self.F[natural, 0] < 0]
        if len(ok):
            return int(ok[np.argmin(self.F[ok, 1])])
        return int(natural[np.argmin(self.F[natural, 0])])


def search(
    space: ChainSpace,
    fitness: Fitness,
    pop_size: int = 10,
    n_gen: int = 10,
    seed: int = 0,
    good_ssim: float | None = None,
) -> SearchResult:
    """Run NSGA-II (ask and tell); stop early once a successful chain has SSIM >= good_ssim."""
    problem = ChainProblem(space, fitness)
    algo = NSGA2(
        pop_size=pop_size,
        sampling=ChainSampling(),
        crossover=GeneCrossover(),
        mutation=GeneMutation(),
        eliminate_duplicates=True,
    )
    algo.setup(problem, termination=("n_gen", n_gen), seed=seed, verbose=False)
    Xs, Fs, gen = [], [], 0
    while algo.has_next():
        pop = algo.ask()
        algo.evaluator.eval(problem, pop)
        algo.tell(infills=pop)
        Xs.append(pop.get("X"))
        Fs.append(pop.get("F"))
        gen += 1
        F = Fs[-1]
        if good_ssim is not None and ((F[:, 0] < 0) & (F[:, 1] <= 1 - good_ssim)).any():
            break
    chains, scores = np.vstack(Xs), np.vstack(Fs)
    front = [int(np.flatnonzero((chains == x).all(1))[0]) for x in algo.opt.get("X")]
    return SearchResult(chains, scores, np.array(front, dtype=np.int64), gen)
