"""Which node is which label, with claims that can be defended. All information in nats.

For every label L and the live nodes S (method.md 5d; issue 11, item 2):

* ``mi``: I(z_j; L) for each live node (given the nuisance labels, when there are any);
* ``joint``: I(L; z_R), how much of L the latent space holds, with R the live nodes
  significantly related to L (all live nodes when none is), at most ``max_condition`` + 1
  of them, those with the largest MI;
* ``cmi``: I(z_j; L | z_{R \\ j}), what node j knows about L that the other related nodes
  (at most ``max_condition``, the strongest) do not, with a conditional permutation test
  and a half-sample interval. Each row records the nodes it conditioned on.

Why condition on the related nodes only: a node unrelated to L cannot take L's information
away from node j except through synergy, which a beta-VAE's factorised prior discourages;
and every extra dimension costs a k-NN estimator dearly (measured: with 3 unrelated noise
nodes in Z, n = 400, FP gives 0.77 nat for a true 1.2). This is the conditioning-set
selection of PC-style algorithms. The marginal test runs first; its significant nodes
form R. A model that has not disentangled (every node weakly related to every label) would
make R the whole latent space: the cap keeps the estimates in a few dimensions, where
they are trustworthy, and conditions on the nodes most able to hold L's information.

For every live node, the label that explains it best (largest marginal MI among the
labels significantly related to it), the fraction explained, ``1 - exp(-2 I)`` (the
squared correlation of a Gaussian pair with that MI, Linfoot's informational
coefficient), and for each rival label R the unique information I(z_j; R | best). A node
is ``exclusive`` when no rival keeps significant information (at least ``floor``) given
the best label, ``mixed`` when one does, ``unexplained`` when no label is related to it.

``label_nodes`` names node j for label L only when (1) I(z_j; L) and I(z_j; L | the other
related nodes) are both significant after the correction (of the nodes that pass, the one
with the largest conditional MI is the candidate), (2) the lower end of its interval is at least
``floor`` (0.1 nat by default), (3) the node's marginal MI is at least ``share`` (0.5) of
the joint I(L; z_S), and (4) the node is exclusive to L. Otherwise the label's
``verdict`` says why: ``mixed`` (the node also carries another label),
``explained_by`` (the node is another label's, and L adds nothing given it: a correlated
label such as mass riding on Teff), ``distributed`` (named nodes share the information)
or ``none``.

Tests. Under H0: X independent of Y given Z, shuffling Y among samples with similar Z keeps
the dependence of Y on Z and destroys only the part through X: the local permutation of
Runge (AISTATS 2018) shuffles Y within the ``k_perm`` nearest neighbours in Z (within the
strata of discrete conditioning variables; a plain shuffle when Z is empty). p-values are
sequential (Besag & Clifford 1991): a test stops at its ``stop_after``-th exceedance,
after l permutations, with p = stop_after / l (a clearly null test costs tens of
permutations), else ``(1 + #{null >= observed}) / (1 + B)`` with B chosen to resolve the
corrected threshold (:func:`specray.analysis.significance.choose_permutations`), corrected
over the family (marginal, conditional and rival tests are three families). Intervals:
half-samples without replacement, re-centred on the full estimate
(:func:`specray.analysis.significance.recentred_interval`).

Calibration (measured with ``benchmarks/cmi_calibration.py``): under H0 with a label that
depends strongly on the conditioning variable (mass = f(Teff) + noise, node = g(Teff) +
noise, n = 250, B = 99, 30 replicates), the local permutation rejected 2/30 at 0.05 and
5/30 at 0.1: about nominal, perhaps slightly liberal (the shuffled null sits ~0.003 nat
below the observed H0 estimates). That is why ``mixed`` also needs the unique information
to reach ``floor``, not significance alone.

Randomness depends only on ``seed`` and the test's name (not on workers or chunking), so
the Ray fan-out and the serial path give identical numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from specray.analysis.cmi import (
    LabelKindError,
    detect_kind,
    prepare_label,
    resolve_kind,
    stratified_cmi,
)
from specray.analysis.mi import normal_scores
from specray.analysis.significance import (
    adjust_pvalues,
    choose_permutations,
    min_resolvable_permutations,
    permutation_generator,
    pvalue_from_exceedances,
    recentred_interval,
)
from specray.analysis.tasks import chunks, remote, wait_all
from specray.config import AnalysisConfig

_PERM_STREAM = 2
_HALF_STREAM = 3
ESTIMATOR = "Frenzel-Pompe / Ross k-NN on normal scores"


@dataclass(frozen=True)
class AttributionSettings:
    """How attribution estimates, tests and decides."""

    k: int = 5
    """Neighbours of the k-NN estimators."""
    k_perm: int = 5
    """Neighbours in Z among which the label is shuffled (local permutation test)."""
    floor: float = 0.1
    """Nats the lower end of a node's conditional-MI interval must clear to be named."""
    share: float = 0.5
    """Fraction of the joint information a named node's own MI must reach."""
    permutations: int | None = None
    """Per test at most; None = twice the fewest that resolve the corrected threshold (at
    least 199), so that a test with one exceedance in its null can still pass."""
    stop_after: int = 10
    """Sequential test (Besag & Clifford 1991): a test stops once this many permuted
    estimates reach the observed one, with p = stop_after / permutations drawn; 0 = never
    stop early. A clearly null test then costs tens of permutations, not thousands."""
    max_condition: int = 4
    """At most this many related nodes, those with the largest MI with the label, form the
    conditioning set of a node's unique information (and, with the node, the joint)."""
    ci_resamples: int = 50
    ci_level: float = 0.95
    alpha: float = 0.05
    fdr: str = "bh"
    seed: int = 0
    chunk_size: int = 64


