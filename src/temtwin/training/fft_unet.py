"""Train the FFT-peak U-Net on simulated kinematical spectra (``temtwin train-unet``).

    temtwin train-unet [--out resources/models/fft_unet.pt] [--seed 0] [--iters 2400] [--threads 2] ...

Reproducible from the seed: every training and validation spectrum is drawn by
:func:`temtwin.testing.fft_spectra.simulate_spectrum` from its own generator
``temtwin.workflow.seeds.rng(seed, "peaks-unet", split, index)`` (so the data do not depend on the
number of worker processes), the network is initialised with ``torch.manual_seed(seed)`` and the
batches come from a generator of the same seed.  (Threaded CPU convolutions may still differ in the
last bits between machines.)  The defaults train in well under 30 minutes on 2 CPU cores.

Targets: pixels within 1.5 px of a reflection with SNR >= 3 are positive; pixels near weaker
reflections (1.5 <= SNR < 3) are ignored by the loss; everything else is negative.  The state with
the best F1 on the validation spectra is kept.  Writes the weights (``--out``, a few hundred kB) and
a JSON record beside them (same stem, ``.json``): arguments, data, time, validation metrics,
library versions, sha256 of the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..testing.fft_spectra import BUILTIN_PHASES
from ..peaks.unet import DEFAULT_WEIGHTS, build_unet, input_channel

POS_RADIUS = 1.5


def _targets(S: int, rows, cols, snr, valid):
    """(target uint8, weight uint8) maps for one spectrum."""
    tgt = np.zeros((S, S), np.uint8)
    ign = np.zeros((S, S), bool)
    off = np.arange(-2, 3)
    for sel, arr in ((snr >= 3.0, None), ((snr >= 1.5) & (snr < 3.0), ign)):
        r, c = rows[sel], cols[sel]
        if len(r) == 0:
            continue
        rr = np.rint(r)[:, None, None] + off[None, :, None]
        cc = np.rint(c)[:, None, None] + off[None, None, :]
        near = (rr - r[:, None, None]) ** 2 + (cc - c[:, None, None]) ** 2 <= POS_RADIUS ** 2
        rr = np.broadcast_to(rr, near.shape)
        cc = np.broadcast_to(cc, near.shape)
        ok = near & (rr >= 0) & (rr < S) & (cc >= 0) & (cc < S)
        if arr is None:
            tgt[rr[ok].astype(int), cc[ok].astype(int)] = 1
        else:
            ign[rr[ok].astype(int), cc[ok].astype(int)] = True
    w = np.where(ign & (tgt == 0), 0, 1).astype(np.uint8)
    return tgt, w


def make_sample(args):
    """One training sample (x float16, target, weight, truth rows/cols/snr) from (seed, split, index, size)."""
    from ..workflow.seeds import rng as seeded
    from ..testing.fft_spectra import BUILTIN_PHASES, simulate_spectrum

    seed, split, i, size = args
    g = seeded(seed, "peaks-unet", split, i)
    amorphous = g.random() < 0.12
    s = simulate_spectrum(g, size=size, amorphous_only=amorphous, phases=BUILTIN_PHASES)
    sp = s.spectrum
    x = np.nan_to_num(input_channel(np.where(sp.valid, sp.q, 0.0)), nan=0.0, posinf=20.0, neginf=-20.0)
    x = x.astype(np.float16)
    t, w = _targets(size, s.all_rows, s.all_cols, s.all_snr, sp.valid)
    return x, t, w, (s.rows.astype(np.float32), s.cols.astype(np.float32), s.snr.astype(np.float32),
                     sp.center, np.packbits(sp.inner()))


def make_dataset(seed: int, split: str, n: int, size: int, workers: int):
    args = [(seed, split, i, size) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            out = list(ex.map(make_sample, args, chunksize=16))
    else:
        out = [make_sample(a) for a in args]
    X = np.stack([o[0] for o in out])
    T = np.stack([o[1] for o in out])
    W = np.stack([o[2] for o in out])
    truth = [o[3] for o in out]
    return X, T, W, truth


def evaluate(net, X, truth, threshold: float = 0.5) -> dict:
    """Precision / recall (SNR >= 3) / F1 of the network's peaks on a set of spectra."""
    import torch
    from scipy import ndimage

    from ..peaks.metrics import counts, prf
    from ..peaks.unet import symmetrise

    tot = np.zeros(4)
    net.eval()
    with torch.inference_mode():
        for k in range(0, len(X), 32):
            p = torch.sigmoid(net(torch.from_numpy(X[k:k + 32].astype(np.float32))[:, None])).numpy()[:, 0]
            for j in range(p.shape[0]):
                rows, cols, snr, c, inner = truth[k + j]
                inner = np.unpackbits(inner)[:p[j].size].reshape(p[j].shape).astype(bool)
                pj = symmetrise(p[j], c) * inner
                mx = ndimage.maximum_filter(pj, size=3, mode="constant")
                r, cc = np.nonzero((pj == mx) & (pj >= threshold))
                tot += counts(np.c_[r, cc], np.c_[rows, cols], snr)[:4]
    net.train()
    P, R, F = prf(*tot)
    return {"precision": P, "recall": R, "f1": F}


