rule tb_ldos:
    """Gather the moments into electronic LDOS per region, band edges and near-gap zooms."""
    input:
        model=f"{R}/{{sample}}/model.h5",
        moments=lambda wc: expand(f"{R}/{wc.sample}/tb/moments_{{chunk}}.h5", chunk=W.chunks()),
    output:
        h5=f"{R}/{{sample}}/tb.h5",
        figures=report(
            directory(f"{R}/{{sample}}/figures/tb_ldos"),
            patterns=["{name}.png"],
            category=category("tb_ldos"),
            subcategory="{sample}",
        ),
    params:
        settings=W.settings("tb_moments", "tb_ldos"),
    log:
        f"{R}/logs/{{sample}}/tb_ldos.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/tb_ldos.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    threads: 1
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/tb_ldos.py"
