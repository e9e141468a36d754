"""MSFF: multiple spatio-temporal feature fusion for video-based emotion recognition.

The package holds all logic of the workflow and works without Snakemake: build a clip
sheet, decode clips, align faces, make spectrograms and openSMILE features, write the
per-clip caches. Heavy dependencies (torch, librosa, opensmile) are imported only by the
modules that need them, so ``import msff`` stays cheap.
"""

__version__ = "0.1.0"
