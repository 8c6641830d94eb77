"""The line and band tables of ``data/*.csv``: atomic data, real lines, molecular bands.

Each file opens with ``#`` lines that give its columns' units and sources. The values are
the ones every spectrum is computed from: editing one changes the survey.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources


def read_table(name: str) -> list[dict[str, str]]:
    """The rows of ``data/<name>.csv`` as dicts of strings, its ``#`` lines skipped."""
    text = (resources.files(__package__) / "data" / f"{name}.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@dataclass(frozen=True)
class Element:
    """Atomic data of one element (see ``data/elements.csv`` for the sources).

    mass (amu); log_eps: solar abundance log10(N/N_H) + 12; chi1, chi2: first and second
    ionisation energies, eV; u1, u2, u3: partition functions of the neutral, singly and
    doubly ionised atom, held constant at approximate solar-photosphere values.
    """

    mass: float
    log_eps: float
    chi1: float
    chi2: float
    u1: float
    u2: float
    u3: float


ELEMENTS: dict[str, Element] = {
    row["element"]: Element(*(float(row[field]) for field in Element.__dataclass_fields__))
    for row in read_table("elements")
}

SPECIES: tuple[tuple[str, int], ...] = tuple(
    (name, stage) for name in ELEMENTS if name != "H" for stage in (1, 2)
)
"""(element, ionisation stage) pairs of the metal lines: stage 1 neutral, 2 singly ionised."""

SPECIES_INDEX: dict[tuple[str, int], int] = {species: i for i, species in enumerate(SPECIES)}
"""Position of each (element, stage) in ``SPECIES``."""

REAL_LINES: tuple[tuple[str, int, float, float, float, float], ...] = tuple(
    (
        row["element"],
        int(row["stage"]),
        float(row["wavelength"]),
        float(row["chi"]),
        float(row["loggf"]),
        float(row["gamma0"]),
    )
    for row in read_table("metal_lines")
)
"""Real metal lines: (element, stage, air wavelength A, lower excitation eV, log gf,
damping half-width at solar parameters km/s)."""

BALMER_LINES: tuple[tuple[float, float, float], ...] = tuple(
    (float(row["wavelength"]), float(row["loggf"]), float(row["gamma0"]))
    for row in read_table("balmer_lines")
)
"""Balmer lines: (air wavelength A, log gf, Stark half-width at solar parameters km/s)."""

TIO_BANDS: tuple[tuple[float, float], ...] = tuple(
    (float(row["head"]), float(row["depth"])) for row in read_table("tio_bands")
)
"""TiO bands: (head wavelength A, relative depth at full strength)."""

O2_BANDS: tuple[tuple[float, float, float], ...] = tuple(
    (float(row["origin"]), float(row["upper_b"]), float(row["strength"]))
    for row in read_table("o2_bands")
)
"""Telluric O2 b-X bands: (origin cm^-1 in vacuum, upper-state B' cm^-1, strength
relative to the B band)."""

H2O_BANDS: tuple[tuple[float, float, int, float], ...] = tuple(
    (float(row["low"]), float(row["high"]), int(row["lines"]), float(row["tau_max"]))
    for row in read_table("h2o_bands")
)
"""Telluric water bands: (low A, high A, number of pseudo-random lines, largest zenith
central optical depth at the reference water column)."""
