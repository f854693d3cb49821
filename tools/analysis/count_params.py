"""Print the parameter count of a config's model.

    python tools/analysis/count_params.py configs/mtu/mtu2_dvd.py
    params: 1.037M            (inference network: without the auxiliary deblur layers)
    training params: 1.038M   (with them)
"""
import argparse

from mmengine.config import Config, DictAction

from mtu_toolkit.models import count_parameters
from mtu_toolkit.registry import MODELS


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (e.g. configs/mtu/mtu2_dvd.py)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model.backbone.num_units=4')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    model = MODELS.build(cfg.model)
    inference, training = count_parameters(model)
    print(f'params: {inference / 1e6:.3f}M')
    print(f'training params: {training / 1e6:.3f}M')


if __name__ == '__main__':
    main()
