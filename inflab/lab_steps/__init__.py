"""The lab's steps: one module per step (or small family of steps), and the pieces they share.

The track — which steps, in which order, with their titles and flags — is declared once in
:mod:`inflab.track`; :func:`build` makes its step objects. Step ids are a stable contract
(``--until``, the store, reports).
"""

from __future__ import annotations

from importlib import import_module

from ..track import TRACK, StepSpec
from .base import Step


def build(track: tuple[StepSpec, ...] = TRACK) -> list[Step]:
    """The steps of ``track``, in order, each knowing its spec."""
    out = []
    for spec in track:
        module, name = spec.step.split(":")
        step = getattr(import_module(f"{__name__}.{module}"), name)()
        if step.id != spec.id:
            raise ValueError(f"the track names {spec.step} for step {spec.id}, which is step {step.id}")
        step.spec = spec
        out.append(step)
    return out
