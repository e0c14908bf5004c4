"""fem_relax eigenstrain fit on a generated measurement with known eigenstrains and GPA-like noise of known σ:
χ²_red ≈ 1, the eigenstrains recovered within their σ, and the model referenced to GPA's reference area as
GPA references the measurement."""

import numpy as np
import pytest

from temtwin.stages import fem_relax as stage
from temtwin.fem_relax.validation import gpa_fit_case, noisy_gpa_measurement


@pytest.fixture(scope="module")
def case():
    return gpa_fit_case()


def measurement(model, ig, delta_true, seed):
    return noisy_gpa_measurement(model, ig, delta_true, seed)


def test_fit_recovers_known_eigenstrain_with_chi2_near_one(case):
    model, ig, doc = case
    cfg = {"fit": True, "sigma_floor": 1e-6}
    d_table = model.deltas_table()                  # [Ge layer, cap (0: same alloy as the substrate)]
    delta_true = d_table * [1.1, 1.0] + [0.0, 0.002]
    chi2, pulls, chi2_noref = [], [], []
    for seed in range(12):
        gpa = measurement(model, ig, delta_true, seed)
        do_fit, source = stage.fit_function(cfg, model, doc, gpa, ig, ig.region, {}, [])
        assert source == "gpa of the geometry image"
        f = do_fit(model.lamella.strain)
        chi2.append(f.chi2_red)
        pulls.append((f.delta - delta_true) / f.sigma)
        # the same data without referencing the model to GPA's reference area: biased
        gpa["reference"] = None
        g = stage.fit_function(cfg, model, doc, gpa, ig, ig.region, {}, [])[0](model.lamella.strain)
        chi2_noref.append(g.chi2_red)
    chi2, pulls = np.array(chi2), np.array(pulls)
    # 9 data (3 regions x 3 components), 2 parameters: mean of chi2_red over 12 seeds 1 ± 0.16
    assert 0.55 < chi2.mean() < 1.6
    assert np.mean(np.abs(pulls) < 2) >= 0.8 and np.abs(pulls).max() < 4
    assert np.abs(pulls.mean(0)).max() < 1.0        # unbiased
    assert np.median(chi2_noref) > 2 * np.median(chi2)     # 2.5 vs 0.8 on this geometry


def test_fit_summary_reports_pulls_and_inflation(case):
    model, ig, doc = case
    delta_true = model.deltas_table() * [1.1, 1.0] + [0.0, 0.002]
    gpa = measurement(model, ig, delta_true, 0)
    gpa["strain"]["exx"][ig.region == 2] += 0.01     # a component no coherent model explains
    f = stage.fit_function({"fit": True, "sigma_floor": 1e-6}, model, doc, gpa, ig, ig.region, {}, [])[0](
        model.lamella.strain)
    s = stage.fit_summary(f, "gpa", 25.0)
    assert not s["consistent"] and s["sigma_inflation"] == pytest.approx(np.sqrt(f.chi2_red))
    worst = max(s["pulls"], key=lambda q: abs(q["pull"]))
    assert (worst["label"], worst["component"]) == (2, "exx") and worst["pull"] > 10
    assert "region 2 exx" in s["warning"] and "inflated" in s["warning"]
