"""occlufer: occlusion-robust facial expression recognition with DVC, Hydra and MLflow."""

__version__ = "0.1.0"
