rule tb_moments:
    """Chebyshev (KPM) moments of the sp3d5s* Hamiltonian for one chunk of random vectors."""
    input:
        model=f"{R}/{{sample}}/model.h5",
        relaxed=W.relaxed_structure("tb_moments"),
    output:
        h5=f"{R}/{{sample}}/tb/moments_{{chunk}}.h5",
    params:
        settings=W.settings("tb_moments"),
    log:
        f"{R}/logs/{{sample}}/tb_moments_{{chunk}}.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/tb_moments_{{chunk}}.tsv"
    resources:
        mem_mb=config["tb_moments"]["mem_mb"],
        runtime=config["tb_moments"]["runtime_min"],
        gpu=config["tb_moments"]["gpus"],
        tasks=config["tb_moments"]["mpi_ranks"],
    threads: config["tb_moments"]["threads"]
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/tb_moments.py"
