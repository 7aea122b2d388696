"""One loss per file, each with its formula in the docstring."""

from posealign.losses.joints_mse import JointsMSELoss, joints_mse_loss

__all__ = ["JointsMSELoss", "joints_mse_loss"]
