rule fem_relax:
    """Anisotropic elasticity on the FEM mesh: device (plane strain) vs lamella (3D slab), fit to GPA."""
    input:
        fem=f"{R}/{{sample}}/fem/fem.h5",
        regions=f"{R}/{{sample}}/fem/regions.json",
        images=W.per_image("image.h5"),
        segmentations=W.per_image("segmentation.h5"),
        gpas=W.per_image("gpa.h5"),
        eels=W.eels_files,
        # the lamella thickness fitted by simulate_image (only when that stage is on and fem_relax uses it)
        simulations=lambda wc: (
            W.per_image("simulation.h5")(wc)
            if W.enabled("simulate_image") and W.enabled("atomic_model")
            and W.config.get("fem_relax", {}).get("thickness_source", "auto") == "auto"
            else []
        ),
        settings=W.sample_files,
    output:
        h5=f"{R}/{{sample}}/fem/relax.h5",
        vtu=f"{R}/{{sample}}/fem/device.vtu",
        figures=report(
            directory(f"{R}/{{sample}}/figures/fem_relax"),
            patterns=["{name}.png"],
            category=category("fem_relax"),
            subcategory=category("fem_relax"),
        ),
    params:
        settings=W.settings("fem_relax"),
    log:
        f"{R}/logs/{{sample}}/fem_relax.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/fem_relax.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/fem_relax.py"
