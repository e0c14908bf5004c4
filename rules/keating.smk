rule keating:
    """Keating valence force field: forces of the as-built model, relaxation, force maps."""
    input:
        model=f"{R}/{{sample}}/model.h5",
    output:
        h5=f"{R}/{{sample}}/keating.h5",
        relaxed=f"{R}/{{sample}}/relaxed.extxyz",
        figures=report(
            directory(f"{R}/{{sample}}/figures/keating"),
            patterns=["{name}.png"],
            category=category("keating"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("keating"),
    log:
        f"{R}/logs/{{sample}}/keating.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/keating.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/keating.py"
