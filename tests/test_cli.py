"xresnet-fa end to end: train on a tiny setting, predict in a fresh process, bad input, data-parallel on 2 CPU processes."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image
from xresnet_fa.cli import main
from test_reliability import small  # noqa: F401 (a fixture: 12 training and 4 validation digits per class)


def cli(*args, env=None, timeout=600):
    "Run `python -m xresnet_fa ARGS` in a fresh process"
    return subprocess.run([sys.executable, '-m', 'xresnet_fa', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_train_then_predict_in_fresh_processes(small, tmp_path):
    r = cli('train', '--data', small, '--epochs', 1, '--size', 16, '--out', tmp_path/'out')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith('valid accuracy'), r.stdout
    out = tmp_path/'out'
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'checkpoint.pth', 'confusion_matrix.png', 'export.pkl', 'loss.png', 'metrics.json']
    m = json.loads((out/'metrics.json').read_text())
    assert m['arch'] == 'xresnet18' and m['seed'] == 42 and m['data'] == str(small) and m['device'] == 'cpu'
    assert set(m['epochs'][0]) == {'epoch', 'train_loss', 'valid_loss', 'accuracy', 'seconds'}
    images = [sorted((small/'valid'/d).glob('*.png'))[0] for d in '07']
    r = cli('predict', '--model', out/'export.pkl', *images)
    assert r.returncode == 0, r.stderr
    rows = [line.split('\t') for line in r.stdout.strip().splitlines()]
    assert [row[0] for row in rows] == [str(i) for i in images]
    assert all(row[1] in [str(d) for d in range(10)] and 0 <= float(row[2]) <= 1 for row in rows), rows


def test_default_data_is_the_digits_in_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('XRESNET_FA_DATA', str(tmp_path/'cache'))
    assert main(['train', '--epochs', '1', '--size', '8', '--out', str(tmp_path/'out')]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path/'out'/'metrics.json').read_text())['data'] == str(tmp_path/'cache'/'digits')
    assert len(list((tmp_path/'cache'/'digits').glob('*/*/*.png'))) == 1797


def _classes(root, classes, n=4, ext='png'):
    for c in classes:
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.new('RGB', (8, 8), (i*50, 0, 0)).save(root/c/f'{i}.{ext}')
    return root


def bad_folders(tmp):
    "name -> (folder, part of the expected message)"
    (tmp/'empty').mkdir()
    (tmp/'text/a').mkdir(parents=True); (tmp/'text/a/notes.txt').write_text('no images here')
    _classes(tmp/'loose', ['a', 'b']); Image.new('RGB', (8, 8)).save(tmp/'loose'/'stray.png')
    _classes(tmp/'split/train', ['a', 'b']); _classes(tmp/'split/valid', ['a', 'c'])
    return {'missing': (tmp/'missing', 'no such folder'), 'empty': (tmp/'empty', 'no image files'),
            'no images': (tmp/'text', 'no image files'), 'one class': (_classes(tmp/'one', ['cat']), 'one class (cat)'),
            'loose file': (tmp/'loose', 'not in a class folder'),
            'unknown valid class': (tmp/'split', "valid/ has classes with no training images: ['c']")}


@pytest.mark.parametrize('case', ['missing', 'empty', 'no images', 'one class', 'loose file', 'unknown valid class'])
def test_bad_folder_is_one_line_and_exit_2(tmp_path, capsys, case):
    folder, expected = bad_folders(tmp_path)[case]
    assert main(['train', '--data', str(folder), '--out', str(tmp_path/'out')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('xresnet-fa: error:') and expected in err and err.count('\n') == 1, err
    assert not (tmp_path/'out').exists()


@pytest.mark.parametrize('args, expected', [
    (['--arch', 'xresnet9'], 'unknown architecture'), (['--size', '0'], '--size must be'), (['--bs', '1'], '--bs must be'),
    (['--bs', '500'], 'larger than the'), (['--epochs', '0'], '--epochs must be'), (['--lr', '-1'], '--lr must be'),
    (['--device', 'cuda:7'], 'CUDA is not available'), (['--precision', '16'], '--precision 16 needs a CUDA device'),
    (['--pretrained'], '--pretrained'),
])
def test_bad_option_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    data = _classes(tmp_path/'data', ['a', 'b'], n=20)
    assert main(['train', '--data', str(data), '--out', str(tmp_path/'out'), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('xresnet-fa: error:') and expected in err and err.count('\n') == 1, err


def test_bad_input_exits_2_without_traceback_from_the_console_script(tmp_path):
    exe = shutil.which('xresnet-fa')
    assert exe, 'the xresnet-fa console script is not installed'
    r = subprocess.run([exe, 'train', '--data', str(tmp_path/'nowhere')], capture_output=True, text=True)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'no such folder' in r.stderr, r.stderr


def test_summary_prints_the_architecture_table(capsys):
    assert main(['summary', '--arch', 'xresnet50']) == 0
    text = capsys.readouterr().out
    assert '25,576,264' in text and '4.329' in text and '(2048, 7, 7)' in text


def test_data_parallel_two_cpu_processes(small, tmp_path):
    "accelerate launch, 2 processes on CPU (gloo) through fastai's distrib_ctx: both ranks finish, one model is saved"
    r = subprocess.run(['accelerate', 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
                        '--mixed_precision', 'no', '--dynamo_backend', 'no', '-m', 'xresnet_fa', 'train', '--data', str(small),
                        '--epochs', '1', '--size', '16', '--out', str(tmp_path/'out')],
                       capture_output=True, text=True, timeout=600, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'rank 0/2 finished' in r.stdout and 'rank 1/2 finished' in r.stdout, r.stdout[-2000:]
    assert [p.name for p in tmp_path.rglob('export.pkl')] == ['export.pkl']
    assert json.loads((tmp_path/'out'/'metrics.json').read_text())['world_size'] == 2


def test_train_from_a_local_weights_file(small, tmp_path, capsys):
    "--pretrained FILE: fastai's vision_learner with our weights, ImageNet normalisation, fine_tune"
    import torch
    from xresnet_fa import xresnet18
    torch.save(xresnet18().state_dict(), tmp_path/'w.pth')
    status = main(['train', '--data', str(small), '--epochs', '1', '--size', '16', '--pretrained', str(tmp_path/'w.pth'), '--out', str(tmp_path/'out')])
    assert status == 0, capsys.readouterr().err[-2000:]
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['pretrained'] == str(tmp_path/'w.pth') and len(m['epochs']) >= 1
