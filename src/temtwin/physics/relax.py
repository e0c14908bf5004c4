"""Structural relaxation with the Keating force field: FIRE or L-BFGS, fixed atoms, fixed cell.

Positions are relaxed at a fixed cell (periodic directions keep their period); atoms flagged in
``fixed`` do not move.  Convergence: the largest force norm on a free atom below ``fmax`` (eV/Å).

FIRE: E. Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006), with unit masses and a time step
scaled to the stiffest Keating bond so it is stable for Si and Ge alike.
L-BFGS: two-loop recursion (memory 10) with a backtracking Armijo line search and a 0.2 Å step cap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .keating import KeatingModel


@dataclass
class RelaxResult:
    """Relaxed positions (Å), energy (eV), forces (eV/Å), steps, convergence and the final fmax."""

    positions: np.ndarray
    energy: float
    forces: np.ndarray
    n_steps: int
    converged: bool
    fmax: float
    energy_initial: float


def _fmax(f: np.ndarray, free: np.ndarray) -> float:
    if not free.any():
        return 0.0
    return float(np.sqrt((f[free] ** 2).sum(axis=1)).max())


def relax(model: KeatingModel, positions_A, cell_A=None, fixed=None, fmax: float = 1e-3,
          max_steps: int = 5000, method: str = "fire",
          callback: Callable[[int, float, float], None] | None = None) -> RelaxResult:
    """Relax ``positions_A`` (Å) with ``model`` to a force tolerance ``fmax`` (eV/Å).

    Parameters
    ----------
    fixed: boolean mask (N,) of atoms kept in place (e.g. boundary slabs), or None.
    method: ``"fire"`` or ``"lbfgs"``.
    callback: called as ``callback(step, energy, fmax)`` every 50 steps (progress logging).
    """
    pos = np.array(positions_A, float)
    n = len(pos)
    free = np.ones(n, bool) if fixed is None else ~np.asarray(fixed, bool)
    res = model.evaluate(pos, cell_A)
    e0 = res.energy
    if n == 0:
        return RelaxResult(pos, 0.0, np.zeros((0, 3)), 0, True, 0.0, 0.0)
    if method == "fire":
        return _fire(model, pos, cell_A, free, fmax, max_steps, res, e0, callback)
    if method == "lbfgs":
        return _lbfgs(model, pos, cell_A, free, fmax, max_steps, e0, callback)
    raise ValueError(f"unknown relaxation method {method!r} (fire or lbfgs)")


def _fire(model, pos, cell, free, fmax, max_steps, res, e0, callback):
    p = model.params
    kmax = 8.0 * float((p.alpha + p.beta).max())  # stiffest mode, unit mass: omega_max^2 (eV/Å^2)
    dt_max = 0.5 / np.sqrt(kmax)
    dt = 0.1 * dt_max
    alpha0, alpha = 0.1, 0.1
    n_min, f_inc, f_dec, f_alpha = 5, 1.1, 0.5, 0.99
    v = np.zeros_like(pos)
    f = res.forces * free[:, None]
    energy = res.energy
    since_neg = 0
    step = 0
    fm = _fmax(f, free)
    while fm > fmax and step < max_steps:
        step += 1
        power = float((f * v).sum())
        if power > 0:
            fn = np.sqrt((f ** 2).sum())
            vn = np.sqrt((v ** 2).sum())
            v = (1.0 - alpha) * v + alpha * f * (vn / max(fn, 1e-300))
            since_neg += 1
            if since_neg > n_min:
                dt = min(dt * f_inc, dt_max)
                alpha *= f_alpha
        else:
            v[:] = 0.0
            dt *= f_dec
            alpha = alpha0
            since_neg = 0
        # semi-implicit Euler (unit masses)
        v += dt * f
        pos += dt * v
        res = model.evaluate(pos, cell)
        f = res.forces * free[:, None]
        energy = res.energy
        fm = _fmax(f, free)
        if callback is not None and step % 50 == 0:
            callback(step, energy, fm)
    return RelaxResult(pos, energy, res.forces, step, fm <= fmax, fm, e0)


def _lbfgs(model, pos, cell, free, fmax, max_steps, e0, callback, memory: int = 10,
           max_move: float = 0.2):
    """L-BFGS (two-loop recursion) with a backtracking Armijo line search and a step cap (Å)."""
    x = pos.copy()
    res = model.evaluate(x, cell)
    g = -res.forces * free[:, None]
    energy = res.energy
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    rho: list[float] = []
    step = 0
    fm = _fmax(g, free)
    while fm > fmax and step < max_steps:
        step += 1
        q = g.copy()
        alphas = []
        for s_, y_, r_ in zip(reversed(s_hist), reversed(y_hist), reversed(rho)):
            a_ = r_ * float((s_ * q).sum())
            alphas.append(a_)
            q -= a_ * y_
        if y_hist:
            gamma = float((s_hist[-1] * y_hist[-1]).sum() / (y_hist[-1] * y_hist[-1]).sum())
        else:
            gamma = 1.0 / (8.0 * float((model.params.alpha + model.params.beta).max()))
        d = gamma * q
        for s_, y_, r_, a_ in zip(s_hist, y_hist, rho, reversed(alphas)):
            b_ = r_ * float((y_ * d).sum())
            d += s_ * (a_ - b_)
        d = -d * free[:, None]
        slope = float((g * d).sum())
        if slope >= 0:  # not a descent direction: restart along the force
            s_hist.clear(); y_hist.clear(); rho.clear()  # noqa: E702
            d = -g * gamma
            slope = float((g * d).sum())
        big = float(np.sqrt((d ** 2).sum(axis=1)).max())
        t = min(1.0, max_move / big) if big > 0 else 1.0
        for _ in range(30):
            x_new = x + t * d
            r_new = model.evaluate(x_new, cell)
            if r_new.energy <= energy + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        g_new = -r_new.forces * free[:, None]
        s_vec = x_new - x
        y_vec = g_new - g
        sy = float((s_vec * y_vec).sum())
        if sy > 1e-12:
            s_hist.append(s_vec); y_hist.append(y_vec); rho.append(1.0 / sy)  # noqa: E702
            if len(s_hist) > memory:
                s_hist.pop(0); y_hist.pop(0); rho.pop(0)  # noqa: E702
        x, g, energy, res = x_new, g_new, r_new.energy, r_new
        fm = _fmax(g, free)
        if callback is not None and step % 50 == 0:
            callback(step, energy, fm)
    return RelaxResult(x, energy, res.forces, step, fm <= fmax, fm, e0)
