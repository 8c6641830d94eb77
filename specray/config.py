"""specray's settings: one typed tree, loaded from a file and ``--set key=value`` overrides.

A configuration file (YAML or JSON) holds any subset of the sections below; overrides use
dotted keys (``--set model.latent_dim=16 --set loss.beta=0.1``) and YAML values. Unknown
sections or keys are errors, so a typo never silently does nothing. Defaults are the
published settings (Sedaghat et al. 2021 and its follow-up, method.md sections 3-5);
``DEMO_OVERRIDES`` shrinks them for the synthetic demo on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from specray import storage
from specray.errors import SpecrayError
from specray.records import attribute_docs
from specray.spectra.grid import DEFAULT_MIN_SNR, GridError, named_grid


@dataclass
class IngestConfig:
    """Reading FITS files into a store: the grid of a new store, the file layout and the
    quarantine rules (recorded in ``store.json``; a later ingest must use the same)."""

    grid: str = "demo"
    """Wavelength grid of a new store: "harps", "demo" or "linear:START:STOP:STEP[:R]" (Angstrom)."""
    format: Literal["auto", "adp", "s1d", "linear"] = "auto"
    """FITS layout: ESO ADP table, HARPS DRS s1d image, a linear-WCS 1-D image, or "auto" (per file)."""
    min_snr: float = DEFAULT_MIN_SNR
    """Quarantine spectra below this SNR per pixel, estimated from the spectrum (0: off)."""
    min_median: float | None = None
    """Quarantine spectra at or below this median flux, in the input's units (None: off; 50 suits HARPS ADU)."""
    min_coverage: float = 0.5
    """Quarantine spectra covering less than this fraction of the grid."""
    labels_key: Literal["id", "object"] | None = None
    """Join the labels table by "id" or "object"; None: by id if the table has an id column."""

    def problem(self, key: str) -> str | None:
        if key == "grid":
            try:
                named_grid(self.grid)
            except GridError as error:
                return str(error)
        if key in ("min_snr", "min_coverage") and getattr(self, key) < 0:
            return f"must be >= 0, got {getattr(self, key)}"
        if key == "min_coverage" and self.min_coverage > 1:
            return f"a fraction of the grid, got {self.min_coverage}"
        return None


@dataclass
class SynthConfig:
    """The synthetic survey (`specray synth`): ground truth for every generated factor."""

    stars: int = 300
    """Stars in the survey."""
    visits: float = 4.0
    """Mean observations per star (at least one each)."""
    grid: str = "demo"
    """Wavelength grid of the spectra (as ``ingest.grid``)."""
    format: Literal["parquet", "fits"] = "parquet"
    """"parquet": a ready store; "fits": archive-format ADP files plus labels.csv, for `specray ingest`."""
    seed: int = 0
    """Seed of the survey."""

    def problem(self, key: str) -> str | None:
        if key == "stars" and self.stars < 1:
            return f"at least 1 star, got {self.stars}"
        if key == "grid":
            return IngestConfig(grid=self.grid).problem("grid")
        return None


@dataclass
class ModelConfig:
    """Architecture: a preset of specray.model plus optional overrides (None keeps the preset's)."""

    preset: str = "paper"
    """Architecture preset: "paper" (Sedaghat et al. 2021) or "demo" (small, for laptops)."""
    latent_dim: int | None = None
    """Latent nodes (the bottleneck size); None keeps the preset's."""
    channels: list[int] | None = None
    """Encoder channels per convolution block (the decoder mirrors them)."""
    kernels: list[int] | None = None
    """Convolution kernel width per block (pixels)."""
    strides: list[int] | None = None
    """Down-sampling stride per block; spectra are padded to their product."""

    def problem(self, key: str) -> str | None:
        """What is wrong with setting ``key`` (beyond its type), or None."""
        from specray.model import preset_names

        if key == "preset" and self.preset not in preset_names():
            return f"expected one of {preset_names()}, got {self.preset!r}"
        return None

    def overrides(self) -> dict:
        names = ("latent_dim", "channels", "kernels", "strides")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class LossConfig:
    """The disentanglement setting: KL weight beta, its warm-up (optimiser steps), normalisation."""

    beta: float = 0.3
    """KL weight after the warm-up: the disentanglement pressure."""
    warmup_start: int = 5_000
    """Optimiser step at which the KL weight starts rising from 0."""
    warmup_end: int = 20_000
    """Optimiser step at which the KL weight reaches beta."""
    normalisation: Literal["mean", "sum"] = "mean"
    """"mean" (L1 per pixel, KL per node, as published) or "sum"."""


