"""Golden-section search and EAA orchestration against their definitions, on synthetic scores."""
import dataclasses
import math

import pytest
import torch

from vmdiff_pack.vmdiff_ops import (PRESETS, SearchOptions, beta_grid, efficient_adaptive_adjustment,
                                    golden_section_maximize, golden_section_maximize_on_grid, round_seed, search_value,
                                    speculative_points, stronger_side)


class Counted:
    def __init__(self, f):
        self.f, self.xs = f, []

    def __call__(self, x):
        self.xs.append(x)
        return self.f(x)


@pytest.mark.parametrize("peak", [0.4123, 0.47, 0.5, 0.537, 0.5999])
def test_golden_section_finds_the_maximiser_to_tolerance_in_11_evaluations(peak):
    f = Counted(lambda x: -(x - peak) ** 2)
    best, value, evaluations = golden_section_maximize(f, 0.4, 0.6, tol=0.002, max_iter=15, digits=5)
    assert abs(best - peak) <= 0.002
    # 10 brackets (0.2·0.618^10 < 0.002): 2 points for the first, 1 new point each after (reference: 20)
    assert evaluations == 11 == len(f.xs) == len(set(f.xs))
    assert value == max(f.f(x) for x in f.xs)


def test_golden_section_on_an_asymmetric_unimodal_function():
    f = Counted(lambda x: -abs(x - 0.3) if x < 0.3 else -3 * (x - 0.3))
    best, _, evaluations = golden_section_maximize(f, 0.0, 1.0, tol=1e-4)
    assert abs(best - 0.3) < 1e-4
    assert evaluations == 1 + 20  # ceil(log(1e4)/log φ) = 20 brackets


def test_golden_section_first_points_match_the_reference():
    f = Counted(lambda x: 0.0)
    golden_section_maximize(f, 0.4, 0.6, tol=0.002, digits=5)
    assert f.xs[:2] == [0.47639, 0.52361]


def test_beta_grid_is_the_reference_grid():
    assert beta_grid(0.5, 3.5, 0.2) == [round(0.5 + 0.2 * k, 6) for k in range(15)]
    assert beta_grid(0.5, 3.5, 0.2)[-1] == 3.3


@pytest.mark.parametrize("peak", [0.5, 1.3, 2.1, 3.3])
def test_grid_search_finds_the_grid_maximiser_without_repeats(peak):
    f = Counted(lambda b: -(b - peak) ** 2)
    best, _, evaluations = golden_section_maximize_on_grid(f, beta_grid(0.5, 3.5, 0.2), 0.5, 3.5, tol=0.5)
    assert len(f.xs) == len(set(f.xs)) == evaluations
    assert evaluations <= 8
    assert abs(best - peak) <= 0.2 + 1e-9  # within one grid step of the peak


def test_stronger_side_uses_the_reference_weight():
    assert stronger_side({"D1": 0.6, "T1": 0.20, "D2": 0.5, "T2": 0.22}, 3.13) == 1  # 1.226 > 1.1886
    assert stronger_side({"D1": 0.5, "T1": 0.20, "D2": 0.5, "T2": 0.22}, 3.13) == 2


def scripted(score_fn):
    calls = []

    def evaluate(alpha, b1, b2, seed):
        calls.append((alpha, b1, b2, seed))
        s = score_fn(alpha, b1, b2, seed)
        return s, {"D1": 0.5, "T1": 0.3, "D2": 0.4, "T2": 0.3}, None
    return evaluate, calls


def test_eaa_stops_after_the_alpha_stage_when_the_score_clears_the_threshold():
    evaluate, calls = scripted(lambda a, b1, b2, s: 2.5 - (a - 0.55) ** 2)
    best, history = efficient_adaptive_adjustment(evaluate, 42, PRESETS["official"])
    assert len(calls) == 11 and all(c[1:] == (1.0, 1.0, 42) for c in calls)
    assert abs(best.alpha - 0.55) <= 0.002 and best.stage == "alpha"


