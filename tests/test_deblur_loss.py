import pytest
import torch

from mtu_toolkit.models.losses import MultiOutputDeblurLoss


def test_weights_final_and_auxiliary_outputs():
    gt = torch.zeros(1, 3, 4, 4)
    out, aux = torch.full_like(gt, 0.5), [torch.full_like(gt, 1.0), torch.full_like(gt, 2.0)]
    loss = MultiOutputDeblurLoss()(out, aux, gt)
    torch.testing.assert_close(loss, torch.tensor(0.5 + 0.1 * 1.0 + 0.1 * 2.0))
    loss = MultiOutputDeblurLoss(loss_type='l1+mse')(out, [], gt)
    torch.testing.assert_close(loss, torch.tensor(0.5 + 0.25))


def test_unknown_loss_type_is_refused():
    with pytest.raises(ValueError, match='loss_type'):
        MultiOutputDeblurLoss(loss_type='l3')
