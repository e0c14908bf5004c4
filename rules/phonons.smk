rule phonons:
    """Vibrational local density of states per region (recursion / KPM on the Keating dynamical matrix)."""
    input:
        model=f"{R}/{{sample}}/model.h5",
        keating=f"{R}/{{sample}}/keating.h5",
        relaxed=f"{R}/{{sample}}/relaxed.extxyz",
    output:
        h5=f"{R}/{{sample}}/phonons.h5",
        figures=report(
            directory(f"{R}/{{sample}}/figures/phonons"),
            patterns=["{name}.png"],
            category=category("phonons"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("phonons"),
    log:
        f"{R}/logs/{{sample}}/phonons.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/phonons.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/phonons.py"
