"""Regenerate the demo dataset (deterministic): ``python resources/demo/make_demo.py``.

Sample ``sige_qw_device``: a Si0.3Ge0.7 / Ge (5 nm) / Si0.3Ge0.7 quantum-well cross-section along [110]
with a trench, built as one atomic model by :mod:`temtwin.testing.synth.device` and rendered as
* ``overview.tif``: 512² bright-field overview at 0.125 nm/px (calibrated ImageJ TIFF),
* ``hrtem.hspy``: 512² HRTEM at 0.025 nm/px of a window holding the QW and the trench corner, placed at
  offset (30, 17) nm in the overview and rotated by 1.2° (scan rotation),
* ``eels/Ge.hspy``, ``eels/Si.hspy``: Ge and Si fraction maps at 0.35 nm/px over the HRTEM window.
The truth (placement, layer positions, strain) is written to ``truth_demo.json`` next to this script
(not inside the dataset, so the workflow never sees it).

Sample ``insb_inp``: InSb on InP along [110], HRTEM (``hrtem.tif``), copied from the validation set of
abTEM multislice simulations (an independent code) when it is present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from temtwin.testing.synth.device import eels_maps, render_hrtem, render_overview, sige_qw_device

HERE = Path(__file__).resolve().parent


def _axes(shape, px):
    return [{"name": n, "navigate": False, "offset": 0.0, "scale": px, "size": s, "units": "nm"}
            for n, s in zip(("y", "x"), shape)]


def _signal(data, px, title, mode="TEM"):
    return {"data": data, "axes": _axes(data.shape, px), "original_metadata": {}, "tmp_parameters": {},
            "attributes": {"_lazy": False}, "models": {}, "learning_results": {},
            "package_info": {"name": "temtwin", "version": "0.1.0"},
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""},
                         "Acquisition_instrument": {"TEM": {"beam_energy": 300.0, "acquisition_mode": mode}}}}


def main() -> None:
    from rsciio.hspy import file_writer as write_hspy
    from rsciio.tiff import file_writer as write_tiff

    out = HERE / "sige_qw_device"
    (out / "eels").mkdir(parents=True, exist_ok=True)
    dev = sige_qw_device()
    ov = render_overview(dev, (512, 512), 0.125)
    write_tiff(str(out / "overview.tif"), _signal(np.clip(ov, 0, 65535).astype(np.uint16), 0.125,
                                                  "BF overview SiGe QW device"))
    offset, rot, px = (30.0, 17.0), 1.2, 0.025
    hr = render_hrtem(dev, offset, rot, (512, 512), px)
    write_hspy(str(out / "hrtem.hspy"), _signal(np.clip(hr, 0, 65535).astype(np.uint16), px,
                                                "HRTEM SiGe/Ge/SiGe [110]"))
    e_off = (0.3, 0.4)   # main-image point of the maps' pixel (0, 0) centre
    t = np.deg2rad(rot)
    e_dev = np.array(offset) + np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.array(e_off)
    maps = eels_maps(dev, e_dev, rot, (36, 36), 0.35)
    for el, m in maps.items():
        write_hspy(str(out / "eels" / f"{el}.hspy"), _signal(m, 0.35, f"EELS {el} fraction", "STEM"))
    # stage positions (um) of the image centres, as a microscope would record them: the overview's
    # centre at the stage origin, the HRTEM's centre where make_demo put it (rotation: scan rotation)
    c_ov = 0.5 * (np.array(ov.shape[::-1]) - 1) * 0.125
    c_hr = np.array(offset) + np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ (
        0.5 * (np.array(hr.shape[::-1]) - 1) * px)
    st = (c_hr - c_ov) / 1e3
    (out / "sample.yaml").write_text(
        "# Si0.3Ge0.7 / Ge / Si0.3Ge0.7 quantum-well device, cross-section along [110]\n"
        "description: SiGe quantum well with a trench (synthetic demo, temtwin.testing.synth.device)\n"
        "elements: [Si, Ge, O]\n"
        "images:\n  overview: {role: overview, stage_position_um: [0.0, 0.0], rotation_deg: 0.0}\n"
        f"  hrtem: {{role: atomic, stage_position_um: [{st[0]:.6f}, {st[1]:.6f}], rotation_deg: {rot}}}\n"
        "eels:\n  image: hrtem\n  offset_nm: [0.3, 0.4]\n")
    truth = {"hrtem": {"offset_nm": list(offset), "rotation_deg": rot, "scale_ratio": px / 0.125},
             "interfaces_y_nm_overview": dev.interfaces_y_nm, "trench_x_nm": dev.trench_x_nm,
             "eyy_qw_rel_buffer": dev.info["eyy_qw"], "a_buffer_A": dev.info["a_buffer_A"],
             "eels_offset_in_hrtem_nm": list(e_off)}
    (HERE / "truth_demo.json").write_text(json.dumps(truth, indent=1) + "\n")
    src = HERE.parents[1].parent / "shared" / "validation" / "insb_inp" / "insb_inp_dev"
    if src.is_dir():
        dst = HERE / "insb_inp"
        dst.mkdir(exist_ok=True)
        shutil.copy(src / "hrtem.tif", dst / "hrtem.tif")
        (dst / "sample.yaml").write_text(
            "# InSb grown on InP, cross-section along [110]; abTEM multislice HRTEM (temtwin validation set)\n"
            "description: InSb on InP, incoherent interface\nelements: [In, Sb, P]\n")
    print("demo written to", HERE)


if __name__ == "__main__":
    main()
