"""Efficient Adaptive Adjustment (EAA, the paper's Auto-Tune): golden-section search on α, then on the weaker
side's β, in rounds with ε resampled (docs/method.md, "Efficient Adaptive Adjustment"). Pure orchestration over an
``evaluate`` callable."""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # 1/φ ≈ 0.618
SEED_RANGE = 2 ** 64  # torch.manual_seed and the nodes' seed widgets take [0, 2^64)


def search_value(score: float) -> float:
    """The order of the score S in every search: a non-finite S (NaN or ±inf, e.g. an fp8/fp16 model that overflowed)
    is the worst possible, below every finite S, so it never wins while a finite one exists. Among only non-finite
    scores the first evaluated is kept; ``efficient_adaptive_adjustment`` refuses to go on from such a stage."""
    return score if math.isfinite(score) else -math.inf


def round_seed(seed: int, r: int) -> int:
    """seed_r, the seed of round r's resampled ε (the paper: seed + r), wrapped into [0, 2^64) so a seed near the top
    of the range (2^64 − 1) still gives valid, distinct seeds for every round."""
    return (seed + r) % SEED_RANGE


def golden_section_maximize(f: Callable[[float], float], lo: float, hi: float, tol: float, max_iter: int = 50,
                            digits: Optional[int] = None) -> tuple[float, float, int]:
    """Golden-section maximisation of a unimodal f on [lo, hi] until the bracket is ≤ tol (or max_iter brackets).

    The interior point kept by each shrink is reused, so every iteration after the first costs one evaluation of f
    (the reference evaluates both points anew: 20 evaluations for the defaults [0.4, 0.6], tol 0.002, vs 11 here).
    Ties keep the upper point, as the reference does. ``digits`` rounds the evaluated x (reference: 5).
    Returns (best x, f(best x), evaluations).
    """
    evaluated: list[tuple[float, float]] = []

    def point(x: float) -> tuple[float, float]:
        x = round(x, digits) if digits is not None else x
        value = f(x)
        evaluated.append((x, value))
        return x, value

    a, b = lo, hi
    c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
    fc = fd = None
    iteration = 0
    while iteration == 0 or (b - a > tol and iteration < max_iter):  # at least one bracket is evaluated
        if fc is None:
            c, fc = point(c)
        if fd is None:
            d, fd = point(d)
        if search_value(fd) >= search_value(fc):  # the maximum lies in [c, b]; d becomes the new lower point
            a, c, fc = c, d, fd
            d, fd = a + INV_PHI * (b - a), None
        else:  # the maximum lies in [a, d]; c becomes the new upper point
            b, d, fd = d, c, fc
            c, fc = b - INV_PHI * (b - a), None
        iteration += 1
    best_x, best_value = max(evaluated, key=lambda xv: search_value(xv[1]))
    return best_x, best_value, len(evaluated)


def beta_grid(beta_min: float, beta_max: float, step: float) -> list[float]:
    """The candidate β values β_min, β_min + step, … below β_max (reference: 0.5, 0.7, …, 3.3). A step wider than
    the range leaves the single value β_min, which the grid search evaluates; an empty grid is refused."""
    if not (math.isfinite(beta_min) and math.isfinite(beta_max) and math.isfinite(step)) or step <= 0:
        raise ValueError(f"β grid: β_min {beta_min}, β_max {beta_max} and the step {step} must be finite, step > 0")
    if beta_max < beta_min:
        raise ValueError(f"β grid: β_max {beta_max} is below β_min {beta_min}; no β candidate to search")
    count = int(math.floor((beta_max - beta_min) / step - 1e-9)) + 1
    return [round(beta_min + k * step, 6) for k in range(count)]