@dataclass(frozen=True)
class Problem:
    """One estimate I(x; y | z, strata) on prepared arrays, and how to permute y under H0."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    y_discrete: bool
    z: NDArray[np.float64]
    strata: NDArray[np.int64] | None
    k: int

    def estimate(self, y: NDArray[np.float64] | None = None) -> float:
        y = self.y if y is None else y
        return stratified_cmi(self.x, y, self.y_discrete, self.z, self.strata, self.k)

    def rows(self, rows: NDArray[np.int64]) -> Problem:
        """The same problem on a subset of the samples."""
        strata = None if self.strata is None else self.strata[rows]
        return replace(self, x=self.x[rows], y=self.y[rows], z=self.z[rows], strata=strata)


# ------------------------------------------------------------------ the tests


def _neighbour_table(problem: Problem, k_perm: int) -> list[tuple[NDArray, NDArray | None]]:
    """Per stratum: its rows and, when Z is not empty, each row's k_perm nearest rows in Z."""
    strata = np.zeros(problem.y.size, np.int64) if problem.strata is None else problem.strata
    table = []
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        if problem.z.shape[1] == 0 or rows.size < 2:
            table.append((rows, None))
            continue
        kk = min(k_perm, rows.size)
        _, idx = cKDTree(problem.z[rows]).query(problem.z[rows], k=kk, p=np.inf)
        table.append((rows, rows[np.asarray(idx).reshape(rows.size, kk)]))
    return table


