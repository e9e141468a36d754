rule align_faces:
    input:
        frames="results/frames/{clip}.h5",
        code=msff_code("msff.stages.faces"),
    output:
        "results/faces/{clip}.h5",
    params:
        faces=PRESET["faces"],
    log:
        "logs/align_faces/{clip}.log",
    benchmark:
        "benchmarks/align_faces/{clip}.tsv"
    group:
        "preprocess"
    threads: 1
    conda:
        "../../envs/msff.yaml"
    script:
        "../scripts/align_faces.py"
