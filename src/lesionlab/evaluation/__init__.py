"""Evaluation: every trained row on one test set (metrics, lesion-level bootstrap, calibration, uncertainty, the
clinical task views), Grad-CAM checked against the lesion masks and external test sets."""