def test_eaa_official_searches_the_weaker_side_beta_with_the_stronger_at_half():
    evaluate, calls = scripted(lambda a, b1, b2, s: 1.0 - (a - 0.5) ** 2 + (0.2 - 0.1 * (b2 - 2.0) ** 2) * (b1 == 0.5))
    best, history = efficient_adaptive_adjustment(evaluate, 42, PRESETS["official"])
    beta_calls = [c for c in calls if c[1:3] != (1.0, 1.0)]
    assert beta_calls and all(c[1] == 0.5 and c[0] == pytest.approx(best.alpha) for c in beta_calls)  # side 1 stronger
    assert len(beta_calls) == len(set(beta_calls))
    assert best.stage == "beta" and abs(best.beta_2 - 2.0) <= 0.2 + 1e-9
    assert {c[3] for c in calls} == {42}  # official: one ε, no resampling
    assert [e.record()["stage"] for e in history][:11] == ["alpha"] * 11


def test_eaa_paper_runs_three_rounds_with_resampled_noise_and_keeps_the_best():
    evaluate, calls = scripted(lambda a, b1, b2, s: 1.0 + 0.1 * (s == 43) - (a - 0.5) ** 2)
    best, history = efficient_adaptive_adjustment(evaluate, 42, PRESETS["paper"])
    assert [s for s in sorted({c[3] for c in calls})] == [42, 43, 44]
    assert {e.round for e in history} == {1, 2, 3}
    assert all(c[1] == 1.0 for c in calls if c[1:3] != (1.0, 1.0))  # paper: stronger side held at 1
    assert best.seed == 43


def test_options_are_explicit_dataclass_fields():
    assert PRESETS["official"] == SearchOptions()
    assert PRESETS["paper"].rounds == 3 and PRESETS["paper"].beta_stronger == 1.0


def test_a_tolerance_wider_than_the_range_still_evaluates_one_bracket():
    assert golden_section_maximize(lambda x: -x, 0.4, 0.6, tol=0.5)[2] == 2
    assert golden_section_maximize_on_grid(lambda b: -b, beta_grid(0.5, 3.5, 0.2), 0.5, 3.5, tol=5.0)[2] == 2


def test_speculative_points_of_golden_section_are_the_needed_point_then_both_successors():
    def search(f):
        return golden_section_maximize(f, 0.4, 0.6, tol=0.002, digits=5)

    # nothing measured: the first bracket's two points, then the point of each outcome of their comparison
    c, d, after_d_wins, after_c_wins = speculative_points(search, lambda x: None, 4)
    assert (c, d) == (0.47639, 0.52361)
    assert after_d_wins == round(0.47639 + 0.6180339887 * (0.6 - 0.47639), 5)  # bracket [c, 0.6]
    assert after_c_wins == round(0.52361 - 0.6180339887 * (0.52361 - 0.4), 5)  # bracket [0.4, d]
    # with c and d measured (d better), the search needs after_d_wins, then one of its two successors
    measured = {c: 0.0, d: 1.0}
    following = speculative_points(search, measured.get, 3)
    assert following[0] == after_d_wins and len(following) == 3 and not set(following) & set(measured)
    assert speculative_points(search, measured.get, 1) == [after_d_wins]


SCORES = {
    "typical": lambda a, b1, b2, s: 2.5 - (a - 0.55) ** 2,
    "beta stage": lambda a, b1, b2, s: 1.0 - (a - 0.5) ** 2 + (0.2 - 0.1 * (b2 - 2.0) ** 2) * (b1 == 0.5),
    "paper rounds": lambda a, b1, b2, s: 1.0 + 0.1 * (s == 43) - (a - 0.5) ** 2 + 0.01 * b2,
}


