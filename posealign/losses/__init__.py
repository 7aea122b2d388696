"""One loss per file, each with its formula in the docstring; eq. 8 sums them in
:meth:`posealign.multilevel_alignment.MultiLevelAlignment.forward_backward`."""

from posealign.losses.adversarial import adversarial_loss
from posealign.losses.consistency import consistency_loss
from posealign.losses.information_maximization import information_maximization_loss
from posealign.losses.joints_mse import joints_mse_loss

__all__ = ["adversarial_loss", "consistency_loss", "information_maximization_loss", "joints_mse_loss"]
