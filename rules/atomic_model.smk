rule atomic_model:
    """3D atomic model: phases and orientations, measured displacements and composition maps."""
    input:
        images=W.per_image("image.h5"),
        segmentations=W.per_image("segmentation.h5"),
        phases=W.per_image("phases.h5"),
        gpas=W.per_image("gpa.h5"),
        eels=W.eels_files,
        settings=W.sample_files,
    output:
        h5=f"{R}/{{sample}}/model.h5",
        extxyz=f"{R}/{{sample}}/model.extxyz",
        lammps=f"{R}/{{sample}}/model.lmp",
        figures=report(
            directory(f"{R}/{{sample}}/figures/atomic_model"),
            patterns=["{name}.png"],
            category=category("atomic_model"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("atomic_model"),
    log:
        f"{R}/logs/{{sample}}/atomic_model.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/atomic_model.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/atomic_model.py"
