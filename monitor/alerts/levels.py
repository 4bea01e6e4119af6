"""Severity, urgency and certainty: the CAP 1.2 vocabularies and how alert levels map onto them.

CAP 1.2 (OASIS, 2010) defines ``severity`` (Extreme, Severe, Moderate, Minor, Unknown),
``urgency`` (Immediate, Expected, Future, Past, Unknown) and ``certainty`` (Observed,
Likely, Possible, Unlikely, Unknown). A rule level names a severity; unless the rule says
otherwise its urgency and certainty follow :data:`DEFAULT_URGENCY_CERTAINTY`, chosen for
satellite geodesy: a deformation signal is evidence of a process that *may* lead to an
event, so urgency is at most "Expected" below Extreme and certainty at most "Likely".
"""

from __future__ import annotations

from typing import Literal

Severity = Literal["Minor", "Moderate", "Severe", "Extreme"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
Hazard = Literal["volcanic_unrest", "ground_deformation", "active_deformation_area"]

SEVERITIES: tuple[Severity, ...] = ("Minor", "Moderate", "Severe", "Extreme")
HAZARDS: tuple[Hazard, ...] = ("volcanic_unrest", "ground_deformation", "active_deformation_area")

DEFAULT_URGENCY_CERTAINTY: dict[str, tuple[Urgency, Certainty]] = {
    "Minor": ("Future", "Possible"),
    "Moderate": ("Expected", "Possible"),
    "Severe": ("Expected", "Likely"),
    "Extreme": ("Immediate", "Likely"),
}


def severity_rank(severity: str) -> int:
    """0 for Minor .. 3 for Extreme.

    >>> severity_rank("Severe") > severity_rank("Moderate")
    True
    """
    try:
        return SEVERITIES.index(severity)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; one of {', '.join(SEVERITIES)}") from None