@pytest.mark.parametrize("case", SCORES)
@pytest.mark.parametrize("batch_size", [2, 3, 5])
def test_batched_candidates_leave_the_search_unchanged_in_fewer_rounds(case, batch_size):
    preset = PRESETS["paper" if case == "paper rounds" else "official"]
    evaluate, calls = scripted(SCORES[case])
    best, history = efficient_adaptive_adjustment(evaluate, 42, preset)
    batches = []

    def evaluate_batch(candidates):
        batches.append(list(candidates))
        return [evaluate(*c) for c in candidates]

    consumed = []
    best_b, history_b = efficient_adaptive_adjustment(evaluate, 42, preset, on_evaluation=consumed.append,
                                                      evaluate_batch=evaluate_batch, batch_size=batch_size)
    strip = lambda h: [e.record() for e in h]  # noqa: E731
    assert strip(history_b) == strip(history) == strip(consumed) and best_b.record() == best.record()
    rendered = [c for b in batches for c in b]
    assert all(1 <= len(b) <= batch_size for b in batches) and len(rendered) == len(set(rendered))
    assert len(batches) < len(history)  # fewer rendering rounds (sequential DiT passes) than candidates
    if batch_size >= 3:  # each round settles at least two golden-section steps
        assert len(batches) <= (len(history) + 1) // 2 + preset.rounds * 2


# --- non-finite scores: the worst possible, never the winner while a finite one exists ---------------------------
NON_FINITE = [math.nan, math.inf, -math.inf]


def spoiled(f, bad_calls, value):
    """f, but its evaluations number ``bad_calls`` (0-based) return ``value``."""
    calls = []

    def g(*args):
        calls.append(args)
        return value if len(calls) - 1 in bad_calls else f(*args)
    return g


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("bad_calls", [{0}, {1}, {4}, {0, 1}, {10}], ids=["first", "second", "middle", "both-first",
                                                                          "last"])
def test_golden_section_never_returns_a_non_finite_score(value, bad_calls):
    best, score, evaluations = golden_section_maximize(spoiled(lambda x: -(x - 0.5) ** 2, bad_calls, value),
                                                       0.4, 0.6, tol=0.002, digits=5)
    assert math.isfinite(score) and evaluations == 11
    if bad_calls != {0, 1}:  # the bad point lost its comparison; the search still ends next to the peak
        assert abs(best - 0.5) <= 0.03


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("bad_calls", [{0}, {2}, {0, 1}])
def test_grid_search_never_returns_a_non_finite_score(value, bad_calls):
    f = spoiled(lambda b: -(b - 2.1) ** 2, bad_calls, value)
    best, score, _ = golden_section_maximize_on_grid(f, beta_grid(0.5, 3.5, 0.2), 0.5, 3.5, tol=0.5)
    assert math.isfinite(score)


def test_search_value_orders_non_finite_below_every_finite_score():
    assert sorted([1.0, math.nan, -1e300, math.inf, -math.inf, 0.0], key=search_value)[-3:] == [-1e300, 0.0, 1.0]
    assert search_value(-1e308) > search_value(math.nan) == search_value(math.inf) == -math.inf


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("bad", ["first", "middle", "beta"])
def test_eaa_with_one_non_finite_candidate_returns_a_finite_best(value, bad):
    """The reported case: the first of 17 candidates scores NaN, the others finite → the best is finite. An +inf
    never clears the threshold either."""
    score = SCORES["beta stage"]
    evaluate, calls = scripted(score)
    _, clean = efficient_adaptive_adjustment(evaluate, 42, PRESETS["official"])
    bad_index = {"first": 0, "middle": 5, "beta": 12}[bad]
    assert len(clean) == 17 and clean[bad_index].stage == ("beta" if bad == "beta" else "alpha")
    evaluate, calls = scripted(spoiled(score, {bad_index}, value))
    best, history = efficient_adaptive_adjustment(evaluate, 42, PRESETS["official"])
    assert math.isfinite(best.score) and best.score == max(e.score for e in history if math.isfinite(e.score))
    assert not math.isfinite(history[bad_index].score)  # the record keeps what was measured
    assert len(history) >= 11 and best.stage == "beta"  # +inf did not stop the search at the threshold


@pytest.mark.parametrize("batch_size", [1, 3])
def test_eaa_refuses_a_round_whose_alpha_candidates_all_scored_non_finite(batch_size):
    """All NaN: no α to continue from and no candidate to return; stop after the α stage, naming S."""
    evaluate, calls = scripted(lambda a, b1, b2, s: math.nan)
    with pytest.raises(ValueError, match=r"S: all 11 α candidates of round 1 scored non-finite \(nan\).*weight_dtype"):
        efficient_adaptive_adjustment(evaluate, 42, PRESETS["paper"], batch_size=batch_size,
                                      evaluate_batch=lambda cs: [evaluate(*c) for c in cs])
    assert all(c[1:3] == (1.0, 1.0) for c in calls)  # no β candidate was rendered


