rule summarize:
    """Merge every stage's summary of one sample into results/<sample>/summary.json."""
    input:
        W.summary_inputs,
    output:
        json=f"{R}/{{sample}}/summary.json",
    params:
        images=lambda wc: W.images(wc.sample),
    log:
        f"{R}/logs/{{sample}}/summarize.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/summarize.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/summarize.py"


rule summary_table:
    """results/summary.tsv: one row per sample/image/region across samples (failed samples listed)."""
    input:
        [f"{R}/{s}/summary.json" for s in W.samples],
    output:
        tsv=f"{R}/summary.tsv",
    params:
        samples=list(W.samples),
    log:
        f"{R}/logs/summary_table.log",
    resources:
        mem_mb=1000,
        runtime=5,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/summary_table.py"