@dataclass
class TrainConfig:
    """Optimisation, data handling and the Ray Train resources."""

    epochs: int = 182
    """Passes over the training spectra (the run's total, counting resumed epochs)."""
    batch_size: int = 32
    """Spectra per optimiser step on each worker."""
    lr: float = 1e-4
    """Adam learning rate."""
    workers: int = 1
    """Ray Train workers (data-parallel; one per GPU with use_gpu)."""
    use_gpu: bool = False
    """Train on GPUs (one per worker)."""
    cpus_per_worker: float = 1.0
    """Logical CPUs Ray reserves for each worker."""
    val_fraction: float = 0.1
    """Fraction of the objects (stars) held out for validation."""
    balance_objects: bool = True
    """Weight each spectrum by 1 / (its object's spectra), as the published sampler."""
    shuffle_buffer: int = 256
    """Rows in Ray Data's local shuffle buffer (0: no shuffle)."""
    materialize_below_mb: float = 1024.0
    """Stores smaller than this are read once into Ray's object store instead of per epoch."""
    checkpoint_every: int = 1
    """Write a checkpoint every this many epochs (and at the last)."""
    finetune_epochs: int = 5
    """Epochs added by each scheduled retrain (specray retrain) when it fine-tunes."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept in the run folder."""
    max_failures: int = 2
    """Worker failures Ray Train recovers from (restarting from the last checkpoint)."""
    bf16: bool = True
    """bfloat16 autocast on GPUs (ignored on CPUs)."""
    compile: bool = False
    """torch.compile the model."""
    seed: int = 0
    """Seed of the weights' initialisation and the data order."""
    log_every: int = 50
    """Log the running loss every this many steps."""
    crash_once_at_epoch: int | None = None
    """Fault injection for testing recovery: one worker raises once at this epoch."""


@dataclass
class AnalysisConfig:
    """Latent-space analysis (method.md section 5)."""

    labels: list[str] = field(default_factory=lambda: ["rv", "teff", "logg", "feh"])
    """Label columns to relate to the latent nodes (absent ones are skipped with a warning)."""
    live_criterion: Literal["information", "mad"] = "information"
    """Which set of live nodes is analysed: "information" (0.5 ln(1 + Var(mu)/E[sigma^2])
    above ``information_threshold`` nats; needs logvar) or "mad" (the paper's unscaled MAD
    of mu above ``dispersion_threshold``). Both are reported (specray.model.posterior)."""
    information_threshold: float = 0.1
    """Nats of information a node must pass on to count as live."""
    dispersion_threshold: float = 0.02
    """MAD of mu above which a node counts as live by the paper's criterion."""
    permutations: int | Literal["auto"] = "auto"
    """Per node-label pair. "auto": the fewest that resolve the FDR threshold for the
    number of tests (B >= m/alpha - 1 for BH), at least 999; a number is used as given
    (0 means "auto" too, as before)."""
    placeholders: list[float] | None = None
    """Label values that mean "missing" (None: the rule ingest applies too, all-nines values
    such as 99, -99.9, 9999 lying over 10 robust sigmas from the column's other values;
    see specray.placeholders)."""
    estimator: Literal["ksg", "copula", "histogram"] = "ksg"
    """Mutual-information estimator: "ksg" (Kraskov k-NN), "copula" or "histogram"."""
    fdr: Literal["bh", "by", "none"] = "bh"
    """False-discovery-rate correction: "bh" (Benjamini-Hochberg), "by" or "none"."""
    alpha: float = 0.05
    """Significance level after the correction."""
    ci_resamples: int = 100
    """Half-samples for each MI interval."""
    one_per_object: bool = True
    """Analyse each object's highest-SNR spectrum only."""
    sigma_clip: float = 5.0
    """Clip label values this many robust sigmas (median, MAD) out; 0: off."""
    seed: int = 0
    """Seed of the permutations, half-samples and k-NN noise."""
    complete_cases: bool = False
    """True: analyse only spectra with every label (the paper's joint NaN drop and clip);
    False: each label uses every selected spectrum that has it."""
    screen: bool = True
    """Also screen ALL nodes with the fast Gaussian-copula estimator (its own, always
    resolvable, permutation count), to catch nodes below the dispersion threshold."""
    anomalies: int = 20
    """How many of the most anomalous spectra (isolation forest) to list."""
    traversal_nodes: int = 8
    """Latent traversals for at most this many informative nodes (largest spread first)."""
    encode_batch_size: int = 32
    """Spectra per batch when encoding a store for the analysis."""
    encode_actors: int = 0
    """Encoder actors for batch inference; 0 = one per GPU, else up to half the CPUs."""
    condition: list[str] = field(default_factory=list)
    """Nuisance labels (e.g. [snr, airmass]) every attribution estimate is conditioned on;
    they are not attributed themselves (specray.analysis.attribution)."""
    label_kinds: dict[str, str] = field(default_factory=dict)
    """Override the detected kind of a label: continuous, discrete or categorical."""
    max_discrete_values: int = 20
    """A numeric label with at most this many distinct values is analysed as discrete."""
    attribution_floor: float = 0.1
    """Nats the lower end of a node's conditional-MI interval must clear to name it."""
    attribution_share: float = 0.5
    """Fraction of a label's joint MI with the live nodes a named node must hold."""
    attribution_permutations: int = 0
    """Conditional permutations per attribution test at most; 0 = twice the fewest that
    resolve."""
    attribution_stop_after: int = 10
    """An attribution test stops at this many permuted estimates >= the observed one
    (sequential p-value, Besag & Clifford 1991); 0 = always draw them all."""
    attribution_max_condition: int = 4
    """Related nodes (the strongest) a node's unique information is conditioned on."""

    def problem(self, key: str) -> str | None:
        """What is wrong with setting ``key`` (beyond its type), or None."""
        value = getattr(self, key)
        if key == "permutations" and value != "auto" and value < 0:
            return f"expected a positive number of permutations or 'auto', got {value}"
        if key in ("information_threshold", "dispersion_threshold") and value < 0:
            return f"a threshold must be >= 0, got {value}"
        if key in ("attribution_stop_after", "attribution_permutations") and value < 0:
            return f"expected a number >= 0, got {value}"
        if key == "attribution_max_condition" and value < 1:
            return f"conditioning needs at least 1 node, got {value}"
        return None