def golden_section_maximize_on_grid(f: Callable[[float], float], grid: list[float], lo: float, hi: float,
                                    tol: float, max_iter: int = 15) -> tuple[float, float, int]:
    """Golden-section maximisation over the discrete ``grid`` inside [lo, hi]: each golden point snaps to the nearest
    grid value not yet evaluated; no value is ever evaluated twice (the reference re-runs some, run_single.py:636-639).
    Stops when hi − lo ≤ tol, after max_iter brackets, or when no grid value is left to try. Returns (best value of the
    grid, f there, evaluations)."""
    cache: dict[float, float] = {}

    def nearest_new(target: float, low: float, high: float, exclude: set) -> Optional[float]:
        inside = [g for g in grid if low - 1e-9 <= g <= high + 1e-9 and g not in exclude]
        return min(inside, key=lambda g: (abs(g - target), g)) if inside else None

    iteration = 0
    while iteration == 0 or (hi - lo > tol and iteration < max_iter):  # at least one bracket is evaluated
        upper_target, lower_target = lo + INV_PHI * (hi - lo), hi - INV_PHI * (hi - lo)
        upper = nearest_new(upper_target, lo, hi, set())
        lower = nearest_new(lower_target, lo, hi, {upper})
        if upper is None:
            break
        if lower is None:  # a one-point grid (or bracket): that point is the answer
            if upper not in cache:
                cache[upper] = f(upper)
            break
        if lower > upper:
            lower, upper = upper, lower
        fresh = [g for g in (lower, upper) if g not in cache]
        if not fresh and iteration > 0:
            break
        for g in fresh:
            cache[g] = f(g)
        if search_value(cache[upper]) >= search_value(cache[lower]):
            lo = lower
        else:
            hi = upper
        iteration += 1
    if not cache:
        raise ValueError(f"no β candidate on the grid inside [{lo}, {hi}]")
    best = max(cache, key=lambda g: search_value(cache[g]))
    return best, cache[best], len(cache)


@dataclass
class SearchOptions:
    """Every knob of EAA; the presets only fill these defaults (docs/method.md)."""

    alpha_min: float = 0.4
    alpha_max: float = 0.6
    alpha_tol: float = 0.002
    alpha_max_iter: int = 15
    alpha_digits: int = 5
    beta_min: float = 0.5
    beta_max: float = 3.5
    beta_step: float = 0.2
    beta_tol: float = 0.5
    beta_max_iter: int = 15
    beta_stronger: float = 0.5  # β of the stronger side during the β stage: 0.5 official, 1.0 paper
    threshold: float = 2.4
    rounds: int = 1  # K: 1 official (no ε resampling), 3 paper
    text_weight: float = 3.13  # weaker-side rule D + w·T on the raw CLIP similarity (reference)


PRESETS = {
    "official": SearchOptions(),
    "paper": SearchOptions(beta_stronger=1.0, rounds=3),
}


@dataclass
class Evaluation:
    """One candidate: its parameters, score S and the score's terms; ``payload`` is whatever the caller keeps."""

    alpha: float
    beta_1: float
    beta_2: float
    seed: int
    score: float
    terms: dict = field(default_factory=dict)
    round: int = 1
    stage: str = "alpha"
    payload: Any = field(default=None, repr=False)

    def record(self) -> dict:
        out = asdict(self)
        out.pop("payload")
        return out


def stronger_side(terms: dict, text_weight: float) -> int:
    """1 if image 1 dominates the fusion (D1 + w·T1 > D2 + w·T2, reference rule), else 2."""
    return 1 if terms["D1"] + text_weight * terms["T1"] > terms["D2"] + text_weight * terms["T2"] else 2


class _UnknownPoint(Exception):
    def __init__(self, x: float):
        super().__init__(x)
        self.x = x


