rule scan_correct:
    """STEM scan-distortion correction (row jitter, linear drift); TEM images are copied unchanged."""
    input:
        raw=f"{R}/{{sample}}/{{image}}/raw.h5",
        pair=W.scan_pair_raw,
        settings=W.sample_files,
    output:
        h5=f"{R}/{{sample}}/{{image}}/image.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/scan_correct"),
            patterns=["{name}.png"],
            category=category("scan_correct"),
            subcategory="{sample}/{image}",
        ),
    params:
        settings=W.settings("scan_correct"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/scan_correct.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/scan_correct.tsv"
    resources:
        mem_mb=W.mem_mb("scan_correct"),
        runtime=10,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/scan_correct.py"
