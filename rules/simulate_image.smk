rule simulate_image:
    """Simulate the atomic model's micrograph (abTEM HRTEM / linear HAADF / abTEM STEM crop), fit, compare, refine."""
    input:
        image=f"{R}/{{sample}}/{{image}}/image.h5",
        segmentation=f"{R}/{{sample}}/{{image}}/segmentation.h5",
        model=f"{R}/{{sample}}/model.h5",
        relaxed=lambda wc: [f"{R}/{wc.sample}/relaxed.extxyz"] if W.enabled("keating") else [],
        settings=W.sample_files,
    output:
        h5=f"{R}/{{sample}}/{{image}}/simulation.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/simulate_image"),
            patterns=["{name}.png"],
            category=category("simulate_image"),
            subcategory=category("simulate_image"),
        ),
    params:
        settings=W.settings("simulate_image"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/simulate_image.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/simulate_image.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/simulate_image.py"
