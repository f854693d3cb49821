from . import backbones, data_preprocessors, losses, mc_heads, restorers  # noqa: F401


def count_parameters(model):
    """(inference, training) parameter counts of a restorer or backbone.

    The inference network leaves out what only training uses (``inference_parameters()`` of
    the backbone, e.g. the auxiliary deblur layers).
    """
    backbone = getattr(model, 'backbone', model)
    training = sum(p.numel() for p in model.parameters())
    if hasattr(backbone, 'inference_parameters'):
        extra = sum(p.numel() for p in model.parameters()) - sum(
            p.numel() for p in backbone.parameters())
        inference = extra + sum(p.numel() for p in backbone.inference_parameters())
    else:
        inference = training
    return inference, training