def local_permutation(
    table: list[tuple[NDArray, NDArray | None]], n: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Indices that shuffle samples among their Z-neighbours (Runge 2018), or within strata.

    Visiting rows in random order, each row takes a random not-yet-taken neighbour; when
    all its neighbours are taken it takes a random one of them (a repeat).
    """
    perm = np.arange(n)
    for rows, neighbours in table:
        if neighbours is None:
            perm[rows] = rng.permutation(rows)
            continue
        candidates = rng.permuted(neighbours, axis=1)
        taken = np.zeros(n, bool)
        for i in rng.permutation(rows.size):
            row = candidates[i]
            free = row[~taken[row]]
            pick = free[0] if free.size else row[0]
            perm[rows[i]] = pick
            taken[pick] = True
    return perm


def _test_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def null_exceedances(
    problem: Problem, observed: float, name: str, seed: int, k_perm: int, start: int, stop: int
) -> NDArray[np.bool_]:
    """For b in [start, stop): whether the estimate with locally permuted y >= observed."""
    table = _neighbour_table(problem, k_perm)
    exceed = np.zeros(stop - start, bool)
    for col, b in enumerate(range(start, stop)):
        rng = permutation_generator(seed, _PERM_STREAM, _test_key(name), b)
        permuted = problem.y[local_permutation(table, problem.y.size, rng)]
        exceed[col] = problem.estimate(permuted) >= observed
    return exceed


def half_sample_estimates(
    problem: Problem, name: str, seed: int, start: int, stop: int
) -> NDArray[np.float64]:
    """Estimates on half-samples r in [start, stop) drawn without replacement."""
    n = problem.y.size
    out = np.empty(stop - start)
    for col, r in enumerate(range(start, stop)):
        rows = permutation_generator(seed, _HALF_STREAM, _test_key(name), r).choice(
            n, n // 2, replace=False
        )
        out[col] = problem.rows(np.sort(rows)).estimate()
    return out


def run_tests(
    problems: Mapping[str, Problem],
    settings: AttributionSettings,
    permutations: int,
    ci: bool,
    parallel: bool,
) -> dict[str, dict[str, Any]]:
    """Estimate, permutation p-value and (``ci``) interval of every named problem.

    Permutations run in rounds of growing size; after each round a test with
    ``stop_after`` exceedances stops (sequential p-value). ``parallel`` fans the work out
    as Ray tasks (one per chunk of permutations or half-samples); otherwise it runs here.
    Both give the same numbers.
    """
    s = settings
    run = _Executor(problems, parallel)
    observed = dict(zip(problems, run.map(_estimate, [(name,) for name in problems],
                                          "attribution estimates"), strict=True))  # fmt: skip
    flags = {name: np.zeros(0, bool) for name in problems}
    active = list(problems)
    for start, stop in _rounds(permutations, s.chunk_size):
        calls = [(name, observed[name], name, s.seed, s.k_perm, a, b)
                 for name in active for a, b in chunks(stop - start, s.chunk_size, start)]  # fmt: skip
        for (name, *_), chunk in zip(calls, run.map(null_exceedances, calls,
                                                    "attribution permutations"), strict=True):  # fmt: skip
            flags[name] = np.concatenate((flags[name], chunk))
        active = [name for name in active if not _stopped(flags[name], s.stop_after)]
        if not active:
            break
    halves: dict[str, NDArray] = {name: np.empty(0) for name in problems}
    if ci:
        calls = [(name, name, s.seed, a, b) for name in problems
                 for a, b in chunks(s.ci_resamples, max(1, s.chunk_size // 8))]  # fmt: skip
        for (name, *_), values in zip(calls, run.map(half_sample_estimates, calls,
                                                     "attribution half-samples"), strict=True):  # fmt: skip
            halves[name] = np.concatenate((halves[name], values))
    return {
        name: _result(observed[name], flags[name], halves[name], s.stop_after, s.ci_level)
        for name in problems
    }


class _Executor:
    """Calls ``fn(problem, *args)`` here or as Ray tasks (each problem shipped once)."""

    def __init__(self, problems: Mapping[str, Problem], parallel: bool) -> None:
        self.parallel = parallel
        self.problems: dict[str, Any] = dict(problems)
        if parallel:
            import ray

            from specray.runtime import ensure_ray

            ensure_ray()
            self.problems = {name: ray.put(p) for name, p in problems.items()}

    def map(self, fn, calls: Sequence[tuple], what: str) -> list:
        """``fn(problems[name], *args)`` for each ``(name, *args)`` in ``calls``, in order."""
        if not self.parallel:
            return [fn(self.problems[name], *args) for name, *args in calls]
        return wait_all([remote(fn).remote(self.problems[name], *args)
                          for name, *args in calls], what)  # fmt: skip


def _rounds(permutations: int, first: int) -> list[tuple[int, int]]:
    """[start, stop) rounds covering range(permutations), each four times the last."""
    out, start, size = [], 0, max(1, first)
    while start < permutations:
        out.append((start, min(start + size, permutations)))
        start, size = start + size, 4 * size
    return out


def _stopped(flags: NDArray[np.bool_], stop_after: int) -> bool:
    return stop_after > 0 and int(flags.sum()) >= stop_after


def sequential_pvalue(flags: NDArray[np.bool_], stop_after: int) -> tuple[float, int]:
    """(p, permutations it rests on) from the exceedance flags of permutations 0, 1, ...

    Besag & Clifford (1991): stopping at the ``stop_after``-th exceedance, after l
    permutations, p = stop_after / l; a test that never gets there has the plain
    ``(1 + exceedances) / (1 + B)``. Both are valid p-values: P(p <= u) <= u under H0.
    """
    hits = np.flatnonzero(flags)
    if stop_after > 0 and hits.size >= stop_after:
        drawn = int(hits[stop_after - 1]) + 1
        return stop_after / drawn, drawn
    return float(pvalue_from_exceedances(hits.size, flags.size)), int(flags.size)


def _estimate(problem: Problem) -> float:
    return problem.estimate()


def _result(value: float, flags: NDArray, half: NDArray, stop_after: int, level: float) -> dict:
    finite = half[np.isfinite(half)]
    ci = recentred_interval(value, finite, level) if finite.size >= 2 else (np.nan, np.nan)
    p, drawn = sequential_pvalue(flags, stop_after)
    return {"value": float(value), "p_value": p, "ci": [float(ci[0]), float(ci[1])],
            "at_floor": not flags.any(), "permutations": drawn}  # fmt: skip


def _correct(results: dict[str, dict], names: Sequence[str], alpha: float, fdr: str) -> None:
    """Adjust the p-values of one family in place and mark the significant tests."""
    if not names:
        return
    adjusted = adjust_pvalues([results[name]["p_value"] for name in names], fdr)
    for name, q in zip(names, adjusted, strict=True):
        results[name]["p_adjusted"] = float(q)
        results[name]["significant"] = bool(q <= alpha)


# ------------------------------------------------------------------ building problems


@dataclass
class Variables:
    """Prepared inputs on the rows where a label and the nuisance labels are all known."""

    rows: NDArray[np.int64]
    nodes: NDArray[np.float64]
    labels: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    z_cont: NDArray[np.float64] | None = None
    strata: NDArray[np.int64] | None = None


def _prepare(
    latents: NDArray,
    labels: Mapping[str, NDArray],
    kinds: Mapping[str, str],
    names: Sequence[str],
    condition: Sequence[str],
    seed: int,
) -> Variables:
    """Normal scores / class codes of the live nodes and of ``names`` + ``condition``."""
    valid = np.ones(latents.shape[0], bool)
    for name in [*names, *condition]:
        valid &= np.isfinite(labels[name])
    rows = np.flatnonzero(valid)
    nodes = np.column_stack([normal_scores(col, seed) for col in latents[rows].T])
    prepared = {name: prepare_label(labels[name][rows], kinds[name], seed) for name in names}
    cont = [prepare_label(labels[c][rows], "continuous", seed) for c in condition
            if kinds[c] == "continuous"]  # fmt: skip
    disc = [prepare_label(labels[c][rows], kinds[c]) for c in condition if kinds[c] != "continuous"]
    strata = np.unique(np.column_stack(disc), axis=0, return_inverse=True)[1] if disc else None
    z_cont = np.column_stack(cont) if cont else np.empty((rows.size, 0))
    return Variables(rows, nodes, prepared, z_cont, None if strata is None else strata.ravel())


def _permutations(s: AttributionSettings, n_tests: int) -> tuple[int, bool]:
    """(B, resolvable): the settings' B (warning when too small) or the automatic one."""
    if s.permutations is not None:
        return choose_permutations(s.permutations, n_tests, s.alpha, s.fdr)
    return max(199, 2 * min_resolvable_permutations(n_tests, s.alpha, s.fdr)), True


def _problem(v: Variables, x_cols: Sequence[int], label: str, discrete: bool, z_cols, k) -> Problem:
    z = np.hstack((v.nodes[:, list(z_cols)], v.z_cont))
    return Problem(v.nodes[:, list(x_cols)], v.labels[label], discrete, z, v.strata, k)


# ------------------------------------------------------------------ attribution


def attribute(
    latents: NDArray,
    labels: Mapping[str, NDArray],
    nodes: Sequence[int],
    kinds: Mapping[str, str],
    condition: Sequence[str] = (),
    settings: AttributionSettings | None = None,
    parallel: bool = True,
) -> dict[str, Any]:
    """Marginal, joint and conditional MI of every label with the live ``nodes``, node
    attribution and the label verdicts (module docstring). ``labels`` map names to
    (n,) float arrays (NaN unknown; categorical ones as codes), ``kinds`` every label
    and nuisance to its kind; ``condition`` names nuisance labels to condition on."""
    s = settings or AttributionSettings()
    mat = np.asarray(latents, dtype=np.float64)
    live = [int(j) for j in nodes]
    targets = [name for name in labels if name not in condition]
    per_label = {
        name: _prepare(mat[:, live], labels, kinds, [name], condition, s.seed) for name in targets
    }
    n_tests = len(live) * len(targets)
    n_perm, resolvable = _permutations(s, max(n_tests, 1))
    marginal = {
        f"mi|{name}|{node}": _problem(v, [d], name, kinds[name] != "continuous", [], s.k)
        for name, v in per_label.items()
        for d, node in enumerate(live)
    }
    results = run_tests(marginal, s, n_perm, ci=True, parallel=parallel) if marginal else {}
    _correct(results, list(results), s.alpha, s.fdr)
    related = {
        name: [d for d, node in enumerate(live) if results[f"mi|{name}|{node}"]["significant"]]
        for name in targets
    }
    conditional, conditioned_on, joint_nodes = {}, {}, {}
    for name, v in per_label.items():
        disc = kinds[name] != "continuous"
        ranked = _by_mi(results, name, live, related[name])
        joint = (ranked or _by_mi(results, name, live, range(len(live))))[: s.max_condition + 1]
        joint_nodes[name] = [live[d] for d in joint]
        conditional[f"joint|{name}"] = _problem(v, joint, name, disc, [], s.k)
        for d, node in enumerate(live):
            others = [o for o in ranked if o != d][: s.max_condition]
            conditioned_on[(name, node)] = [live[o] for o in others]
            if others:
                conditional[f"cmi|{name}|{node}"] = _problem(v, [d], name, disc, others, s.k)
    if conditional:
        results.update(run_tests(conditional, s, n_perm, ci=True, parallel=parallel))
    for name in targets:  # nothing to condition on: the unique information is the MI
        for node in live:
            results.setdefault(f"cmi|{name}|{node}", dict(results[f"mi|{name}|{node}"]))
    _correct(results, [n for n in results if n.startswith("cmi|")], s.alpha, s.fdr)
    _correct(results, [n for n in results if n.startswith("joint|")], s.alpha, s.fdr)
    node_info = _attribute_nodes(mat, labels, kinds, live, targets, condition, s, results,
                                 n_perm, parallel)  # fmt: skip
    label_info = {
        name: _label_entry(name, live, results, node_info, s, joint_nodes[name], conditioned_on)
        for name in targets
    }
    return {
        "estimator": ESTIMATOR,
        "settings": asdict(s),
        "condition": list(condition),
        "labels": label_info,
        "nodes": node_info,
        "label_nodes": {name: _named(entry) for name, entry in label_info.items()},
        "permutations": {
            "used": n_perm,
            "needed": min_resolvable_permutations(max(n_tests, 1), s.alpha, s.fdr),
            "resolvable": resolvable,
            "n_tests": n_tests,
            "stop_after": s.stop_after,
        },
    }


def _by_mi(results: dict, name: str, live: Sequence[int], columns) -> list[int]:
    """Column indices into ``live``, largest marginal MI with label ``name`` first."""
    return sorted(columns, key=lambda d: -results[f"mi|{name}|{live[d]}"]["value"])


def _attribute_nodes(mat, labels, kinds, live, targets, condition, s, results, n_perm, parallel):
    """Best label, fraction explained and rivals' unique information for each live node."""
    best, candidates = {}, {}
    for node in live:
        related = [t for t in targets if results[f"mi|{t}|{node}"]["significant"]]
        candidates[node] = related
        if related:
            best[node] = max(related, key=lambda t: results[f"mi|{t}|{node}"]["value"])
    problems = {}
    for node, top in best.items():
        for rival in candidates[node]:
            if rival == top:
                continue
            v = _prepare(mat[:, [node]], labels, kinds, [rival], [*condition, top], s.seed)
            disc = kinds[rival] != "continuous"
            problems[f"rival|{node}|{rival}|{top}"] = _problem(v, [0], rival, disc, [], s.k)
    rivals = run_tests(problems, s, n_perm, ci=False, parallel=parallel) if problems else {}
    _correct(rivals, list(rivals), s.alpha, s.fdr)
    out = {}
    for node in live:
        top = best.get(node)
        entries = [
            {"label": name.split("|")[2], **res}
            for name, res in rivals.items()
            if name.startswith(f"rival|{node}|")
        ]
        unique = [e["label"] for e in entries if e["significant"] and e["value"] >= s.floor]
        mi = results[f"mi|{top}|{node}"]["value"] if top else None
        out[node] = {
            "best_label": top,
            "mi": mi,
            "fraction_explained": None if mi is None else float(1 - np.exp(-2 * max(mi, 0.0))),
            "related_labels": candidates[node],
            "status": "unexplained" if top is None else ("mixed" if unique else "exclusive"),
            "mixed_with": unique,
            "rivals": entries,
        }
    return out


def _label_entry(name, live, results, node_info, s, joint_nodes, conditioned_on) -> dict:
    joint = results[f"joint|{name}"]
    rows = []
    for node in live:
        mi, cmi = results[f"mi|{name}|{node}"], results[f"cmi|{name}|{node}"]
        rows.append(
            {
                "node": node,
                "mi": mi["value"],
                "mi_ci": mi["ci"],
                "mi_p_adjusted": mi["p_adjusted"],
                "mi_at_floor": mi["at_floor"],
                "mi_significant": mi["significant"],
                "cmi": cmi["value"],
                "cmi_ci": cmi["ci"],
                "cmi_p_value": cmi["p_value"],
                "cmi_p_adjusted": cmi["p_adjusted"],
                "cmi_significant": cmi["significant"],
                "conditioned_on": conditioned_on[(name, node)],
                "share": mi["value"] / joint["value"] if joint["value"] > 0 else None,
            }
        )
    return {
        "joint": {key: joint[key] for key in ("value", "ci", "p_value", "p_adjusted")}
        | {"nodes": joint_nodes},
        "nodes": rows,
        "verdict": _verdict(name, rows, node_info, s),
    }


def _verdict(name: str, rows: list[dict], node_info: dict, s: AttributionSettings) -> dict:
    """Apply the naming rule (module docstring) to one label's rows."""
    related = [r["node"] for r in rows if r["mi_significant"]]
    unique = [r for r in rows if r["cmi_significant"] and r["node"] in related]
    if not unique:
        if len(related) >= 2:
            return {"status": "distributed", "nodes": related,
                    "reason": "no node holds significant information the others lack"}  # fmt: skip
        if related:
            return {"status": "none", "nodes": related,
                    "reason": "related to a node, but its unique information is not significant"}  # fmt: skip
        return {"status": "none", "nodes": [], "reason": "no node is related to this label"}
    top = max(unique, key=lambda r: r["cmi"])
    info = node_info[top["node"]]
    low = top["cmi_ci"][0]
    if info["best_label"] != name and name not in info["mixed_with"]:
        return {"status": "explained_by", "node": top["node"], "by": info["best_label"],
                "reason": f"node {top['node']} is {info['best_label']}'s; {name} adds nothing "
                          f"significant given {info['best_label']}"}  # fmt: skip
    if info["status"] == "mixed":
        partners = sorted({info["best_label"], *info["mixed_with"]} - {name})
        return {"status": "mixed", "node": top["node"], "with": partners,
                "reason": f"node {top['node']} also carries {', '.join(partners)}"}  # fmt: skip
    if not np.isfinite(low) or low < s.floor:
        return {"status": "distributed", "nodes": [r["node"] for r in unique],
                "reason": f"node {top['node']}'s unique information interval starts below "
                          f"{s.floor:g} nat"}  # fmt: skip
    if top["share"] is None or top["share"] < s.share:
        return {"status": "distributed", "nodes": [r["node"] for r in unique],
                "reason": f"node {top['node']} holds less than {s.share:g} of the joint MI"}  # fmt: skip
    return {"status": "node", "node": top["node"], "reason": "significant, above the floor, "
            "most of the joint information, and the node is this label's alone"}  # fmt: skip


def _named(entry: dict) -> dict | None:
    """The ``label_nodes`` entry: the named node's numbers, or None."""
    verdict = entry["verdict"]
    if verdict["status"] != "node":
        return None
    row = next(r for r in entry["nodes"] if r["node"] == verdict["node"])
    return {
        "node": row["node"],
        "mi": row["mi"],
        "ci": row["mi_ci"],
        "p_adjusted": row["mi_p_adjusted"],
        "at_floor": row["mi_at_floor"],
        "cmi": row["cmi"],
        "cmi_ci": row["cmi_ci"],
        "cmi_p_adjusted": row["cmi_p_adjusted"],
        "share": row["share"],
    }


# ------------------------------------------------------------------ for analyze


def label_kinds(
    labels: Mapping[str, NDArray], categorical: Sequence[str], cfg: AnalysisConfig
) -> dict[str, dict[str, Any]]:
    """Kind of every label: detected (text columns are ``categorical``) or set in
    ``cfg.label_kinds``; with the number of distinct values, for analysis.json."""
    unknown = sorted(set(cfg.label_kinds) - set(labels))
    if unknown:
        raise LabelKindError(f"analysis.label_kinds names labels not analysed: {unknown}")
    out = {}
    for name, values in labels.items():
        finite = values[np.isfinite(values)]
        shown = np.array(["text"] * finite.size, dtype=object) if name in categorical else finite
        detected = detect_kind(shown, cfg.max_discrete_values)
        kind = resolve_kind(name, shown, cfg.label_kinds.get(name), cfg.max_discrete_values)
        distinct = int(np.unique(finite).size)
        out[name] = {"kind": kind, "detected": detected, "distinct_values": distinct}
    return out


def attribution_for_analysis(
    mu: NDArray,
    labels: Mapping[str, NDArray],
    nodes: Sequence[int],
    kinds: Mapping[str, dict[str, Any]],
    cfg: AnalysisConfig,
    notes: list[str],
) -> dict[str, Any] | None:
    """:func:`attribute` with the analysis settings; None (and a note) when there is
    nothing to attribute. Runs on Ray."""
    missing = [c for c in cfg.condition if c not in labels]
    if missing:
        notes.append(f"conditioning labels {missing} have no usable values; not conditioned on")
    condition = [c for c in cfg.condition if c in labels]
    other = [name for name in labels if kinds[name]["kind"] != "continuous"]
    if other:
        notes.append(
            f"labels {other} are discrete or categorical: the node x label MI table uses the "
            f"continuous estimator ({cfg.estimator}); the attribution uses Ross's estimator"
        )
    if not nodes or not [name for name in labels if name not in condition]:
        notes.append("no live node or no label to attribute: attribution skipped")
        return None
    settings = AttributionSettings(
        floor=cfg.attribution_floor,
        share=cfg.attribution_share,
        permutations=cfg.attribution_permutations or None,
        stop_after=cfg.attribution_stop_after,
        max_condition=cfg.attribution_max_condition,
        alpha=cfg.alpha,
        fdr=cfg.fdr,
        seed=cfg.seed,
    )
    result = attribute(
        mu, labels, nodes, {name: kinds[name]["kind"] for name in labels}, condition, settings
    )
    for node, info in result["nodes"].items():
        if info["status"] == "unexplained":
            notes.append(f"live node {node} is related to no analysed label (unexplained)")
    return result
