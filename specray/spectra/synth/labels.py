"""Observation ids and the label columns that ship with every synthetic spectrum."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from specray.spectra.synth.epochs import Epochs
from specray.spectra.synth.stars import Stars

MJD_ZERO = datetime(1858, 11, 17)
"""The date at which the Modified Julian Date is 0 (UTC)."""


def observation_timestamp(mjd: float) -> str:
    """ISO 8601 time of an MJD (days, UTC), to the millisecond: ``2004-03-12T04:23:11.123``."""
    moment = MJD_ZERO + timedelta(milliseconds=round(float(mjd) * 86_400_000))
    return moment.isoformat(timespec="milliseconds")


def observation_id(name: str, mjd: float) -> str:
    """The id (and file name stem) of one observation: star name and time of observation.

    Like the archive's ADP names, which carry a timestamp, ids of different seasons or
    surveys differ: the star name holds the seed and the date differs between epochs.
    """
    return f"{name}.{observation_timestamp(mjd)}"


def epoch_labels(stars: Stars, epochs: Epochs) -> dict[str, np.ndarray]:
    """The label columns of ``generate`` for the given epochs (1-D arrays, one per epoch):
    every factor the generator varies (star: teff, logg, feh, vsini; epoch: rv, snr, berv,
    airmass, pwv, tilt, defect), so an analysis can test each of them."""
    at = epochs.star
    names = stars.object[at]
    ids = [observation_id(name, mjd) for name, mjd in zip(names, epochs.mjd, strict=True)]
    if len(set(ids)) != len(ids):
        raise RuntimeError("two epochs of one star fell on the same millisecond")
    return {
        "id": np.array(ids, dtype=str),
        "object": names.astype(str),
        "rv": epochs.rv,
        "teff": stars.teff[at],
        "logg": stars.logg[at],
        "feh": stars.feh[at],
        "vsini": stars.vsini[at],
        "snr": epochs.snr,
        "berv": epochs.berv,
        "mjd_obs": epochs.mjd,
        "airmass": epochs.airmass,
        "pwv": epochs.pwv,
        "tilt": epochs.tilt,
        "exptime": epochs.exptime,
        "ra": stars.ra[at],
        "dec": stars.dec[at],
        "defect": epochs.defect.astype(str),
    }
