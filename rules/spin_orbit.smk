rule spin_orbit:
    """Hole k.p (Luttinger-Kohn + Bir-Pikus) along the quantum well: linear-in-k spin-orbit map."""
    input:
        relax=f"{R}/{{sample}}/fem/relax.h5",
    output:
        h5=f"{R}/{{sample}}/spin_orbit.h5",
        figures=report(
            directory(f"{R}/{{sample}}/figures/spin_orbit"),
            patterns=["{name}.png"],
            category=category("spin_orbit"),
            subcategory=category("spin_orbit"),
        ),
    params:
        settings=W.settings("spin_orbit"),
    log:
        f"{R}/logs/{{sample}}/spin_orbit.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/spin_orbit.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/spin_orbit.py"
