"""Setting an evaluation protocol on a test config (what ``tools/test.py --protocol`` does)."""
import inspect

from mmengine.utils import import_modules_from_strings

from ..registry import DATASETS
from .metrics.protocols import get_protocol

_METRIC = 'VideoRestorationMetric'


def _metric_cfgs(evaluator):
    """The VideoRestorationMetric dicts of a ``test_evaluator`` (a dict, a list of dicts or an
    Evaluator dict with ``metrics``)."""
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    items = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    return [m for m in items
            if isinstance(m, dict) and str(m.get('type', '')).split('.')[-1] == _METRIC]


def _accepts_pipeline(cfg, dataset_cfg):
    cls = dataset_cfg.get('type')
    if isinstance(cls, str):
        if cfg.get('custom_imports'):  # a config's own dataset registers on import
            import_modules_from_strings(**cfg['custom_imports'])
        cls = DATASETS.get(cls)
    return 'pipeline' in inspect.signature(cls.__init__).parameters


def apply_protocol(cfg, protocol=None, align=None, stage='test'):
    """Set ``protocol`` and/or ``align`` on the config's VideoRestorationMetric(s) and give the
    dataset the crop the protocol expects before inference.

    Args:
        cfg (Config): a config with ``<stage>_evaluator`` and ``<stage>_dataloader``.
        protocol (str | None): 'toolkit', 'reference' or 'matlab'; None keeps the config's.
        align (bool | None): Koehler et al.'s alignment; None keeps the config's.
        stage (str): 'test' (``tools/test.py``) or 'val' (the validation of
            ``tools/train.py``).

    Returns:
        Config: ``cfg``, changed in place. A protocol with ``crop_multiple`` (given here or
        already the config's) puts ``ClipCropToMultiple`` first in
        ``<stage>_dataloader.dataset.pipeline`` (once; in each dataset a wrapper holds). A
        config without a VideoRestorationMetric is returned unchanged when neither argument
        is given.

    Raises:
        ValueError: an unknown protocol (given or the config's), a protocol or ``align``
            given for an evaluator without a VideoRestorationMetric, protocols that need
            different crops.
    """
    metrics = _metric_cfgs(cfg.get(f'{stage}_evaluator'))
    if not metrics:
        if protocol is None and align is None:
            return cfg
        raise ValueError(f'{stage}_evaluator has no {_METRIC}, so an evaluation protocol '
                         'cannot be set')
    for m in metrics:
        if protocol is not None:
            m['protocol'] = get_protocol(protocol).name
        if align is not None:
            m['align'] = bool(align)
    names = {m.get('protocol', 'toolkit') for m in metrics}
    crops = {get_protocol(n).crop_multiple for n in names} - {None}
    if len(crops) > 1:
        raise ValueError(f'{stage}_evaluator: protocols {sorted(names)} need different crops')
    if crops:
        _add_crop(cfg, crops.pop(), stage)
    return cfg


def _add_crop(cfg, multiple, stage='test'):
    loader = cfg.get(f'{stage}_dataloader')
    _crop_dataset(cfg, loader.get('dataset') if isinstance(loader, dict) else None, multiple,
                  stage)


def _crop_dataset(cfg, dataset, multiple, stage):
    """Put the crop first in ``dataset``'s pipeline, or in those of the datasets a wrapper
    holds (``dataset``: RepeatDataset and the like; ``datasets``: ConcatDataset)."""
    if isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
        _crop_dataset(cfg, dataset['dataset'], multiple, stage)
        return
    if isinstance(dataset, dict) and isinstance(dataset.get('datasets'), (list, tuple)) \
            and dataset['datasets']:
        for inner in dataset['datasets']:
            _crop_dataset(cfg, inner, multiple, stage)
        return
    if not isinstance(dataset, dict) or not _accepts_pipeline(cfg, dataset):
        kind = dataset.get('type') if isinstance(dataset, dict) else type(dataset).__name__
        raise ValueError(
            f'the evaluation protocol crops frames top-left to a multiple of {multiple} before '
            f'inference (ClipCropToMultiple), but the {stage} dataset {kind} takes no '
            '`pipeline`')
    pipeline = [t for t in dataset.get('pipeline', [])
                if not (isinstance(t, dict) and t.get('type') == 'ClipCropToMultiple')]
    dataset['pipeline'] = [dict(type='ClipCropToMultiple', multiple=multiple)] + pipeline