def _augment(x, gen):
    """Random element of the square's symmetry group (the spectra are centrosymmetric)."""
    k = int(gen.integers(4))
    x = np.rot90(x, k, axes=(-2, -1))
    if gen.random() < 0.5:
        x = x[..., ::-1]
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="temtwin train-unet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights file (.pt); the record is written beside it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=2500, help="training spectra")
    ap.add_argument("--n-val", type=int, default=200, help="validation spectra")
    ap.add_argument("--size", type=int, default=128, help="spectrum size (px) for training")
    ap.add_argument("--crop", type=int, default=96, help="random crops (px) of the spectra per batch")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--base", type=int, default=12, help="channels at full resolution")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--pos-weight", type=float, default=3.0)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    print(f"train-unet: simulating {a.n_train} + {a.n_val} spectra ({a.size} px)...", flush=True)
    X, T, W, _ = make_dataset(a.seed, "train", a.n_train, a.size, a.threads)
    Xv, _, _, truth_v = make_dataset(a.seed, "val", a.n_val, a.size, a.threads)
    t_data = time.perf_counter() - t0
    print(f"train-unet: data in {t_data:.0f} s; training {a.iters} iterations", flush=True)
    net = build_unet(a.base, a.depth)
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.iters, pct_start=0.1)
    gen = np.random.default_rng(np.random.SeedSequence([a.seed, 7]))
    pw = torch.tensor(a.pos_weight)
    best = (-1.0, None, None)
    history = []
    net.train()
    for it in range(1, a.iters + 1):
        idx = gen.integers(0, len(X), a.batch)
        o = gen.integers(0, a.size - a.crop + 1, 2)
        sl = (idx, slice(o[0], o[0] + a.crop), slice(o[1], o[1] + a.crop))
        xb = np.stack([X[sl], T[sl], W[sl]]).astype(np.float32)
        xb = np.ascontiguousarray(_augment(xb, gen))
        x = torch.from_numpy(xb[0][:, None])
        y = torch.from_numpy(xb[1][:, None])
        w = torch.from_numpy(xb[2][:, None])
        logits = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w, pos_weight=pw)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        if it % a.eval_every == 0 or it == a.iters:
            m = evaluate(net, Xv, truth_v)
            m.update(iteration=it, loss=float(loss.detach()), elapsed_s=round(time.perf_counter() - t0, 1))
            history.append(m)
            print(f"train-unet: it {it} loss {float(loss.detach()):.4f} val P {m['precision']:.3f} R {m['recall']:.3f} "
                  f"F1 {m['f1']:.3f} ({m['elapsed_s']:.0f} s)", flush=True)
            if m["f1"] > best[0]:
                best = (m["f1"], {k: v.detach().clone() for k, v in net.state_dict().items()}, m)
    state = best[1]
    state["__arch__"] = torch.tensor([a.base, a.depth])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    from .. import __version__

    record = {
        "what": "temtwin FFT-peak U-Net (temtwin.peaks.unet), trained by temtwin.training.fft_unet",
        "command": "temtwin train-unet " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arguments": vars(a),
        "data": {"generator": "temtwin.testing.fft_spectra.simulate_spectrum (kinematical zone-axis spectra of "
                              "the built-in phases, random 2D lattices, second grains, distortion, broadening, "
                              "Thon rings, streak artefacts, 1-40 Welch tiles, centrosymmetric; 12% without any "
                              "crystal)",
                 "phases": list(BUILTIN_PHASES),
                 "seeds": f"temtwin.workflow.seeds.rng({a.seed}, 'peaks-unet', split, index)",
                 "n_train": a.n_train, "n_val": a.n_val, "size_px": a.size,
                 "target": "1 within 1.5 px of reflections with SNR >= 3; ignored near 1.5 <= SNR < 3"},
        "model": {"base_channels": a.base, "depth": a.depth, "parameters": int(n_params),
                  "input": "asinh(q / 2) of the significance map, 0 outside the valid area"},
        "best_validation": best[2],
        "history": history,
        "time_s": {"data": round(t_data, 1), "total": round(time.perf_counter() - t0, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {a.threads}",
        "versions": {"temtwin": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "weights_sha256": sha,
    }
    rec = out.with_suffix(".json")
    rec.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"train-unet: wrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {rec}; best val F1 {best[0]:.3f}",
          flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