def test_eaa_batched_search_with_non_finite_scores_matches_the_sequential_one():
    score = spoiled(SCORES["paper rounds"], {0, 3, 17}, math.nan)
    sequential, _ = scripted(score)
    best, history = efficient_adaptive_adjustment(sequential, 42, PRESETS["paper"])
    score = spoiled(SCORES["paper rounds"], {0, 3, 17}, math.nan)
    batched, _ = scripted(score)
    best_b, history_b = efficient_adaptive_adjustment(batched, 42, PRESETS["paper"], batch_size=3,
                                                      evaluate_batch=lambda cs: [batched(*c) for c in cs])
    assert math.isfinite(best.score) and best_b.alpha == best.alpha and best_b.seed == best.seed
    # the batch renders candidates in another order, so which ones got NaN differs; the search itself stays valid
    assert len({(e.alpha, e.beta_1, e.beta_2, e.seed) for e in history_b}) == len(history_b)


# --- arithmetic and grids at their edges ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 42, 2 ** 63, 2 ** 64 - 3, 2 ** 64 - 2, 2 ** 64 - 1])
def test_paper_rounds_derive_seeds_inside_torchs_range(seed):
    evaluate, calls = scripted(lambda a, b1, b2, s: 1.0 - (a - 0.5) ** 2)
    efficient_adaptive_adjustment(evaluate, seed, PRESETS["paper"])
    seeds = list(dict.fromkeys(c[3] for c in calls))
    assert seeds == [seed, round_seed(seed, 1), round_seed(seed, 2)] and len(set(seeds)) == 3
    for s in seeds:
        assert 0 <= s < 2 ** 64
        torch.Generator().manual_seed(s)  # "Overflow when unpacking long long" before the fix
    if seed < 2 ** 64 - 2:
        assert seeds == [seed, seed + 1, seed + 2]  # the reference's seed + r, unchanged inside the range


@pytest.mark.parametrize("step", [3.0, 5.0, 100.0])
def test_a_one_point_beta_grid_is_evaluated(step):
    assert beta_grid(0.5, 3.5, step) == [0.5]
    f = Counted(lambda b: -b)
    assert golden_section_maximize_on_grid(f, [0.5], 0.5, 3.5, tol=0.5) == (0.5, -0.5, 1) and f.xs == [0.5]
    options = dataclasses.replace(PRESETS["paper"], beta_step=step)
    evaluate, calls = scripted(SCORES["beta stage"])
    best, history = efficient_adaptive_adjustment(evaluate, 42, options)
    beta = [e for e in history if e.stage == "beta"]
    assert [(e.round, e.beta_1, e.beta_2) for e in beta] == [(r, 1.0, 0.5) for r in (1, 2, 3)]


def test_a_two_point_beta_grid_evaluates_both_points():
    best, _, evaluations = golden_section_maximize_on_grid(lambda b: -(b - 2.0) ** 2, beta_grid(0.5, 3.5, 2.0),
                                                           0.5, 3.5, tol=0.5)
    assert (best, evaluations) == (2.5, 2)


@pytest.mark.parametrize("grid, match", [((3.5, 0.5, 0.2), "below β_min"), ((0.5, 3.5, 0.0), "step > 0"),
                                         ((0.5, 3.5, -0.2), "step > 0"), ((0.5, math.nan, 0.2), "finite"),
                                         ((0.5, 3.5, math.inf), "finite")])
def test_an_empty_or_invalid_beta_grid_is_refused_before_any_evaluation(grid, match):
    options = dataclasses.replace(PRESETS["official"], beta_min=grid[0], beta_max=grid[1], beta_step=grid[2])
    evaluate, calls = scripted(SCORES["beta stage"])
    with pytest.raises(ValueError, match=match):
        efficient_adaptive_adjustment(evaluate, 42, options)
    assert calls == []
