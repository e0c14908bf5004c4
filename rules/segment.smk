rule segment:
    """Segment the micrograph into regions (automatic edges, Segment Anything, or a hand-made override)."""
    input:
        image=f"{R}/{{sample}}/{{image}}/image.h5",
        override=W.label_override,
        overrides=W.overrides_input("segment"),
    output:
        h5=f"{R}/{{sample}}/{{image}}/segmentation.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/segment"),
            patterns=["{name}.png"],
            category=category("segment"),
            subcategory="{sample}/{image}",
        ),
    params:
        settings=W.settings("segment", overrides="segment"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/segment.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/segment.tsv"
    resources:
        mem_mb=W.mem_mb("segment"),
        runtime=20,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/segment.py"