def speculative_points(search: Callable[[Callable[[float], float]], Any], known: Callable[[float], Optional[float]],
                       limit: int) -> list[float]:
    """The points a deterministic search will ask for next, then those it may ask for after them, breadth-first,
    at most ``limit`` (a batch of candidates to render together; no paper symbol, an execution plan).

    ``search(f)`` is replayed without evaluating anything: ``known(x)`` gives the values already measured; the first
    unmeasured point is the one needed now, and each hypothetical outcome for it (it beats every other point: the
    largest float; it loses: −∞, as low as a non-finite score, see ``search_value``) is replayed to find the point
    needed after it. Golden-section search only compares values, so these two outcomes cover every
    branch; a point that turns out unused is simply never consumed by the search.
    """
    planned: list[float] = []
    frontier: list[dict] = [{}]
    while frontier and len(planned) < limit:
        assumed = frontier.pop(0)

        def f(x: float) -> float:
            value = known(x)
            if value is not None:
                return value
            if x in assumed:
                return assumed[x]
            raise _UnknownPoint(x)

        try:
            search(f)
        except _UnknownPoint as unknown:
            if unknown.x not in planned:
                planned.append(unknown.x)
            frontier += [{**assumed, unknown.x: sys.float_info.max}, {**assumed, unknown.x: -math.inf}]
    return planned


Evaluate = Callable[[float, float, float, int], tuple[float, dict, Any]]
EvaluateBatch = Callable[[list[tuple[float, float, float, int]]], list[tuple[float, dict, Any]]]


class _Candidates:
    """The candidates of one EAA run: each (α, β1, β2, seed) rendered once (``rendered``, possibly ahead of the
    search in a batch) and consumed in the order the search asks for it (``history``, one Evaluation each)."""

    def __init__(self, evaluate: Evaluate, on_evaluation: Optional[Callable[[Evaluation], None]],
                 evaluate_batch: Optional[EvaluateBatch], batch_size: int):
        self.evaluate, self.on_evaluation = evaluate, on_evaluation
        self.evaluate_batch, self.batch_size = evaluate_batch, batch_size
        self.history: list[Evaluation] = []
        self.cache: dict[tuple, Evaluation] = {}
        self.rendered: dict[tuple, tuple[float, dict, Any]] = {}  # evaluated, not necessarily consumed yet
        self.round, self.stage = 1, "alpha"

    @staticmethod
    def key(alpha: float, beta_1: float, beta_2: float, seed_r: int) -> tuple:
        return round(alpha, 6), round(beta_1, 4), round(beta_2, 4), seed_r

    def score(self, alpha: float, beta_1: float, beta_2: float, seed_r: int) -> float:
        """S of one candidate, rendered if not yet, recorded in the history the first time the search asks."""
        key = self.key(alpha, beta_1, beta_2, seed_r)
        if key not in self.cache:
            if key not in self.rendered:
                self.rendered[key] = self.evaluate(alpha, beta_1, beta_2, seed_r)
            score, terms, payload = self.rendered[key]
            self.cache[key] = Evaluation(alpha, beta_1, beta_2, seed_r, float(score), dict(terms), self.round,
                                         self.stage, payload)
            self.history.append(self.cache[key])
            if self.on_evaluation is not None:
                self.on_evaluation(self.cache[key])
        return self.cache[key].score

    def search_1d(self, search: Callable[[Callable[[float], float]], Any], args_of: Callable[[float], tuple]) -> None:
        """Run a 1-D search over candidates args_of(x), prefetching batches of what it may need next."""
        def known(x: float) -> Optional[float]:
            hit = self.rendered.get(self.key(*args_of(x)))
            return None if hit is None else float(hit[0])

        def f(x: float) -> float:
            if self.evaluate_batch is not None and self.batch_size > 1 and known(x) is None:
                batch = [args_of(p) for p in speculative_points(search, known, self.batch_size)]
                for args, result in zip(batch, self.evaluate_batch(batch)):
                    self.rendered[self.key(*args)] = result
            return self.score(*args_of(x))

        search(f)

    def best(self) -> Evaluation:
        return max(self.history, key=lambda e: search_value(e.score))


