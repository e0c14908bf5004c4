"""Stage ``ingest``: one image file -> ``results/<sample>/<image>/raw.h5`` (reading: :mod:`temtwin.io.ingest`)."""

from __future__ import annotations

from ..io.ingest import check_size, read_micrograph, write_image_h5


def run(ctx) -> None:
    """Stage ``ingest``: image file -> results/<sample>/<image>/image.h5."""
    settings = ctx.sample_settings()
    cfg = ctx.section("ingest")
    check_size(ctx.input["image"], int(cfg.get("max_pixels", 50_000_000)), cfg.get("large_images", "warn"))
    m = read_micrograph(ctx.input["image"], sample=ctx.wildcards.get("sample", "sample"), settings=settings,
                        align=cfg.get("align_frames", True), max_frames=cfg.get("max_frames", 1000))
    ctx.log.info("%s: %s px, pixel size %.5g x %.5g nm, mode %s, %d frame(s)", m.name, m.shape,
                 *m.pixel_size_nm, m.meta["mode"], m.meta["n_frames"])
    with ctx.h5("h5") as f:
        write_image_h5(f, m)
