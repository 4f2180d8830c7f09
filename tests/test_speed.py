"Speed by default: what train and predict choose, print and record; bf16 as stable as float32; a quiet start; the benchmark runs."
import json, shutil, statistics, subprocess, sys
from pathlib import Path
import pytest, torch
from fastai.callback.core import Callback
from xresnet_fa.callbacks import TrainingError
from xresnet_fa.cli import main
from xresnet_fa.fast import speed_defaults
from xresnet_fa.train import train
from test_reliability import CorruptBatch, max_abs_diff, saved, small  # noqa: F401 (small is a fixture)

ROOT = Path(__file__).resolve().parent.parent
RUN = dict(size=16, bs=8)


class StopAfter(Callback):
    "Ctrl-C after epoch `n` has been saved"
    order = 80
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch == self.n: raise KeyboardInterrupt


def test_defaults_printed_once_recorded_and_opted_out(small, tmp_path, capsys):
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'a'), '--epochs', '1', '--size', '16', '--bs', '8']) == 0
    err = capsys.readouterr().err
    m = json.loads((tmp_path/'a'/'metrics.json').read_text())
    assert err.count('xresnet-fa: training in ') == 1 and f"training in {m['speed']}" in err, err
    assert m['speed'].startswith({'bf16': 'bf16 mixed precision', '32': 'float32'}[m['precision']]) and m['channels_last'] is True
    assert 'training step of xresnet18 at 16 px, batch 8' in m['speed'] or 'no native bf16' in m['speed'], m['speed']  # the probe timed this run's step
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'b'), '--epochs', '1', '--size', '16', '--bs', '8',
                 '--precision', '32', '--no-channels-last']) == 0
    assert 'training in float32 (asked), channels-first (NCHW)' in capsys.readouterr().err
    m = json.loads((tmp_path/'b'/'metrics.json').read_text())
    assert (m['precision'], m['channels_last']) == ('32', False)
    assert main(['predict', '--model', str(tmp_path/'a'/'export.pkl'), '--precision', '32', '--no-channels-last',
                 *map(str, sorted((small/'valid'/'3').glob('*.png')))]) == 0
    out = capsys.readouterr()
    assert 'predicting in float32 (asked), channels-first (NCHW)' in out.err and len(out.out.splitlines()) == 4, out


def test_resume_keeps_the_checkpoint_setting_unless_overridden(small, tmp_path):
    "A bf16, channels-first run, resumed with the defaults, stays bf16 and channels-first, and ends where the uninterrupted run ends"
    run = dict(RUN, data=small, epochs=2, precision='bf16', channels_last=False)
    full = train(**run, out=tmp_path/'full')
    with pytest.raises(KeyboardInterrupt): train(**run, out=tmp_path/'cut', cbs=[StopAfter(0)])
    shutil.copy(tmp_path/'cut'/'checkpoint.pth', tmp_path/'after_epoch_0.pth')
    resumed = train(small, **RUN, epochs=2, out=tmp_path/'cut', resume=True)  # precision and layout left to choose
    assert (resumed['precision'], resumed['channels_last']) == ('bf16', False) and resumed['speed'].endswith("as the checkpoint's run")
    assert 'resume_changes' not in resumed
    a, b = saved(tmp_path/'full'), saved(tmp_path/'cut')
    # Exact, as in float32 (test_reliability): before our convs ran inputs smaller than the kernel in float32, oneDNN's bf16 backward of
    # stage 4's stride-2 conv (1x1 input at 16 px) read uninitialised memory, and the two runs ended up to 0.05 apart.
    assert max_abs_diff(a, b) <= 1e-6
    assert [r['valid_loss'] for r in resumed['epochs']] == [f['valid_loss'] for f in full['epochs']]
    (tmp_path/'over').mkdir(); shutil.copy(tmp_path/'after_epoch_0.pth', tmp_path/'over'/'checkpoint.pth')  # --resume continues the run in --out
    m = train(small, **RUN, epochs=2, out=tmp_path/'over', resume=True, precision='32', channels_last=True)
    assert m['resume_changes'] == {'precision': {'was': 'bf16', 'now': '32'}, 'channels_last': {'was': False, 'now': True}}
    assert (m['precision'], m['channels_last']) == ('32', True)


def test_non_finite_stop_under_bf16(small, tmp_path):
    with pytest.raises(TrainingError) as e: train(small, **RUN, epochs=3, precision='bf16', out=tmp_path/'out', cbs=[CorruptBatch()])
    assert 'the training loss is nan at epoch 1, training batch 3 of 15' in str(e.value) and 'after epoch 0' in str(e.value)
    assert saved(tmp_path/'out')['epoch'] == 1


def test_bf16_reaches_float32_accuracy_over_seeds(digits, tmp_path):
    "Three seeds of the digits at 16 px: bf16's median validation accuracy is within 1 point of float32's"
    acc = {p: [train(digits, epochs=2, size=16, bs=64, precision=p, seed=s, out=tmp_path/f'{p}{s}')['accuracy'] for s in range(3)]
           for p in ('32', 'bf16')}
    print('\naccuracies', acc)
    assert statistics.median(acc['bf16']) >= statistics.median(acc['32']) - 0.01, acc
    assert min(acc['32']) > 0.8, acc  # both learnt: the comparison is not between two failures


def test_quiet_start_hides_only_torch_jit_deprecation():
    "The command prints no torch.jit.script deprecation; a warning of any other kind still shows"
    code = ("import sys, warnings, xresnet_fa\nwarnings.warn('still shown', FutureWarning)\nfrom xresnet_fa.cli import main\n"
            "sys.exit(main(['summary', '--arch', 'xresnet18', '--size', '32']))")
    r = subprocess.run([sys.executable, '-W', 'always', '-c', code], capture_output=True, text=True)
    assert r.returncode == 0 and 'xresnet18 at 32x32' in r.stdout, r.stderr
    assert 'torch.jit.script' not in r.stderr and 'FutureWarning: still shown' in r.stderr, r.stderr


def test_as_you_get_it_benchmark_smoke(small, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'as_you_get_it.py'), '--data', str(small), '--arch', 'xresnet18',
                        '--size', '16', '--bs', '8', '--epochs', '1', '--seeds', '1', '--families', 'ours', 'fastai', '--no-compile',
                        '--infer-repeats', '1', '--json', str(tmp_path/'r.json')], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'r.json').read_text())
    assert set(res['runs']) == {'ours', 'fastai'} and res['ratios']['fastai']['training'][0] > 0
    assert res['runs']['ours'][0]['channels_last'] is True and res['runs']['fastai'][0]['channels_last'] is False
    assert res['inference']['agree_with_get_preds']['predict_files'] >= 0.75 and 'ours / fastai: training' in r.stdout
