rule phase_id:
    """Identify each region's crystal phase, zone axis and in-plane rotation; index the spots."""
    input:
        image=f"{R}/{{sample}}/{{image}}/image.h5",
        segmentation=f"{R}/{{sample}}/{{image}}/segmentation.h5",
        peaks=f"{R}/{{sample}}/{{image}}/peaks.h5",
        cifs=W.phase_files,
        settings=W.sample_files,
        overrides=W.overrides_input("phase_id"),
    output:
        h5=f"{R}/{{sample}}/{{image}}/phases.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/phase_id"),
            patterns=["{name}.png"],
            category=category("phase_id"),
            subcategory="{sample}/{image}",
        ),
    params:
        settings=W.settings("phase_id", overrides="phase_id"),
        map_elements=W.map_elements,
    log:
        f"{R}/logs/{{sample}}/{{image}}/phase_id.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/phase_id.tsv"
    resources:
        mem_mb=W.mem_mb("phase_id"),
        runtime=20,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/phase_id.py"
