rule qc:
    input:
        caches=get_qc_input,
        code=msff_code("msff.stages.qc"),
    output:
        report(
            "results/qc.tsv",
            caption="../report/qc.rst",
            category="1. Preprocessing",
            labels={"table": "qc"},
        ),
    log:
        "logs/qc.log",
    conda:
        "../../envs/msff.yaml"
    resources:
        **SMALL_JOB_RESOURCES,
    params:
        clips=SHEET.to_dict("records"),
        caches=get_qc_caches(),
    script:
        "../scripts/qc.py"
