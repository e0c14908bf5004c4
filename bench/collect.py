"""Concatenate bench/results/*.md into bench/RESULTS.md in pipeline order."""


from common import BENCH, RESULTS_DIR, machine

ORDER = ["ingest", "segment", "fft_peaks", "phase_id", "register_stack", "gpa", "fem_geometry",
         "atomic_model", "keating", "phonons", "tight_binding", "simulate_image", "workflow"]


def main() -> None:
    parts = sorted(RESULTS_DIR.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    head = ("# temtwin benchmark results\n\nWritten by `make bench` (bench/*.py). Machine: "
            f"{machine()}. Accuracy is measured against ground truth: the abTEM-simulated images of "
            "../shared/validation (when present) and temtwin.synth scenes.\n\n")
    (BENCH / "RESULTS.md").write_text(head + "\n\n".join(p.read_text().strip() for p in parts) + "\n")
    print(f"wrote {BENCH / 'RESULTS.md'} ({len(parts)} sections)")


if __name__ == "__main__":
    main()
