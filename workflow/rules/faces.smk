rule align_faces:
    input:
        frames="results/frames/{clip}.h5",
        code=msff_code("msff.stages.faces"),
    output:
        "results/faces/{clip}.h5",
    log:
        "logs/align_faces/{clip}.log",
    benchmark:
        "benchmarks/align_faces/{clip}.tsv"
    # Before the next clip's extract_frames: each frames cache (temporary, uncompressed)
    # is deleted soon after it is written instead of piling up for every clip.
    priority: 1
    group:
        "preprocess"
    conda:
        "../../envs/msff.yaml"
    threads: 1
    resources:
        **ALIGN_FACES_RESOURCES,
    params:
        faces=PRESET["faces"],
        face_input=lambda wildcards: face_input(wildcards.clip),
    script:
        "../scripts/align_faces.py"