def _alpha_stage(candidates: _Candidates, options: SearchOptions, seed_r: int) -> None:
    """The α stage of a round: golden-section search of α ∈ [α_min, α_max] with β1 = β2 = 1 on ε of seed_r."""
    candidates.stage = "alpha"
    candidates.search_1d(lambda f: golden_section_maximize(f, options.alpha_min, options.alpha_max, options.alpha_tol,
                                                           options.alpha_max_iter, options.alpha_digits),
                         lambda a: (a, 1.0, 1.0, seed_r))


def _beta_stage(candidates: _Candidates, options: SearchOptions, grid: list[float], round_: int, seed_r: int) -> None:
    """The β stage of a round: α fixed at the round's best, the stronger side's β held at β_stronger, the weaker
    side's β golden-searched on its grid. ValueError naming S if no α candidate of the round scored finite."""
    candidates.stage = "beta"
    best_alpha = best_alpha_stage(candidates.history, round_)
    if not math.isfinite(best_alpha.score):
        scored = [e for e in candidates.history if e.round == round_ and e.stage == "alpha"]
        raise ValueError(f"S: all {len(scored)} α candidates of round {round_} scored non-finite "
                         f"({', '.join(sorted({str(e.score) for e in scored}))}); the images or the scorer "
                         f"overflowed (an fp8/fp16 model: load it with a wider weight_dtype)")
    side = stronger_side(best_alpha.terms, options.text_weight)
    fixed, alpha = options.beta_stronger, best_alpha.alpha
    candidates.search_1d(lambda f: golden_section_maximize_on_grid(f, grid, options.beta_min, options.beta_max,
                                                                   options.beta_tol, options.beta_max_iter),
                         lambda b: (alpha, fixed, b, seed_r) if side == 1 else (alpha, b, fixed, seed_r))


def efficient_adaptive_adjustment(evaluate: Evaluate, seed: int, options: SearchOptions,
                                  next_seed: Callable[[int, int], int] = round_seed,
                                  on_evaluation: Optional[Callable[[Evaluation], None]] = None,
                                  evaluate_batch: Optional[EvaluateBatch] = None, batch_size: int = 1
                                  ) -> tuple[Evaluation, list[Evaluation]]:
    """EAA: for round r = 1…K (ε from seed_r): golden-section search on α ∈ [α_min, α_max] with β1 = β2 = 1; stop
    if S > threshold; else fix α, hold the stronger side's β at β_stronger and golden-search the weaker side's β on
    its grid; stop if S > threshold; else resample ε (next round). Returns the best evaluation and all of them.

    ``evaluate(α, β1, β2, seed) -> (S, terms, payload)``; repeated arguments are served from a cache, so no
    candidate is generated twice. With ``evaluate_batch`` and ``batch_size`` > 1, a missing candidate is rendered
    together with the ones the search may need after it (``speculative_points``); the search consumes exactly the
    candidates it would consume one at a time, so the result and the history do not change.

    A non-finite S ranks below every finite one (``search_value``): it never wins, never stops the search at the
    threshold. If every α candidate of a round scores non-finite there is no α to continue from: ValueError naming S.
    The β grid is checked before any candidate is evaluated (``beta_grid``).
    """
    candidates = _Candidates(evaluate, on_evaluation, evaluate_batch, batch_size)
    grid = beta_grid(options.beta_min, options.beta_max, options.beta_step)  # refused before any evaluation
    seed_r = seed
    for r in range(1, options.rounds + 1):
        candidates.round = r
        if r > 1:
            seed_r = next_seed(seed, r - 1)
        _alpha_stage(candidates, options, seed_r)
        if search_value(candidates.best().score) > options.threshold:
            break
        _beta_stage(candidates, options, grid, r, seed_r)
        if search_value(candidates.best().score) > options.threshold:
            break
    return candidates.best(), candidates.history


def best_alpha_stage(history: list[Evaluation], round_: int) -> Evaluation:
    """The best α-stage evaluation of a round (the β stage starts from its α and its terms)."""
    return max((e for e in history if e.round == round_ and e.stage == "alpha"), key=lambda e: search_value(e.score))
