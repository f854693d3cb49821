"""tools/analysis/model_complexity.py: per-module params and FLOPs against hand counts."""
import os.path as osp
import runpy
import sys

import pytest

from mtu_toolkit.models.backbones import MTUNet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'model_complexity.py')
complexity = runpy.run_path(TOOL)['complexity']  # the tool's counter is the package's


def _conv_flops(cin, cout, k, h, w):
    return 2 * cin * cout * k * k * h * w


def test_correlation_model_rows_and_mc_part():
    ch, h, w, d = 4, 16, 24, 2
    net = MTUNet(num_units=2, channels=ch, num_blocks=1,
                 mc_head=dict(type='correlation', max_displacement=d))
    result = complexity(net, (h, w))
    rows = result['rows']
    assert rows['base_conv'] == (3 * ch * 9 + ch, _conv_flops(3, ch, 3, h, w))
    assert rows['motion_layers'] == (ch * 2 * ch * 25 + 2 * ch,
                                     _conv_flops(ch, 2 * ch, 5, h // 4, w // 4))
    # the head has no parameters; its cost volume: (2D+1)^2 dot products of 2ch at 1/4 res
    assert rows['mc_head'] == (0, 2 * (2 * d + 1) ** 2 * 2 * ch * (h // 4) * (w // 4))
    assert result['mc'] == (rows['motion_layers'][0], rows['motion_layers'][1]
                            + rows['mc_head'][1])
    assert result['total'][0] == sum(p.numel() for p in net.inference_parameters())
    assert result['training_only'] == 9 * 2 * ch * 3 + 3
    assert 'aux_convs' not in rows


def test_fan_head_flops_include_kernel_net_and_one_filtering():
    ch, h, w, units = 4, 16, 16, 3
    net = MTUNet(num_units=units, channels=ch, num_blocks=1,
                 mc_head=dict(type='fan', mid_channels=8, num_blocks=0))
    params, flops = complexity(net, (h, w))['rows']['mc_head']
    assert params == sum(p.numel() for p in net.mc_head.parameters())
    kernel_net = (_conv_flops(4 * ch, 8, 3, h // 4, w // 4)
                  + _conv_flops(8, ch * 25, 3, h // 4, w // 4))
    # with matching skipped, every later unit aligns the same previous feature by the same
    # kernels: the network filters it once a frame
    assert flops == kernel_net + 2 * 25 * ch * h * w


def test_cli_compares_configs_with_ratio_to_correlation(capsys, monkeypatch):
    configs = [osp.join(ROOT, 'configs', 'mtu', 'mtu2_dvd.py'),
               osp.join(ROOT, 'configs', 'ablations', 'mtu2_dvd_mc_fan.py'),
               osp.join(ROOT, 'configs', 'ablations', 'mtu2_dvd_no_mc.py')]
    monkeypatch.setattr(sys, 'argv', ['model_complexity.py'] + configs + [
        '--shape', '16', '20', '--cfg-options', 'model.backbone.num_blocks=1'])
    runpy.run_path(TOOL, run_name='__main__')
    out = capsys.readouterr().out
    summary = out.split('\n\n')[-1].splitlines()
    assert summary[0].split()[:3] == ['config', 'MC', 'head']
    by_name = {line.split()[0]: line.split() for line in summary[1:]}
    assert by_name['mtu2_dvd'][1] == 'CorrelationMCHead' and by_name['mtu2_dvd'][-1] == '1.0'
    mc_fan = int(by_name['mtu2_dvd_mc_fan'][4].replace(',', ''))
    assert mc_fan == 2_050_058 + 33_852  # FAN head + motion layer at ch 26
    assert float(by_name['mtu2_dvd_mc_fan'][-1]) == pytest.approx(mc_fan / 33_852, abs=0.05)
    assert by_name['mtu2_dvd_no_mc'][4] == '0'
    assert 'MC (motion layers + head)' in out and 'units.1' in out


def test_cli_shape_must_be_multiples_of_4_as_benchmark(capsys, monkeypatch):
    config = osp.join(ROOT, 'configs', 'mtu', 'mtu2_dvd.py')
    monkeypatch.setattr(sys, 'argv', ['model_complexity.py', config, '--shape', '18', '20'])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(TOOL, run_name='__main__')
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        'model_complexity.py: error: --shape height 18 and width 20 must be positive multiples '
        'of 4')
