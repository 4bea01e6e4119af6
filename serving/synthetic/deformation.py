"""Surface displacement of volcanic and tectonic deformation sources, projected to a radar LOS.

This module is the physics half of the synthetic interferogram generator: it turns a source
(a Mogi point pressure source or an Okada rectangular dislocation: dyke, sill or fault) into
east / north / up surface displacement on a grid, and projects that onto the line of sight
(LOS) of a Sentinel-1 acquisition. Everything is pure numpy and vectorised over points.

Units: all lengths (coordinates, depths, fault dimensions, slip, opening) in metres, volume
changes in cubic metres, angles in degrees; displacements are returned in metres.

Coordinates: ``east`` and ``north`` are horizontal offsets in metres in a local Cartesian
frame; depths are positive downwards. Sign conventions for the LOS are in :func:`los_vector`.

References
----------
Mogi, K. (1958). Relations between the eruptions of various volcanoes and the deformations
of the ground surfaces around them. Bull. Earthq. Res. Inst. 36, 99-134.
Okada, Y. (1985). Surface deformation due to shear and tensile faults in a half-space.
Bull. Seismol. Soc. Am. 75(4), 1135-1154. https://doi.org/10.1785/BSSA0750041135
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POISSON_RATIO = 0.25
"""Poisson's ratio of the elastic half-space (lambda = mu), the usual crustal value."""


@dataclass(frozen=True)
class MogiSource:
    """A Mogi point source of volume change in an elastic half-space.

    Attributes
    ----------
    east, north : float
        Horizontal position of the source in metres (same frame as the grid).
    depth : float
        Depth of the source below the surface in metres, > 0.
    volume_change : float
        Volume change in m^3 (positive = inflation = uplift).
    """

    east: float
    north: float
    depth: float
    volume_change: float


@dataclass(frozen=True)
class OkadaSource:
    """A finite rectangular dislocation (Okada 1985) in an elastic half-space.

    Attributes
    ----------
    east, north : float
        Horizontal position of the surface projection of the fault *centroid*, metres.
    depth : float
        Depth of the centroid in metres, > 0; the top edge must stay below the surface,
        i.e. ``depth - width / 2 * sin(dip) > 0``.
    strike : float
        Strike in degrees clockwise from north; the plane dips to the right of it.
    dip : float
        Dip in degrees, 0 (horizontal sill) to 90 (vertical dyke or fault).
    length : float
        Along-strike length in metres, > 0.
    width : float
        Down-dip width in metres, > 0.
    rake : float
        Rake of the slip in degrees (0 = left-lateral strike slip, 90 = reverse / thrust).
    slip : float
        Shear dislocation in metres.
    opening : float
        Tensile dislocation in metres (positive = opening, as an intruding dyke or sill).
    """

    east: float
    north: float
    depth: float
    strike: float
    dip: float
    length: float
    width: float
    rake: float = 0.0
    slip: float = 0.0
    opening: float = 0.0


