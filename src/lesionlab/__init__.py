"""lesionlab: reproducible experiments for dermoscopic skin-lesion classification.

For research and education only. The models are not medical devices and must not
be used for diagnosis.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "For research and education only: these models are not medical devices and must not be used "
    "to diagnose, treat or triage any person."
)
