rule register_stack:
    """Place every image of a sample in the overview's frame and propagate phases and strain."""
    input:
        images=W.per_image("image.h5"),
        segmentations=W.per_image("segmentation.h5"),
        phases=W.per_image("phases.h5"),
        gpas=W.per_image("gpa.h5"),
    output:
        h5=f"{R}/{{sample}}/stack.h5",
        figures=report(
            directory(f"{R}/{{sample}}/figures/register_stack"),
            patterns=["{name}.png"],
            category=category("register_stack"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("register_stack"),
    log:
        f"{R}/logs/{{sample}}/register_stack.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/register_stack.tsv"
    resources:
        mem_mb=W.mem_mb_sample("register_stack"),
        runtime=20,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/register_stack.py"
