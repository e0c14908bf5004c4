rule summarize:
    """Merge every stage's summary into results/<sample>/summary.json and results/summary.tsv."""
    input:
        W.summary_inputs(),
    output:
        jsons=[f"{R}/{s}/summary.json" for s in W.samples],
        tsv=f"{R}/summary.tsv",
    params:
        samples=list(W.samples),
        images={s: W.images(s) for s in W.samples},
    log:
        f"{R}/logs/summarize.log",
    benchmark:
        f"{R}/benchmarks/summarize.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/summarize.py"
