"""Concatenate bench/results/*.md into bench/RESULTS.md in pipeline order.

A section ``<name>.md`` goes with the first stage of the registry (temtwin.workflow.stages) whose rule or
config section its name starts with (``gpa_hetero`` after ``gpa``); the others (startup, workflow) close.
"""


from common import BENCH, RESULTS_DIR, machine

from temtwin.workflow.stages import STAGES

TAIL = ["startup", "workflow"]
BELONGS_TO = {"gigapixel_segment": "segment", "phase_robustness": "phase_id", "stage_placement": "register_stack",
              "tight_binding": "tb_moments", "tight_binding_kernels": "tb_moments", "tight_binding_scale": "tb_moments",
              "tight_binding_1e6": "tb_moments", "tight_binding_4e6": "tb_moments", "tight_binding_mpi": "tb_moments",
              "kpm_engine": "tb_moments"}


def _key(stem: str) -> tuple[int, int, str]:
    if stem in BELONGS_TO:
        return (next(i for i, st in enumerate(STAGES) if st.rule == BELONGS_TO[stem]), 1, stem)
    for i, st in enumerate(STAGES):
        if any(stem == n or stem.startswith(n + "_") for n in (st.rule, st.section) if n):
            return (i, stem not in (st.rule, st.section), stem)
    return (len(STAGES) + (TAIL.index(stem) if stem in TAIL else -1) + 1, 0, stem)


def main() -> None:
    parts = sorted(RESULTS_DIR.glob("*.md"), key=lambda p: _key(p.stem))
    head = ("# temtwin benchmark results\n\nWritten by `make bench` (bench/*.py). Machine: "
            f"{machine()}. Accuracy is measured against ground truth: the abTEM-simulated images of "
            "../shared/validation (when present) and temtwin.testing.synth scenes.\n\n")
    (BENCH / "RESULTS.md").write_text(head + "\n\n".join(p.read_text().strip() for p in parts) + "\n")
    print(f"wrote {BENCH / 'RESULTS.md'} ({len(parts)} sections)")


if __name__ == "__main__":
    main()
