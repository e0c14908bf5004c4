rule viewer_assets:
    """plotly.js, shipped once beside the viewer pages (no CDN: the pages work offline from file://)."""
    output:
        js=f"{R}/viewer_assets/plotly.min.js",
    params:
        settings=W.settings("viewer"),
    log:
        f"{R}/logs/viewer_assets.log",
    resources:
        mem_mb=500,
        runtime=5,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/viewer_assets.py"


rule viewer:
    """Interactive page of one sample: regions, FFTs, candidates, strain, corrections -> overrides.yaml."""
    input:
        results=W.viewer_inputs,
        overrides=W.overrides_file,
        plotly=f"{R}/viewer_assets/plotly.min.js",
    output:
        html=f"{R}/{{sample}}/viewer.html",
    params:
        settings=W.settings("viewer"),
        images=lambda wc: W.images(wc.sample),
        sample_dir=lambda wc: str(W.samples[wc.sample].path.resolve()),
    log:
        f"{R}/logs/{{sample}}/viewer.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/viewer.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/viewer.py"


rule viewer_index:
    """results/index.html: every sample and region of summary.tsv, filters and distributions."""
    input:
        tsv=f"{R}/summary.tsv",
        plotly=f"{R}/viewer_assets/plotly.min.js",
    output:
        html=f"{R}/index.html",
    params:
        settings=W.settings("viewer"),
    log:
        f"{R}/logs/viewer_index.log",
    resources:
        mem_mb=500,
        runtime=5,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/viewer_index.py"