def mogi_displacement(
    east: np.ndarray, north: np.ndarray, source: MogiSource, nu: float = POISSON_RATIO
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface displacement of a Mogi point source.

    ``u_z = (1 - nu) dV / pi * d / R^3`` and ``u_r = (1 - nu) dV / pi * r / R^3`` with
    ``R^2 = r^2 + d^2``, so the uplift above the source is ``(1 - nu) dV / (pi d^2)``.

    Parameters
    ----------
    east, north : ndarray, any shape (broadcastable)
        Observation points in metres.
    source : MogiSource
        The source.
    nu : float
        Poisson's ratio.

    Returns
    -------
    (u_east, u_north, u_up) : tuple of ndarray, shape of the broadcast inputs
        Displacement in metres.

    Examples
    --------
    >>> import numpy as np
    >>> s = MogiSource(0.0, 0.0, depth=2000.0, volume_change=1e6)
    >>> _, _, up = mogi_displacement(np.array([0.0]), np.array([0.0]), s)
    >>> round(float(up[0]) * 1000, 2)  # mm
    59.68
    """
    if source.depth <= 0:
        raise ValueError(f"Mogi source depth must be > 0 m, got {source.depth}")
    dx = np.asarray(east, dtype=float) - source.east
    dy = np.asarray(north, dtype=float) - source.north
    d = source.depth
    big_r3 = (dx * dx + dy * dy + d * d) ** 1.5
    c = (1.0 - nu) * source.volume_change / np.pi
    return c * dx / big_r3, c * dy / big_r3, c * d / big_r3


def _okada_corner(
    xi: np.ndarray, eta: np.ndarray, q: np.ndarray, sd: float, cd: float, nu: float
) -> tuple[np.ndarray, ...]:
    """Okada (1985) eq. 25-27 integrands at one corner (xi, eta) of the fault.

    Returns the nine terms (ux, uy, uz) x (strike-slip, dip-slip, tensile), each without
    the ``-U/(2 pi)`` or ``U/(2 pi)`` factor, in Okada's own fault frame.
    """
    r = np.sqrt(xi * xi + eta * eta + q * q)
    y_t = eta * cd + q * sd  # y-tilde
    d_t = eta * sd - q * cd  # d-tilde
    mu_ratio = 1.0 - 2.0 * nu  # mu / (lambda + mu)

    # R + eta and R + xi vanish on the fault's own extension: Okada's DC3D then drops the
    # 1/(R+.) terms and uses -ln(R - eta) for ln(R + eta); do the same to stay finite.
    r_eta = r + eta
    small_eta = r_eta < 1e-10 * (r + 1.0)
    inv_r_eta = np.where(small_eta, 0.0, 1.0 / np.where(small_eta, 1.0, r_eta))
    ln_r_eta = np.where(
        small_eta, -np.log(np.maximum(r - eta, 1e-300)), np.log(np.maximum(r_eta, 1e-300))
    )
    r_xi = r + xi
    small_xi = r_xi < 1e-10 * (r + 1.0)
    inv_r_xi = np.where(small_xi, 0.0, 1.0 / np.where(small_xi, 1.0, r_xi))

    q_safe = np.where(q == 0.0, 1e-12, q)  # atan(xi*eta/(q*R)) tends to +-pi/2 there
    theta = np.arctan(xi * eta / (q_safe * r))

    if abs(cd) > 1e-6:
        x_big = np.sqrt(xi * xi + q * q)
        i4 = mu_ratio / cd * (np.log(r + d_t) - sd * ln_r_eta)
        denom = xi * (r + x_big) * cd
        num = eta * (x_big + q * cd) + x_big * (r + x_big) * sd
        i5 = np.where(
            xi == 0.0,
            0.0,
            mu_ratio * 2.0 / cd * np.arctan(num / np.where(denom == 0.0, 1.0, denom)),
        )
        i3 = mu_ratio * (y_t / (cd * (r + d_t)) - ln_r_eta) + sd / cd * i4
        i1 = mu_ratio * (-xi / (cd * (r + d_t))) - sd / cd * i5
    else:  # vertical plane: the limits cos(dip) -> 0 of the expressions above
        rd = r + d_t
        i1 = -mu_ratio / 2.0 * xi * q / (rd * rd)
        i3 = mu_ratio / 2.0 * (eta / rd + y_t * q / (rd * rd) - ln_r_eta)
        i4 = -mu_ratio * q / rd
        i5 = -mu_ratio * xi * sd / rd
    i2 = mu_ratio * (-ln_r_eta) - i3

    a_eta = inv_r_eta / r  # 1 / (R (R + eta))
    a_xi = inv_r_xi / r  # 1 / (R (R + xi))
    ux_ss = xi * q * a_eta + theta + i1 * sd
    uy_ss = y_t * q * a_eta + q * cd * inv_r_eta + i2 * sd
    uz_ss = d_t * q * a_eta + q * sd * inv_r_eta + i4 * sd
    ux_ds = q / r - i3 * sd * cd
    uy_ds = y_t * q * a_xi + cd * theta - i1 * sd * cd
    uz_ds = d_t * q * a_xi + sd * theta - i5 * sd * cd
    ux_tf = q * q * a_eta - i3 * sd * sd
    uy_tf = -d_t * q * a_xi - sd * (xi * q * a_eta - theta) - i1 * sd * sd
    uz_tf = y_t * q * a_xi + cd * (xi * q * a_eta - theta) - i5 * sd * sd
    return ux_ss, uy_ss, uz_ss, ux_ds, uy_ds, uz_ds, ux_tf, uy_tf, uz_tf


def okada85_fault_frame(
    x: np.ndarray,
    y: np.ndarray,
    depth: float,
    dip: float,
    length: float,
    width: float,
    u1: float,
    u2: float,
    u3: float,
    nu: float = POISSON_RATIO,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Okada (1985) surface displacement in Okada's own frame.

    The fault occupies ``0 <= xi <= length`` along strike (x axis) and ``0 <= eta <= width``
    up-dip from its lower edge, which lies at depth ``depth`` below the x axis; y points to
    the up-dip side, z up.

    Parameters
    ----------
    x, y : ndarray, any shape (broadcastable)
        Surface points in metres, Okada frame.
    depth : float
        Depth of the lower edge in metres.
    dip : float
        Dip in degrees.
    length, width : float
        Fault dimensions in metres.
    u1, u2, u3 : float
        Strike-slip, dip-slip and tensile dislocation in metres.
    nu : float
        Poisson's ratio.

    Returns
    -------
    (ux, uy, uz) : tuple of ndarray
        Displacement in metres, Okada frame.
    """
    delta = np.deg2rad(dip)
    sd, cd = np.sin(delta), np.cos(delta)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    p = y * cd + depth * sd
    q = y * sd - depth * cd
    out = [np.zeros(np.broadcast(x, y).shape) for _ in range(9)]
    # Chinnery's notation: f(x, p) - f(x, p - W) - f(x - L, p) + f(x - L, p - W).
    for xi, eta, sign in (
        (x, p, 1.0),
        (x, p - width, -1.0),
        (x - length, p, -1.0),
        (x - length, p - width, 1.0),
    ):
        for k, term in enumerate(_okada_corner(xi, eta, q, sd, cd, nu)):
            out[k] = out[k] + sign * term
    f = 1.0 / (2.0 * np.pi)
    ux = -u1 * f * out[0] - u2 * f * out[3] + u3 * f * out[6]
    uy = -u1 * f * out[1] - u2 * f * out[4] + u3 * f * out[7]
    uz = -u1 * f * out[2] - u2 * f * out[5] + u3 * f * out[8]
    return ux, uy, uz


def okada_displacement(
    east: np.ndarray, north: np.ndarray, source: OkadaSource, nu: float = POISSON_RATIO
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface displacement of a rectangular dislocation given by its centroid.

    Parameters
    ----------
    east, north : ndarray, any shape (broadcastable)
        Observation points in metres.
    source : OkadaSource
        Geometry and dislocation; strike clockwise from north, dip to the right of strike.
    nu : float
        Poisson's ratio.

    Returns
    -------
    (u_east, u_north, u_up) : tuple of ndarray
        Displacement in metres.
    """
    if source.length <= 0 or source.width <= 0:
        raise ValueError("Okada source length and width must be > 0 m")
    if not 0.0 <= source.dip <= 90.0:
        raise ValueError(f"dip must be in [0, 90] degrees, got {source.dip}")
    delta = np.deg2rad(source.dip)
    top = source.depth - source.width / 2.0 * np.sin(delta)
    if top <= 0:
        raise ValueError(f"the fault top edge is at {top:.1f} m: it must stay below the surface")
    phi = np.deg2rad(source.strike)
    se, ce = np.sin(phi), np.cos(phi)
    de = np.asarray(east, dtype=float) - source.east
    dn = np.asarray(north, dtype=float) - source.north
    along = de * se + dn * ce  # along strike
    across = dn * se - de * ce  # towards the up-dip side (left of strike)
    # Shift from the centroid to Okada's reference corner (lower edge, start of strike).
    x = along + source.length / 2.0
    y = across + source.width / 2.0 * np.cos(delta)
    d = source.depth + source.width / 2.0 * np.sin(delta)
    rake = np.deg2rad(source.rake)
    ux, uy, uz = okada85_fault_frame(
        x,
        y,
        d,
        source.dip,
        source.length,
        source.width,
        source.slip * np.cos(rake),
        source.slip * np.sin(rake),
        source.opening,
        nu,
    )
    return ux * se - uy * ce, ux * ce + uy * se, uz


def los_vector(incidence_deg: float, heading_deg: float) -> np.ndarray:
    """Unit vector (east, north, up) from the ground towards a right-looking radar.

    Parameters
    ----------
    incidence_deg : float
        Incidence angle from the vertical in degrees (Sentinel-1 IW: 29-46).
    heading_deg : float
        Flight direction in degrees clockwise from north (Sentinel-1: about -10 ascending,
        about -170 (= 190) descending).

    Returns
    -------
    ndarray, shape (3,)
        ``(e, n, u)``; a displacement ``d`` projects to ``LOS = d . v``, positive towards
        the satellite (range decrease), so uplift is positive in both geometries.
    """
    th = np.deg2rad(incidence_deg)
    h = np.deg2rad(heading_deg)
    # The radar looks 90 degrees right of the flight direction; the vector back to it
    # points 90 degrees left, i.e. azimuth h - 90 degrees.
    return np.array([-np.sin(th) * np.cos(h), np.sin(th) * np.sin(h), np.cos(th)])


def project_los(
    u_east: np.ndarray,
    u_north: np.ndarray,
    u_up: np.ndarray,
    incidence_deg: float,
    heading_deg: float,
) -> np.ndarray:
    """Project an (east, north, up) displacement field onto the LOS (see :func:`los_vector`).

    Returns
    -------
    ndarray, shape of the inputs
        LOS displacement in the inputs' unit, positive towards the satellite.
    """
    v = los_vector(incidence_deg, heading_deg)
    return u_east * v[0] + u_north * v[1] + u_up * v[2]


def source_los(
    east: np.ndarray,
    north: np.ndarray,
    source: MogiSource | OkadaSource,
    incidence_deg: float,
    heading_deg: float,
    nu: float = POISSON_RATIO,
) -> np.ndarray:
    """LOS displacement in metres of one source at the given points (see :func:`los_vector`)."""
    if isinstance(source, MogiSource):
        ue, un, uz = mogi_displacement(east, north, source, nu)
    else:
        ue, un, uz = okada_displacement(east, north, source, nu)
    return project_los(ue, un, uz, incidence_deg, heading_deg)
