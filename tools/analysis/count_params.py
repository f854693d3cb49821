"""Print the parameter count of a config's model.

    python tools/analysis/count_params.py configs/mtu/mtu2_dvd.py
    params: 1.037M            (inference network: without the auxiliary deblur layers)
    training params: 1.039M   (with them)
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # a checkout

from mtu_toolkit.startup import importing  # noqa: E402

with importing(__name__):  # Ctrl-C while the modules load: one line, exit 130
    from mtu_toolkit.engine.config_loader import (
        add_cfg_options_argument, add_debug_argument, load_config, run_tool)
    from mtu_toolkit.models import count_parameters
    from mtu_toolkit.registry import MODELS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (e.g. configs/mtu/mtu2_dvd.py)')
    add_cfg_options_argument(parser, 'model.backbone.num_units=4')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = MODELS.build(cfg.model)
    inference, training = count_parameters(model)
    print(f'params: {inference / 1e6:.3f}M')
    print(f'training params: {training / 1e6:.3f}M')


if __name__ == '__main__':
    code = run_tool(main)
    if code:
        sys.exit(code)
