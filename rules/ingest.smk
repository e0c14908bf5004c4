rule ingest:
    """Read a micrograph (dm3/dm4/emd/ser/hspy/tif, or png/jpg with a pixel size in sample.yaml)."""
    input:
        image=W.image_file,
        settings=W.sample_files,
    output:
        h5=f"{R}/{{sample}}/{{image}}/raw.h5",
    params:
        settings=W.settings("ingest"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/ingest.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/ingest.tsv"
    resources:
        mem_mb=W.mem_mb("ingest"),
        runtime=10,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/ingest.py"
