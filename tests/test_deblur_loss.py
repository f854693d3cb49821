import pytest
import torch

from mtu_toolkit.models.losses import MultiOutputDeblurLoss
from mtu_toolkit.registry import MODELS


def test_weights_final_and_auxiliary_outputs():
    gt = torch.zeros(1, 3, 4, 4)
    out, aux = torch.full_like(gt, 0.5), [torch.full_like(gt, 1.0), torch.full_like(gt, 2.0)]
    # the reference's recipe (the default): L1 + MSE, 0.1 x the mean over the aux outputs
    l1_mse = {0.5: 0.5 + 0.25, 1.0: 1.0 + 1.0, 2.0: 2.0 + 4.0}
    loss = MultiOutputDeblurLoss()(out, aux, gt)
    torch.testing.assert_close(loss, torch.tensor(l1_mse[0.5] + 0.1 * (2.0 + 6.0) / 2))
    # 0.1 each (the paper's equation read literally), L1
    loss = MultiOutputDeblurLoss(loss_type='l1', aux_reduction='sum')(out, aux, gt)
    torch.testing.assert_close(loss, torch.tensor(0.5 + 0.1 * 1.0 + 0.1 * 2.0))
    loss = MultiOutputDeblurLoss(loss_type='l1+mse')(out, [], gt)
    torch.testing.assert_close(loss, torch.tensor(0.5 + 0.25))


def test_a_registered_pixel_loss_plugs_in_without_reimplementing_the_weighting():
    @MODELS.register_module(force=True)
    class CubeLoss(torch.nn.Module):
        def forward(self, pred, target):
            return ((pred - target) ** 3).abs().mean()

    gt = torch.zeros(1, 3, 2, 2)
    loss = MultiOutputDeblurLoss(pixel_loss=dict(type='CubeLoss'), aux_weight=0.5)(
        torch.full_like(gt, 2.0), [torch.full_like(gt, 1.0), torch.full_like(gt, 3.0)], gt)
    torch.testing.assert_close(loss, torch.tensor(8.0 + 0.5 * (1.0 + 27.0) / 2))


def test_unknown_loss_type_is_refused():
    with pytest.raises(ValueError, match='loss_type'):
        MultiOutputDeblurLoss(loss_type='l3')
    with pytest.raises(ValueError, match='aux_reduction'):
        MultiOutputDeblurLoss(aux_reduction='max')
