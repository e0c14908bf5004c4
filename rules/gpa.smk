rule gpa:
    """Automated geometric phase analysis: strain, rotation and displacement maps."""
    input:
        image=f"{R}/{{sample}}/{{image}}/image.h5",
        segmentation=f"{R}/{{sample}}/{{image}}/segmentation.h5",
        peaks=f"{R}/{{sample}}/{{image}}/peaks.h5",
        phases=f"{R}/{{sample}}/{{image}}/phases.h5",
    output:
        h5=f"{R}/{{sample}}/{{image}}/gpa.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/gpa"),
            patterns=["{name}.png"],
            category=category("gpa"),
            subcategory="{sample}/{image}",
        ),
    params:
        settings=W.settings("gpa"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/gpa.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/gpa.tsv"
    resources:
        mem_mb=W.mem_mb("gpa"),
        runtime=20,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/gpa.py"
