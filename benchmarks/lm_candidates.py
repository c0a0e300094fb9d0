"""Candidate refinements measured by the LM study beside the package's methods: ideas to measure, not to assume.

Each candidate (the paper on LR-corrected norms, a half blend with pass 1's schedule, the WSD shape fitted to the
paper's, the paper on a stable phase's norms) is a function of what a pass 1 records (its `NormRecord`: the norms,
the learning rates) and, for the stable-phase candidate, of a WSD run's record (its norms at constant LR). The
package's own methods come from `build_schedule`, exactly as `hf-linear-decay refine --method M` makes them. Shapes
are multipliers, peak 1, last 0.
"""

from __future__ import annotations

import numpy as np

from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.core.settings import RefinementSettings
from hf_linear_decay.core.refine import median_filter_norms, multipliers_from_smoothed_norms, fill_invalid_norms
from hf_linear_decay.core.shapes import resample_schedule

#: The package's methods the study runs: `cooldown` is what `auto` gives where its rule fires, so it is not run twice.
STUDY_METHODS = ("auto", "paper", "guarded")


def package_methods(record, methods=STUDY_METHODS) -> dict[str, np.ndarray]:
    return {name: build_schedule(record, RefinementSettings(method=name), force=True).multipliers
            for name in methods}


def candidates(pass_one, stable_run=None) -> dict[str, np.ndarray]:
    """The study's other ideas, from pass 1's record (and a WSD run's record, for the stable-phase one)."""
    out = {}
    # The paper's formula on norms corrected for the LR decay: at weight-decay equilibrium the norm grows like
    # lr^-1/2 (Defazio 2025), so multiplying by sqrt(lr / peak) (floored at 10%) removes what pass 1's decay added.
    lr = pass_one.lr
    correction = np.sqrt(np.maximum(lr / lr.max(), 0.1))
    corrected, _ = fill_invalid_norms(pass_one.norms("l1") * correction, pass_one.skipped)
    out["paper_lr_corrected"] = multipliers_from_smoothed_norms(median_filter_norms(corrected, 0.1), 1.0)
    # The paper's shape, made milder: half of it plus half of pass 1's own schedule (the convex study's blend).
    paper = build_schedule(pass_one, RefinementSettings(method="paper"), force=True).multipliers
    own = pass_one.lr / pass_one.lr.max()
    blend = 0.5 * paper + 0.5 * own
    blend[-1] = 0.0
    out["paper_half_linear"] = blend / blend.max()
    # The warm-up / stable / anneal family fitted to the paper's shape (least squares over the cooldown's share and
    # kind, pass 1's warm-up kept): what the refinement says about *when* to anneal, without its noise.
    out["wsd_fit_to_paper"] = fitted_wsd(pass_one, paper)
    if stable_run is not None:
        # The paper's formula on the norms of a WSD run before its cooldown (warm-up, then constant LR: no
        # decay-induced rise), stretched to the run by progress.
        stable_lr = stable_run.lr
        stable_end = stable_phase_end(stable_lr)  # warm-up and stable phase
        norms, _ = fill_invalid_norms(stable_run.norms("l1")[: stable_end + 1])
        shape = multipliers_from_smoothed_norms(median_filter_norms(resample_schedule(norms, len(pass_one)), 0.1), 1.0)
        out["paper_stable_phase"] = shape
    return out


def stable_phase_end(lr: np.ndarray) -> int:
    """The last step of a WSD run at its peak LR (the end of its stable phase, before the cooldown)."""
    return int(np.flatnonzero(lr >= 0.999 * lr.max())[-1])


def fitted_wsd(pass_one, target: np.ndarray) -> np.ndarray:
    """The package's `cooldown` shape (pass 1's warm-up, the peak held, a cooldown over 5%..95% of the run in 5%
    steps, linear or 1-sqrt) closest to `target` in least squares."""
    shapes = [build_schedule(pass_one, RefinementSettings(method="cooldown", options={"fraction": float(fraction),
                                                                                      "shape": kind}),
                             force=True).multipliers
              for fraction in np.arange(0.05, 0.951, 0.05) for kind in ("linear", "1-sqrt")]
    return min(shapes, key=lambda shape: float(np.sum((shape - target) ** 2)))


def profile_of(record) -> dict:
    """What the default's rule reads from pass 1's norms (`core.refinements.NormProfile`), for the report."""
    from dataclasses import asdict

    from hf_linear_decay.core.refinements import norm_profile

    settings = RefinementSettings(method="auto").resolved(record)
    profile = norm_profile(record, settings)
    return {**asdict(profile), "rises_under_decay": profile.rises_under_decay}
