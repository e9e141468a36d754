"""One exception hierarchy for the package.

Messages name the offending file or value, e.g. ``"clips/a.mp4: no video stream"``.
"""


class MsffError(Exception):
    """Base class of every error msff raises on purpose."""


class ConfigError(MsffError, ValueError):
    """A config value or a clip sheet is wrong; raised before any work starts."""


class BadClipError(MsffError):
    """One clip cannot be processed (missing, empty, corrupt, no usable stream).

    The workflow records it in the clip's cache and the qc table and goes on with
    the other clips.
    """


class WeightsError(MsffError):
    """A pretrained weight file is missing or does not fit the model."""


class TrainingError(MsffError):
    """Training went wrong in a way more epochs cannot mend (a loss that is NaN or infinite)."""