@dataclass
class TuneConfig:
    """Ray Tune search space and scheduling."""

    samples: int = 8
    """Trials in the search."""
    latent_dims: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    """Latent sizes the search chooses from."""
    beta_min: float = 0.01
    """Smallest beta searched (log-uniform)."""
    beta_max: float = 3.0
    """Largest beta searched."""
    normalisations: list[str] = field(default_factory=lambda: ["mean", "sum"])
    """Loss normalisations the search chooses from."""
    searcher: Literal["random", "optuna"] = "random"
    """How trials are drawn: "random" or "optuna"."""
    grace_epochs: int = 1
    """Epochs every trial runs before ASHA may stop it."""
    max_concurrent: int | None = None
    """Trials at once; None: as many as the cluster's resources fit."""
    prefer_fewest_nodes_within: float | None = None
    """Pick the trial with the fewest live nodes among those within this fraction of the best metric; None: the best."""
    metric: Literal["val_loss", "val_recon"] = "val_loss"
    """What the search minimises: "val_loss" (reconstruction + beta x KL) or "val_recon"
    (reconstruction only, which does not favour small beta by construction). Both are
    compared in "mean" normalisation units (per pixel, per latent node), so trials with
    different ``normalisations`` are ranked on one scale."""
    reduction_factor: float = 4.0
    """ASHA: at each rung only the best 1/reduction_factor of the trials go on."""
    seed: int | None = 0
    """Seed of the searcher's sampling (random or Optuna); None for a fresh draw each run."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        config = cls()
        apply(config, values)
        return config


DEMO_OVERRIDES = [
    # About 4,000 Adam steps on ~1,000 synthetic spectra. The KL weight stays 0 for the
    # first 1,500 steps, long enough for the network to learn the line shifts (radial
    # velocity) as well as the continuum and line depths (Teff), then rises to beta.
    # beta = 0.01 (not the published 0.3): with mean normalisation the pressure per nat is
    # beta / latent_dim against 1 / pixels of L1, and a Doppler shift on this coarse
    # 16,384-pixel grid saves far less L1 than on HARPS' 327,680 pixels. Measured on the
    # demo store (plain PyTorch, same network): beta 0.03 or 0.02 squeezes the RV node out
    # within 4,000 steps (its MI falls from ~1.2 to < 0.8 nats, spread over two nodes); 0.01
    # keeps one RV node (1.4-1.6 nats, two seeds) and one Teff node (~1.5 nats) plus a few
    # weaker nodes. Without object balancing: its weights (0.2-3.7 here) add gradient noise
    # that, in the same test, split the RV signal over two nodes (0.68 and 0.62 nats). The
    # analysis still takes one spectrum per star, so no star dominates the statistics.
    # Every factor the synthetic survey varies is analysed, so that a node tied to none of
    # the four stellar labels is not mistaken for a discovery when it tracks an observing
    # condition (measured: the Teff node also carries the continuum tilt).
    "analysis.labels=[rv, teff, logg, feh, vsini, snr, berv, airmass, pwv, tilt]",
    "model.preset=demo",
    "loss.beta=0.01",
    "loss.warmup_start=1500",
    "loss.warmup_end=3000",
    "train.epochs=130",
    "train.lr=0.002",
    "train.cpus_per_worker=2",
    "train.balance_objects=false",
]


class ConfigError(SpecrayError, ValueError):
    """A setting that does not exist or has the wrong type."""


def _set(section: Any, key: str, value: Any, where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown setting {key!r}; known: {sorted(fields)}")
    current = getattr(section, key)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: section {key!r} needs a mapping, got {value!r}")
        for inner, inner_value in value.items():
            _set(current, inner, inner_value, f"{where}.{inner}")
        return
    hint = typing.get_type_hints(type(section))[key]
    setattr(section, key, _coerce(value, hint, where))
    problem = section.problem(key) if hasattr(section, "problem") else None
    if problem:
        raise ConfigError(f"{where}: {problem}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the field's declared type (ints widen to floats).

    Unions (``int | None``, ``int | Literal["auto"]``) accept a value that fits any member.
    """
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    allowed = [t for t in members if t is not type(None)]
    if value is None:
        if len(allowed) < len(members):
            return None
        raise ConfigError(f"{where}: a value is required")
    errors = []
    for kind in allowed:
        try:
            return _coerce_one(value, kind, where)
        except ConfigError as error:
            errors.append(str(error).removeprefix(f"{where}: "))
    if len(errors) == 1:
        raise ConfigError(f"{where}: {errors[0]}")
    raise ConfigError(f"{where}: " + "; or ".join(errors))


