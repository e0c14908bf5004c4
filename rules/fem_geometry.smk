rule fem_geometry:
    """Finite-element geometry: region polygons to GDS, per-region materials and a gmsh mesh."""
    input:
        stack=f"{R}/{{sample}}/stack.h5",
        images=W.per_image("image.h5"),
        segmentations=W.per_image("segmentation.h5"),
        phases=W.per_image("phases.h5"),
        gpas=W.per_image("gpa.h5"),
    output:
        h5=f"{R}/{{sample}}/fem/fem.h5",
        gds=f"{R}/{{sample}}/fem/geometry.gds",
        mesh=f"{R}/{{sample}}/fem/mesh.msh",
        regions=f"{R}/{{sample}}/fem/regions.json",
        figures=report(
            directory(f"{R}/{{sample}}/figures/fem_geometry"),
            patterns=["{name}.png"],
            category=category("fem_geometry"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("fem_geometry"),
    log:
        f"{R}/logs/{{sample}}/fem_geometry.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/fem_geometry.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/fem_geometry.py"
