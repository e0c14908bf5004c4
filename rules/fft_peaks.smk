rule fft_peaks:
    """Find the reflections in each region's FFT (Gaussian fits, U-Net, profile scan, combined)."""
    input:
        image=f"{R}/{{sample}}/{{image}}/image.h5",
        segmentation=f"{R}/{{sample}}/{{image}}/segmentation.h5",
    output:
        h5=f"{R}/{{sample}}/{{image}}/peaks.h5",
        figures=report(
            directory(f"{R}/{{sample}}/{{image}}/figures/fft_peaks"),
            patterns=["{name}.png"],
            category=category("fft_peaks"),
            subcategory="{sample}/{image}",
        ),
    params:
        settings=W.settings("fft_peaks"),
    log:
        f"{R}/logs/{{sample}}/{{image}}/fft_peaks.log",
    benchmark:
        f"{R}/benchmarks/{{sample}}/{{image}}/fft_peaks.tsv"
    resources:
        mem_mb=W.mem_mb("fft_peaks"),
        runtime=20,
    threads: 2
    conda:
        "../envs/temtwin.yaml"
    script:
        "../scripts/fft_peaks.py"