def _coerce_one(value: Any, kind: Any, where: str) -> Any:
    """``value`` checked against one (non-union) type."""
    origin = typing.get_origin(kind) or kind
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if origin in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if origin is int and value != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return origin(value)
    if not isinstance(value, origin):
        raise ConfigError(f"{where}: expected a {origin.__name__}, got {value!r}")
    return value


def apply(config: Config, values: dict, where: str = "config") -> None:
    """Apply a nested mapping of settings to ``config`` in place."""
    for key, value in values.items():
        _set(config, key, value, f"{where}.{key}" if where != "config" else key)


def parse_overrides(items: list[str]) -> dict:
    """``["train.epochs=3", "model.channels=[4, 8]"]`` -> a nested mapping (YAML values)."""
    nested: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
        target = nested
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(text)
    return nested


def _read_settings(path: str) -> dict:
    """The settings in a YAML or JSON file; ConfigError naming the file and the place where
    it stops parsing."""
    text = storage.read_text(path)
    if path.endswith(".json"):
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        return _mapping(values, path)
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return _mapping(values, path)


def _mapping(values: object, path: str) -> dict:
    """The settings file's sections; an empty file is no settings."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected sections of settings (e.g. train: {{epochs: 3}}), "
            f"got a {type(values).__name__}"
        )
    return values


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, section by section."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def read_overrides(path: str | None, items: list[str] | None = None) -> dict:
    """A settings file (if given) with ``--set`` items on top, as one nested mapping, checked
    now against the known keys and choices: for commands that apply settings over a
    checkpoint's own (retrain), so a typo fails before any work."""
    merged = _merge(_read_settings(path) if path else {}, parse_overrides(items or []))
    apply(Config(), merged)
    return merged


def load_config(
    path: str | None = None, overrides: list[str] | None = None, base: list[str] | None = None
) -> Config:
    """Defaults, then ``base`` (a command's own settings, e.g. the demo's), then the file at
    ``path`` (local or s3://), then ``overrides``: the user's settings always win."""
    config = Config()
    apply(config, _merge(parse_overrides(base or []), read_overrides(path, overrides)))
    return config


# ------------------------------------------------------------------ self-description


def field_docs() -> dict[str, str]:
    """``{"section.key": meaning}`` from the docstring under each field in this module."""
    docs = {}
    for section in dataclasses.fields(Config):
        meanings = attribute_docs(type(getattr(Config(), section.name)))
        docs.update({f"{section.name}.{key}": text for key, text in meanings.items()})
    return docs


def describe(config: Config) -> str:
    """The effective configuration, one ``section.key = value`` line per setting, each
    followed by its meaning: what ``specray config --show`` prints."""
    docs = field_docs()
    lines = []
    for section in dataclasses.fields(Config):
        lines.append(f"[{section.name}]")
        values = getattr(config, section.name)
        for item in dataclasses.fields(values):
            key = f"{section.name}.{item.name}"
            lines.append(f"{key} = {json.dumps(getattr(values, item.name))}")
            lines.append(f"    {docs.get(key, '(undocumented)')}")
    return "\n".join(lines)
