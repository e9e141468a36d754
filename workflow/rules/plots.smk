# Four small figures from small tables: seconds on the machine that runs Snakemake, not worth
# a cluster job's queue time.
localrules:
    plots,


rule plots:
    input:
        provenance=list(provenance_files().values()),
        table1="results/evaluation/table1.tsv",
        weights="results/fusion/weights.json",
        qc="results/qc.tsv",
        code=msff_code("msff.plots"),
    output:
        curves=report(
            "results/plots/training_curves.png",
            caption="../report/training_curves.rst",
            category="2. Models",
            subcategory="Figures",
        ),
        recall=report(
            "results/plots/class_recall.png",
            caption="../report/class_recall.rst",
            category="2. Models",
            subcategory="Figures",
        ),
        weights=report(
            "results/plots/fusion_weights.png",
            caption="../report/fusion_weights.rst",
            category="3. Fusion",
        ),
        qc=report(
            "results/plots/qc.png",
            caption="../report/qc_overview.rst",
            category="1. Preprocessing",
        ),
    log:
        "logs/plots.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        provenance=provenance_files(),
    script:
        "../scripts/plots.py"
