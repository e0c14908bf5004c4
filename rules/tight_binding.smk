rule tb_moments:
    """Chebyshev (KPM) moments of the sp3d5s* Hamiltonian for one chunk of random vectors."""
    input:
        model=f"{R}/{{sample}}/model.h5",
        relaxed=W.relaxed_structure("tight_binding"),
    output:
        h5=f"{R}/{{sample}}/tb/moments_{{chunk}}.h5",
    params:
        settings=W.settings("tight_binding"),
    log:
        f"{R}/logs/{{sample}}/tb_moments_{{chunk}}.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/tb_moments_{{chunk}}.tsv"
    resources:
        mem_mb=config["tight_binding"]["mem_mb"],
        runtime=config["tight_binding"]["runtime_min"],
        gpu=config["tight_binding"]["gpus"],
        tasks=config["tight_binding"]["mpi_ranks"],
    threads: config["tight_binding"]["threads"]
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/tb_moments.py"


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
        settings=W.settings("tight_binding"),
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
